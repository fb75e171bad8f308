using System.Runtime.InteropServices;
using System.Text;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;
using GuestIcd.Vulkan;

namespace GuestIcd.Fuzz;

/// <summary>
/// Structure-aware inputs: the fuzzer's bytes are read as a program of Vulkan commands. Each command is
/// built as a real argument block (structs in native memory, sTypes set, counts consistent with their
/// arrays, enums from the registry, handles the program created earlier) and encoded with the project's
/// own <see cref="CommandCodec"/>, so what hostsim receives always decodes and the fuzzer spends its time
/// in the executor and the driver rather than in the framing checks.
/// </summary>
internal sealed unsafe class ProgramBuilder : IDisposable
{
    const int ObjInstance = 1, ObjPhysicalDevice = 2, ObjDevice = 3, ObjQueue = 4;
    const ulong HostChosen = 1UL << 63;
    const int MaxElements = 6, MaxDepth = 6;

    readonly DataProvider _in;
    readonly WireWriter _out = new(1 << 16);
    readonly Arena _mem = new(1 << 16, 16u << 20);
    readonly GuestHandles _handles = new();
    readonly ulong* _args = (ulong*)NativeMemory.AllocZeroed(CommandCodec.MaxParams * 8);
    readonly ulong* _caps = (ulong*)NativeMemory.AllocZeroed(CommandCodec.MaxParams * 8);
    int _depth;

    /// <summary>Commands a program may pick: everything that travels as itself, the global ones only at the start.</summary>
    static readonly int[] s_commands = Enumerable.Range(0, Tables.Commands.Length)
        .Where(c => Tables.Commands[c].OnWire && Tables.Commands[c].Level != CommandLevel.Global).ToArray();
    /// <summary>Core commands: most extension commands meet a device that never enabled them, and one
    /// bug (calling through the loader's NULL stub) would otherwise hide every deeper one.</summary>
    static readonly int[] s_core = s_commands.Where(c => Tables.Commands[c].Feature.StartsWith("VK_VERSION_", StringComparison.Ordinal)).ToArray();
    static readonly System.Collections.Concurrent.ConcurrentDictionary<int, int[]> s_extending = new();
    static readonly int[] s_chainable = Enumerable.Range(0, Tables.Types.Length)
        .Where(t => Tables.Types[t].SType > 0 && Tables.Types[t].CanIn).ToArray();
    static readonly byte[][] s_extensionNames = Tables.Extensions.Select(e => Encoding.ASCII.GetBytes(e.Name + "\0")).ToArray();

    static readonly bool s_debug = Environment.GetEnvironmentVariable("GUESTICD_FUZZ_DEBUG") == "1";

    ProgramBuilder(ReadOnlyMemory<byte> input) => _in = new DataProvider(input);

    /// <summary>The wire stream (hello included) that <paramref name="input"/> describes.</summary>
    public static byte[] Build(ReadOnlyMemory<byte> input)
    {
        using var b = new ProgramBuilder(input);
        b.Hello();
        b.Prelude();
        for (int i = 0; i < 256 && !b._in.Exhausted; i++)
        {
            try { b.OneCommand(); }
            catch (ProtocolException) { } // the encoder refused what was built (a count over its limit): skip it
            catch (OverflowException) { }
        }
        return b._out.Written.ToArray();
    }

    void Hello()
    {
        var all = Tables.Commands.Where(c => c.OnWire).Select(c => c.Id).ToArray();
        Handshake.Write(new Hello(Handshake.ProtocolMajor, Handshake.ProtocolMinor, Tables.RegistryVersion, "fuzz", all, []), _out);
    }

    /// <summary>An instance, its physical device, a device and its queue, built right, so that every
    /// program starts where real applications are.</summary>
    void Prelude()
    {
        var app = Alloc<VkApplicationInfo>();
        app->sType = VkStructureType.VK_STRUCTURE_TYPE_APPLICATION_INFO;
        app->apiVersion = (1u << 22) | (3u << 12);
        var ici = Alloc<VkInstanceCreateInfo>();
        ici->sType = VkStructureType.VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
        ici->pApplicationInfo = app;
        Clear();
        _args[0] = (ulong)ici;
        var instance = Alloc<ulong>();
        _args[2] = (ulong)instance;
        Emit(Tables.vkCreateInstance);

        Clear();
        _args[0] = *instance;
        var count = Alloc<uint>();
        *count = 1;
        _args[1] = (ulong)count;
        _args[2] = (ulong)Alloc<ulong>();
        Emit(Tables.vkEnumeratePhysicalDevices);
        // Host-chosen ids are handed out in order: the first object the host names is the physical device.
        _handles.Add(ObjPhysicalDevice, HostChosen | 1);

        var prio = Alloc<float>();
        *prio = 1;
        var qci = Alloc<VkDeviceQueueCreateInfo>();
        qci->sType = VkStructureType.VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
        qci->queueCount = 1;
        qci->pQueuePriorities = prio;
        var dci = Alloc<VkDeviceCreateInfo>();
        dci->sType = VkStructureType.VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
        dci->queueCreateInfoCount = 1;
        dci->pQueueCreateInfos = qci;
        if (_in.Coin(2))
        {
            // Shared-heap allocations need it; without it the program explores the extension-not-enabled paths.
            var names = (byte**)Alloc<ulong>();
            names[0] = Str("VK_EXT_external_memory_host\0"u8);
            dci->enabledExtensionCount = 1;
            dci->ppEnabledExtensionNames = names;
        }
        Clear();
        _args[0] = HostChosen | 1;
        _args[1] = (ulong)dci;
        var device = Alloc<ulong>();
        _args[3] = (ulong)device;
        Emit(Tables.vkCreateDevice);

        Clear();
        _args[0] = *device;
        _args[3] = (ulong)Alloc<ulong>();
        Emit(Tables.vkGetDeviceQueue);
        _handles.Add(ObjQueue, HostChosen | 2);
    }

    void OneCommand()
    {
        _mem.Reset();
        switch (_in.Byte() % 32)
        {
            case 0: PrivateMessage(); return;
            default:
                // A command whose dispatchable handle the program has: one it lacks only ends the session.
                var from = _in.Coin(8) ? s_commands : s_core;
                int cmd = from[_in.Below(from.Length)];
                for (int tries = 0; tries < 8 && !_handles.Has(CommandCodec.ParamsOf(cmd)[0].Type); tries++)
                    cmd = from[_in.Below(from.Length)];
                Clear();
                if (s_debug) Console.Error.WriteLine($"build {Tables.Commands[cmd].Name}");
                BuildParams(cmd);
                if (s_debug) Console.Error.WriteLine($"emit {Tables.Commands[cmd].Name}");
                Emit(cmd);
                Forget(cmd);
                return;
        }
    }

    /// <summary>The memory messages are hand-framed: raw payloads around a live memory id.</summary>
    void PrivateMessage()
    {
        uint[] ids = [PrivateCommands.AllocateSharedMemory, PrivateCommands.WriteMemory, PrivateCommands.ReadMemory];
        uint id = ids[_in.Below(3)];
        int at = _out.BeginMessage(id, id == PrivateCommands.WriteMemory ? MessageFlags.None : MessageFlags.ReplyWanted);
        if (id == PrivateCommands.AllocateSharedMemory)
        {
            _out.U64(_in.Scalar(8) & ~4095UL);
            _out.U64(_in.Scalar(8) & ~4095UL);
            Clear();
            _args[0] = _handles.Pick(ObjDevice, _in);
            BuildParams(Tables.vkAllocateMemory);
            CommandCodec.EncodeParams(Tables.vkAllocateMemory, _args, _out, _handles, _caps);
        }
        else
        {
            _out.U64(_handles.Pick(8 /* VK_OBJECT_TYPE_DEVICE_MEMORY */, _in));
            if (id == PrivateCommands.ReadMemory) _out.U64(_in.Scalar(8));
            else
            {
                // One run: {u64 offset, u32 length, bytes}.
                int len = _in.Below(64);
                _out.U32(1);
                _out.U64(_in.Scalar(8));
                _out.U32((uint)len);
                Span<byte> bytes = stackalloc byte[64];
                _in.Fill(bytes[..len]);
                _out.Bytes(bytes[..len]);
            }
        }
        _out.EndMessage(at);
    }

    void Emit(int cmd)
    {
        int mark = _out.Position;
        try { CommandCodec.EncodeRequest(cmd, _args, _out, _handles, _caps); }
        catch { _out.Truncate(mark); throw; }
    }

    /// <summary>Destroyed handles mostly leave the program's pool; now and then one stays, to be used after its end.</summary>
    void Forget(int cmd)
    {
        foreach (ref readonly var f in CommandCodec.ParamsOf(cmd))
        {
            if ((f.Flags & FieldFlags.Destroy) == 0 || _in.Coin(8)) continue;
            if (f.Kind == FieldKind.Handle) _handles.Remove(f.Type, _args[f.Offset / 8]);
            else if (f.Kind == FieldKind.Pointer && f.Elem == ElemKind.Handle && _args[f.Offset / 8] != 0)
            {
                ulong n = StructCodec.Count(f, (byte*)_args);
                for (ulong i = 0; i < n; i++) _handles.Remove(f.Type, ((ulong*)_args[f.Offset / 8])[i]);
            }
        }
    }

    void Clear() => new Span<ulong>(_args, CommandCodec.MaxParams).Clear();

    T* Alloc<T>() where T : unmanaged => (T*)_mem.Alloc((nuint)sizeof(T));

    byte* Str(ReadOnlySpan<byte> withNul)
    {
        var p = (byte*)_mem.Alloc((nuint)withNul.Length, 1);
        withNul.CopyTo(new Span<byte>(p, withNul.Length));
        return p;
    }

    // ------------------------------------------------------------------ generic argument blocks

    /// <summary>Parameters in two passes: values first (counts among them), then what points at arrays,
    /// so each array is as long as the count the decoder will read for it.</summary>
    void BuildParams(int cmd)
    {
        var ps = CommandCodec.ParamsOf(cmd);
        byte* block = (byte*)_args;
        bool keepFirst = _args[0] != 0;
        for (int i = 0; i < ps.Length; i++)
        {
            ref readonly var f = ref ps[i];
            if (i == 0 && keepFirst) continue;
            if (f.IsOut)
            {
                if ((f.Flags & FieldFlags.InOut) != 0)
                {
                    var q = (byte*)_mem.Alloc((nuint)f.Size);
                    if (f.Size >= 4) *(uint*)q = (uint)_in.Below(MaxElements);
                    *(byte**)(block + f.Offset) = q;
                }
                continue;
            }
            if (f.Kind is FieldKind.Pod or FieldKind.Handle or FieldKind.Struct) Fill(f, block);
        }
        for (int i = 0; i < ps.Length; i++)
        {
            ref readonly var f = ref ps[i];
            if (f.IsOut || f.Kind is FieldKind.Pod or FieldKind.Handle or FieldKind.Struct) continue;
            // The guest's encoder reads a strided array at the application's stride; this program's arrays are
            // packed (the host never sees the stride: the wire is packed, whatever the guest said).
            if ((f.Flags & FieldFlags.Strided) != 0) *(uint*)(block + f.LenMember) = (uint)f.Size;
            Fill(f, block);
        }
        for (int i = 0; i < ps.Length; i++)
        {
            ref readonly var f = ref ps[i];
            if (!f.IsOut || (f.Flags & FieldFlags.InOut) != 0) continue;
            if ((f.Flags & FieldFlags.Optional) != 0 && _in.Coin(8)) continue;
            ulong n = CapCount(f, block);
            *(byte**)(block + f.Offset) = (byte*)_mem.Alloc((nuint)(Math.Max(n, 1) * (ulong)f.Size));
        }
    }

    void FillStruct(int type, byte* p)
    {
        ref readonly var t = ref Tables.Types[type];
        var fields = Tables.Fields.AsSpan(t.FirstField, t.FieldCount);
        if (++_depth > MaxDepth) { _depth--; return; }
        foreach (ref readonly var f in fields)
            if (f.Kind is FieldKind.Pod or FieldKind.Handle or FieldKind.Struct) Fill(f, p);
        foreach (ref readonly var f in fields)
            if (f.Kind is not (FieldKind.Pod or FieldKind.Handle or FieldKind.Struct)) Fill(f, p);
        if (t.SType >= 0 && _in.Byte() != 0xFF) *(int*)p = t.SType; // sometimes a wrong one (still a valid enum)
        _depth--;
    }

    void Fill(in FieldDesc f, byte* owner)
    {
        byte* at = owner + f.Offset;
        switch (f.Kind)
        {
            case FieldKind.Pod:
                if (f.Elem == ElemKind.Struct && Tables.Types[f.Type].Size > 0)
                {
                    for (int i = 0; i * Tables.Types[f.Type].Size < f.Size; i++) FillStruct(f.Type, at + i * Tables.Types[f.Type].Size);
                }
                else if (f.Type >= 0) *(int*)at = PickEnum(f.Type);
                else if (f.Size is 1 or 2 or 4 or 8) WriteScalar(at, f.Size, _in.Scalar(f.Size));
                else _in.Fill(new Span<byte>(at, f.Size));
                break;
            case FieldKind.Handle:
                for (int i = 0; i < f.Count; i++) ((ulong*)at)[i] = _handles.Pick(f.Type, _in);
                break;
            case FieldKind.Struct:
                for (int i = 0; i < f.Count; i++) FillStruct(f.Type, at + i * f.Size);
                break;
            case FieldKind.PNext:
                *(void**)at = _depth < MaxDepth && _in.Coin(6) ? Chained(f.Type) : null;
                break;
            case FieldKind.Pointer:
            {
                ulong n = f.Len == LenMode.None ? 1 : CapCount(f, owner);
                // NULL where the spec allows it (optional, or an empty array); a forbidden NULL ends the session at the decoder.
                bool mayBeNull = (f.Flags & FieldFlags.Optional) != 0 || n == 0;
                if (mayBeNull && (n == 0 || _in.Coin(10)) || _depth >= MaxDepth && mayBeNull) { *(void**)at = null; break; }
                byte* q = (byte*)_mem.Alloc((nuint)(Math.Max(n, 1) * (ulong)f.Size));
                *(byte**)at = q;
                for (ulong i = 0; i < n; i++)
                {
                    byte* e = q + i * (ulong)f.Size;
                    switch (f.Elem)
                    {
                        case ElemKind.Handle: *(ulong*)e = _handles.Pick(f.Type, _in); break;
                        case ElemKind.Struct: FillStruct(f.Type, e); break;
                        default:
                            if (f.Size is 1 or 2 or 4 or 8) WriteScalar(e, f.Size, _in.Scalar(f.Size));
                            else _in.Fill(new Span<byte>(e, f.Size));
                            break;
                    }
                }
                break;
            }
            case FieldKind.String:
                *(byte**)at = (f.Flags & FieldFlags.Optional) != 0 && _in.Coin(3) ? null : SomeString();
                break;
            case FieldKind.StringArray:
            {
                ulong n = CapCount(f, owner);
                var q = (byte**)_mem.Alloc((nuint)(Math.Max(n, 1) * 8));
                for (ulong i = 0; i < n; i++) q[i] = SomeString();
                *(byte***)at = q;
                break;
            }
            case FieldKind.Skip: *(void**)at = null; break;
        }
    }

    /// <summary>The count the decoder will read for this array, brought down to a few elements (written
    /// back where it lives, so the count and the array agree).</summary>
    ulong CapCount(in FieldDesc f, byte* owner)
    {
        if (f.Len == LenMode.SampleMask)
        {
            // pSampleMask's length derives from rasterizationSamples: make that a real sample count.
            *(uint*)(owner + f.LenOffset) = 1u << _in.Below(7);
            return StructCodec.Count(f, owner);
        }
        ulong n = StructCodec.Count(f, owner);
        if (n <= MaxElements) return n;
        ulong m = (ulong)_in.Below(MaxElements + 1);
        byte* where = f.Len switch
        {
            LenMode.Field => owner + f.LenOffset,
            LenMode.Deref => *(byte**)(owner + f.LenOffset),
            LenMode.Member => *(byte**)(owner + f.LenOffset) + f.LenMember,
            _ => null,
        };
        if (where == null) throw new InvalidOperationException($"{f.Name}: no count to shorten");
        WriteScalar(where, f.LenSize, m);
        return m;
    }

    /// <summary>A struct for the pNext of <paramref name="owner"/>: mostly one that extends it (the guest's encoder
    /// drops the others, as the host would refuse them), now and then any.</summary>
    void* Chained(int owner)
    {
        var fitting = s_extending.GetOrAdd(owner, o => s_chainable.Where(t => StructCodec.Extends(t, o)).ToArray());
        int t = fitting.Length > 0 && !_in.Coin(8) ? fitting[_in.Below(fitting.Length)] : s_chainable[_in.Below(s_chainable.Length)];
        var p = (byte*)_mem.Alloc((nuint)Tables.Types[t].Size);
        FillStruct(t, p);
        *(int*)p = Tables.Types[t].SType;
        return p;
    }

    int PickEnum(int enumType)
    {
        var values = Tables.CheckedEnumValues[enumType];
        return values.Length == 0 ? 0 : values[_in.Below(values.Length)];
    }

    byte* SomeString()
    {
        if (!_in.Coin(4)) return Str(s_extensionNames[_in.Below(s_extensionNames.Length)]);
        int len = _in.Below(16);
        var p = (byte*)_mem.Alloc((nuint)len + 1, 1);
        for (int i = 0; i < len; i++) p[i] = (byte)(0x20 + _in.Byte() % 0x5F);
        return p;
    }

    static void WriteScalar(byte* p, int size, ulong v)
    {
        switch (size)
        {
            case 1: *p = (byte)v; break;
            case 2: *(ushort*)p = (ushort)v; break;
            case 4: *(uint*)p = (uint)v; break;
            default: *(ulong*)p = v; break;
        }
    }

    public void Dispose()
    {
        _out.Dispose();
        _mem.Dispose();
        NativeMemory.Free(_args);
        NativeMemory.Free(_caps);
    }
}

/// <summary>The guest side's handle map for generated programs: a handle is its own wire id, and every
/// object the program creates joins the pool that later commands pick from.</summary>
internal sealed unsafe class GuestHandles : IHandleMap
{
    readonly Dictionary<int, List<ulong>> _live = new();
    ulong _next = 0x1000;

    public void Add(int type, ulong id)
    {
        if (!_live.TryGetValue(type, out var l)) _live[type] = l = new List<ulong>();
        l.Add(id);
    }

    public bool Has(int type) => _live.TryGetValue(type, out var l) && l.Count > 0;

    public void Remove(int type, ulong id)
    {
        if (_live.TryGetValue(type, out var l)) l.Remove(id);
    }

    /// <summary>Mostly a live handle of the right type; sometimes NULL, a handle of another type or a
    /// stale id, which the host must refuse.</summary>
    public ulong Pick(int type, DataProvider d)
    {
        int roll = d.Byte() % 64;
        if (roll == 0) return 0;
        if (roll == 1) return _next - (ulong)d.Below(8);
        if (roll == 2)
        {
            var any = _live.Values.Where(v => v.Count > 0).ToList();
            if (any.Count > 0) { var l = any[d.Below(any.Count)]; return l[d.Below(l.Count)]; }
        }
        if (_live.TryGetValue(type, out var mine) && mine.Count > 0) return mine[d.Below(mine.Count)];
        return 0;
    }

    public ulong ToWire(int objectType, ulong handle) => handle;
    public ulong FromWire(int objectType, ulong id) => id;

    public ulong Create(int objectType, out ulong handle)
    {
        handle = ++_next;
        Add(objectType, handle);
        return handle;
    }

    public void ExpectCreate(int objectType, ulong id, ulong* slot) => throw new InvalidOperationException("host-only");
}
