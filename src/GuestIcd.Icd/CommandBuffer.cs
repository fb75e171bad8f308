using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkResult;

namespace GuestIcd.Icd;

/// <summary>A VkCommandBuffer: the dispatchable object the loader sees, then the GCHandle of its
/// <see cref="Recorder"/>, so recording reaches its own state with two loads and no lookup or lock.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct CommandBufferObject
{
    public DispatchableObject Base;
    public nint Recorder;
}

/// <summary>One command buffer's recording (the model: Venus's vn_command_buffer.c, whose commands go to a
/// per-command-buffer encoder). Its vkCmd* are encoded into its own writer with no lock: the spec makes a
/// command buffer and its pool externally synchronised. What is recorded reaches the host at the submit that
/// uses it, at the vkCmdExecuteCommands of a primary that names it, or once it outgrows
/// <see cref="CommandBuffers.HoldBytes"/>. Owned by its pool, reused after a free.</summary>
internal sealed class Recorder(Connection connection, CommandPoolState pool)
{
    public readonly Connection Connection = connection;
    public readonly CommandPoolState Pool = pool;
    public readonly WireWriter Writer = new(1024);
    /// <summary>The connection's <see cref="Connection.Records"/>, fixed at its handshake (before any pool exists).</summary>
    public readonly bool Records = connection.Records;
    public GCHandle Self;
    public ulong Id;
    public nint Handle;
    /// <summary>Bytes at the start of <see cref="Writer"/> that must reach the host even when the recording after
    /// them is dropped (a reset the host needs).</summary>
    public int KeepBytes;
    /// <summary>Since the last begin, vkEndCommandBuffer was recorded.</summary>
    public bool Ended;
    /// <summary>Part of a recording reached the host without its end: the host's command buffer is recording.</summary>
    public bool HostRecording;

    /// <summary>Drops what was recorded and not sent: the host never learns of it.</summary>
    public void Discard()
    {
        Writer.Truncate(KeepBytes);
        Ended = false;
    }
}

/// <summary>A VkCommandPool's guest side: its live command buffers, and recorders kept for reuse after a free.</summary>
internal sealed unsafe class CommandPoolState(Connection connection, ulong id, nint device) : IHandleMap
{
    public readonly ulong Id = id;
    public readonly nint Device = device;
    readonly Connection _connection = connection;
    public readonly HashSet<Recorder> Live = new();
    readonly Stack<Recorder> _free = new();

    // vkAllocateCommandBuffers encodes through the pool: the new handles are command-buffer objects with recorders.
    public ulong ToWire(int objectType, ulong handle) => _connection.Handles.ToWire(objectType, handle);
    public ulong FromWire(int objectType, ulong id) => _connection.Handles.FromWire(objectType, id);
    public void ExpectCreate(int objectType, ulong id, ulong* slot) => throw new InvalidOperationException("host-only");

    public ulong Create(int objectType, out ulong handle)
    {
        if (objectType != GuestHandleMap.CommandBuffer) return _connection.Handles.Create(objectType, out handle);
        var rec = _free.Count > 0 ? _free.Pop() : new Recorder(_connection, this);
        if (!rec.Self.IsAllocated) rec.Self = GCHandle.Alloc(rec);
        var o = (CommandBufferObject*)NativeMemory.AllocZeroed((nuint)sizeof(CommandBufferObject));
        o->Base.LoaderData = DispatchableObject.LoaderMagic;
        o->Base.Id = rec.Id = _connection.Handles.NewId();
        o->Base.Connection = _connection.Index;
        o->Base.ObjectType = GuestHandleMap.CommandBuffer;
        // Its device, found by id like every dispatchable child's (GuestDevice.OfChild).
        o->Base.ParentId = ((DispatchableObject*)Device)->Id;
        o->Recorder = GCHandle.ToIntPtr(rec.Self);
        rec.Handle = (nint)o;
        rec.KeepBytes = 0;
        rec.Ended = rec.HostRecording = false;
        rec.Writer.Reset();
        Live.Add(rec);
        handle = (ulong)o;
        return rec.Id;
    }

    /// <summary>A freed command buffer: its handle goes, its recorder waits for the next allocation.</summary>
    public void Release(Recorder rec)
    {
        if (!Live.Remove(rec)) return;
        NativeMemory.Free((void*)rec.Handle);
        rec.Handle = 0;
        rec.Writer.Reset();
        _free.Push(rec);
    }

    /// <summary>The pool is destroyed (or its device, or the connection): every handle and recording memory goes.</summary>
    public void Destroy()
    {
        foreach (var rec in Live.ToArray()) Release(rec);
        while (_free.TryPop(out var rec))
        {
            rec.Writer.Dispose();
            if (rec.Self.IsAllocated) rec.Self.Free();
        }
    }
}

/// <summary>Every command pool of one connection (guarded by itself: pools are created and destroyed rarely).</summary>
internal sealed class CommandPools
{
    readonly Dictionary<ulong, CommandPoolState> _pools = new();

    public CommandPoolState Get(Connection c, ulong pool, nint device)
    {
        lock (_pools)
        {
            if (!_pools.TryGetValue(pool, out var p)) _pools[pool] = p = new CommandPoolState(c, pool, device);
            return p;
        }
    }

    public CommandPoolState? Find(ulong pool)
    {
        lock (_pools) return _pools.GetValueOrDefault(pool);
    }

    public void Destroy(ulong pool)
    {
        CommandPoolState? p;
        lock (_pools) if (!_pools.Remove(pool, out p)) return;
        lock (p) p.Destroy();
    }

    public void DeviceDestroyed(nint device)
    {
        List<CommandPoolState> gone = new();
        lock (_pools)
            foreach (var (id, p) in _pools)
                if (p.Device == device) gone.Add(p);
        foreach (var p in gone) Destroy(p.Id);
    }

    public void ReleaseAll()
    {
        List<ulong> all;
        lock (_pools) all = _pools.Keys.ToList();
        foreach (var id in all) Destroy(id);
    }
}

/// <summary>The recording hot path and the submit-time flush.</summary>
internal static unsafe class CommandBuffers
{
    /// <summary>A recording travels in messages of at most this much (beyond a single larger command), well under the
    /// smallest message quota a host may set, 64 KiB.</summary>
    public const int ChunkBytes = 48 << 10;

    /// <summary>A recording stays in the command buffer's memory until its submit unless it grows past this: then what
    /// it holds goes to the host at once (in chunks), bounding the guest memory one command buffer keeps.</summary>
    public const int HoldBytes = 1 << 20;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Recorder Of(nint commandBuffer)
    {
        var o = (CommandBufferObject*)commandBuffer;
        if (o == null) throw new InvalidOperationException("a NULL VkCommandBuffer");
        return Unsafe.As<Recorder>(GCHandle.FromIntPtr(o->Recorder).Target)!;
    }

    /// <summary>The generated entry points' fast path (FastCommands): the recorder of a command buffer that records
    /// guest-side, or null when every vkCmd* is a message of its own (a 1.0 host).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Recorder? Recording(nint commandBuffer)
    {
        var rec = Of(commandBuffer);
        return rec.Records ? rec : null;
    }

    /// <summary>After a fast encoder appended a command to <paramref name="rec"/>: what <see cref="Record"/> does after its encode.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Recorded(Recorder rec)
    {
        rec.Connection.Stats?.Recorded();
        if (rec.Writer.Position >= HoldBytes) rec.Connection.FlushRecorded(rec);
    }

    /// <summary>Every vkCmd*: encoded into the command buffer's own memory, nothing shared touched.</summary>
    public static ulong Record(int command, ulong* args)
    {
        var rec = Of((nint)args[0]);
        var c = rec.Connection;
        if (!c.Records) return c.Call(command, args);
        // The secondaries a primary executes must be on the host, recorded, before the primary's command is.
        if (command == Tables.vkCmdExecuteCommands && args[2] != 0)
            for (uint i = 0; i < (uint)args[1]; i++) c.FlushRecorded(Of(((nint*)args[2])[i]));
        // The generated encoders decline what needs the codec (a pNext chain), and name no other command.
        if (!FastCommands.Encode(command, args, rec.Writer, c.Handles)) Encode(command, args, rec);
        c.Stats?.Recorded();
        if (rec.Writer.Position >= HoldBytes) c.FlushRecorded(rec);
        return 0;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static void Encode(int command, ulong* args, Recorder rec)
    {
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        CommandCodec.EncodeRequest(command, args, rec.Writer, rec.Connection.Handles, caps);
    }

    /// <summary>Before vkQueueSubmit/vkQueueSubmit2 is encoded: what its command buffers recorded goes first.</summary>
    public static void FlushSubmitted(Connection c, int command, ulong* args)
    {
        if (!c.Records || args[2] == 0) return;
        uint n = (uint)args[1];
        for (uint s = 0; s < n; s++)
        {
            if (command == Tables.vkQueueSubmit)
            {
                ref var si = ref ((VkSubmitInfo*)args[2])[s];
                for (uint i = 0; i < si.commandBufferCount; i++) c.FlushRecorded(Of(si.pCommandBuffers[i].Handle));
            }
            else
            {
                ref var si = ref ((VkSubmitInfo2*)args[2])[s];
                for (uint i = 0; i < si.commandBufferInfoCount; i++) c.FlushRecorded(Of(si.pCommandBufferInfos[i].commandBuffer.Handle));
            }
        }
    }

    /// <summary>A begin, end or reset message in the recording: no reply wanted, so it never waits for the host.</summary>
    public static void Append(Recorder rec, int command, ulong* args)
    {
        ref readonly var cd = ref Tables.Commands[command];
        int at = rec.Writer.BeginMessage(cd.Id, MessageFlags.None);
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        CommandCodec.EncodeParams(command, args, rec.Writer, rec.Connection.Handles, caps);
        rec.Writer.EndMessage(at);
    }

    /// <summary>The host's command buffer is recording a prefix of what the guest dropped: reset it there first.</summary>
    public static void ResetOnHost(Recorder rec)
    {
        if (!rec.HostRecording) return;
        ulong* a = stackalloc ulong[2];
        a[0] = (ulong)rec.Handle; a[1] = 0;
        Append(rec, Tables.vkResetCommandBuffer, a);
        rec.KeepBytes = rec.Writer.Position;
        rec.HostRecording = false;
    }
}

/// <summary>The command-buffer commands whose guest-side meaning differs from sending them: allocation makes
/// recorders, begin/end/reset are recorded instead of waited for, frees and pool resets drop what was recorded.</summary>
internal static unsafe partial class Entry
{
    public static VkResult vkAllocateCommandBuffers(VkDevice device, VkCommandBufferAllocateInfo* pAllocateInfo, VkCommandBuffer* pCommandBuffers)
    {
        var c = Generic.ConnectionOf(device.Handle);
        var pool = c.CommandPools.Get(c, pAllocateInfo->commandPool.Handle, device.Handle);
        ulong* a = stackalloc ulong[3];
        a[0] = (ulong)device.Handle; a[1] = (ulong)pAllocateInfo; a[2] = (ulong)pCommandBuffers;
        lock (pool) return (VkResult)(int)c.CallWith(Tables.vkAllocateCommandBuffers, a, pool);
    }

    public static void vkFreeCommandBuffers(VkDevice device, VkCommandPool commandPool, uint commandBufferCount, VkCommandBuffer* pCommandBuffers)
    {
        var c = Generic.ConnectionOf(device.Handle);
        ulong* a = stackalloc ulong[4];
        a[0] = (ulong)device.Handle; a[1] = commandPool.Handle; a[2] = commandBufferCount; a[3] = (ulong)pCommandBuffers;
        try { c.Call(Tables.vkFreeCommandBuffers, a); }
        finally
        {
            var pool = c.CommandPools.Find(commandPool.Handle);
            if (pool is not null && pCommandBuffers != null)
                lock (pool)
                    for (uint i = 0; i < commandBufferCount; i++)
                        if (pCommandBuffers[i].Handle != 0) pool.Release(CommandBuffers.Of(pCommandBuffers[i].Handle));
        }
    }

    public static VkResult vkResetCommandPool(VkDevice device, VkCommandPool commandPool, VkCommandPoolResetFlags flags)
    {
        var c = Generic.ConnectionOf(device.Handle);
        // The host resets every command buffer of the pool: nothing unsent needs to reach it.
        var pool = c.CommandPools.Find(commandPool.Handle);
        if (pool is not null)
            lock (pool)
                foreach (var rec in pool.Live) { rec.Writer.Reset(); rec.KeepBytes = 0; rec.Ended = rec.HostRecording = false; }
        ulong* a = stackalloc ulong[3];
        a[0] = (ulong)device.Handle; a[1] = commandPool.Handle; a[2] = (ulong)(uint)flags;
        if (!c.Records) return (VkResult)(int)c.Call(Tables.vkResetCommandPool, a);
        // Engines reset a pool per frame: it never waits for the host (it can fail only for lack of memory).
        c.QueueWithoutReply(Tables.vkResetCommandPool, a);
        return VK_SUCCESS;
    }

    public static void vkDestroyCommandPool(VkDevice device, VkCommandPool commandPool, VkAllocationCallbacks* pAllocator)
    {
        if (commandPool.IsNull) return;
        var c = Generic.ConnectionOf(device.Handle);
        ulong* a = stackalloc ulong[3];
        a[0] = (ulong)device.Handle; a[1] = commandPool.Handle; a[2] = 0;
        try { c.Call(Tables.vkDestroyCommandPool, a); }
        finally { c.CommandPools.Destroy(commandPool.Handle); }
    }

    public static VkResult vkBeginCommandBuffer(VkCommandBuffer commandBuffer, VkCommandBufferBeginInfo* pBeginInfo)
    {
        var rec = CommandBuffers.Of(commandBuffer.Handle);
        var c = rec.Connection;
        ulong* a = stackalloc ulong[2];
        a[0] = (ulong)commandBuffer.Handle; a[1] = (ulong)pBeginInfo;
        if (!c.Records) return (VkResult)(int)c.Call(Tables.vkBeginCommandBuffer, a);
        if (c.IsLost) return VK_ERROR_DEVICE_LOST;
        // The implicit reset: an earlier recording that never reached the host is simply dropped.
        rec.Discard();
        CommandBuffers.ResetOnHost(rec);
        CommandBuffers.Append(rec, Tables.vkBeginCommandBuffer, a);
        return VK_SUCCESS;
    }

    public static VkResult vkEndCommandBuffer(VkCommandBuffer commandBuffer)
    {
        var rec = CommandBuffers.Of(commandBuffer.Handle);
        var c = rec.Connection;
        ulong* a = stackalloc ulong[1];
        a[0] = (ulong)commandBuffer.Handle;
        if (!c.Records) return (VkResult)(int)c.Call(Tables.vkEndCommandBuffer, a);
        if (c.IsLost) return VK_ERROR_DEVICE_LOST;
        CommandBuffers.Append(rec, Tables.vkEndCommandBuffer, a);
        rec.Ended = true;
        return VK_SUCCESS;
    }

    public static VkResult vkResetCommandBuffer(VkCommandBuffer commandBuffer, VkCommandBufferResetFlags flags)
    {
        var rec = CommandBuffers.Of(commandBuffer.Handle);
        var c = rec.Connection;
        ulong* a = stackalloc ulong[2];
        a[0] = (ulong)commandBuffer.Handle; a[1] = (ulong)(uint)flags;
        if (!c.Records) return (VkResult)(int)c.Call(Tables.vkResetCommandBuffer, a);
        if (c.IsLost) return VK_ERROR_DEVICE_LOST;
        rec.Discard();
        CommandBuffers.ResetOnHost(rec);
        return VK_SUCCESS;
    }
}
