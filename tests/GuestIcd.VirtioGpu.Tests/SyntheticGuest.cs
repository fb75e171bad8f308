using GuestIcd.Transport.Native;
using System.Buffers.Binary;
using GuestIcd.VirtioGpu;

namespace GuestIcd.VirtioGpu.Tests;

/// <summary>
/// Guest RAM in a memfd (as QEMU's memory-backend-memfd gives it) with one split virtqueue laid out in
/// it the way a driver would: descriptor table, available and used rings, and a bump allocator for
/// request and response buffers. Tests write chains as a driver (or a hostile one) would.
/// </summary>
internal sealed unsafe class SyntheticGuest : IDisposable
{
    public const ulong Base = 0x100000;           // guest-physical start of RAM
    public const ulong Bytes = 8 << 20;
    public const ulong DescGpa = Base, AvailGpa = Base + 0x4000, UsedGpa = Base + 0x8000;
    private const ulong HeapGpa = Base + 0x10000;

    private readonly byte* _map;
    private ulong _next = HeapGpa;
    private ushort _availIdx;
    private ushort _usedSeen;
    private ushort _freeDesc;

    public SyntheticGuest(ushort queueSize = 64)
    {
        QueueSize = queueSize;
        Fd = Native.CreateMemfd("synthetic-guest", (long)Bytes);
        _map = (byte*)Libc.mmap(null, (nuint)Bytes, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, Fd, 0);
        if (_map == Libc.MAP_FAILED)
            throw new IOException("mmap failed");
        // The test's own memory object: it neither unmaps nor closes (Dispose here does).
        Memory = new GuestMemory([new GuestRegion(Base, Bytes, 0x7f00_0000_0000, _map, Fd, 0)]);
    }

    public int Fd { get; }
    public ushort QueueSize { get; }
    public GuestMemory Memory { get; }
    public byte* Host => _map;

    public SplitVirtqueue NewQueue(bool indirect = false, bool eventIndex = false) =>
        new(Memory, QueueSize, Memory.Translate(DescGpa, 16UL * QueueSize), Memory.Translate(AvailGpa, 6UL + 2UL * QueueSize),
            Memory.Translate(UsedGpa, 6UL + 8UL * QueueSize), 0, 1 << 20, 1 << 20) { IndirectAllowed = indirect, EventIndex = eventIndex };

    /// <summary>The device's avail_event (EVENT_IDX): how far it has read.</summary>
    public ushort AvailEvent => BinaryPrimitives.ReadUInt16LittleEndian(At(UsedGpa + 4 + 8UL * QueueSize, 2));

    /// <summary>Writes an indirect descriptor table of (addr, len, flags, next) entries into guest memory.</summary>
    public ulong IndirectTable(params (ulong Addr, uint Len, ushort Flags, ushort Next)[] entries)
    {
        ulong at = Alloc(16 * entries.Length);
        for (int i = 0; i < entries.Length; i++)
        {
            var d = At(at + 16UL * (ulong)i, 16);
            BinaryPrimitives.WriteUInt64LittleEndian(d, entries[i].Addr);
            BinaryPrimitives.WriteUInt32LittleEndian(d[8..], entries[i].Len);
            BinaryPrimitives.WriteUInt16LittleEndian(d[12..], entries[i].Flags);
            BinaryPrimitives.WriteUInt16LittleEndian(d[14..], entries[i].Next);
        }
        return at;
    }

    public Span<byte> At(ulong gpa, int length) => new(_map + (gpa - Base), length);

    /// <summary>Allocates guest memory, page-aligned when asked.</summary>
    public ulong Alloc(int bytes, bool pageAligned = false)
    {
        if (pageAligned)
            _next = (_next + 4095) & ~4095UL;
        ulong at = _next;
        _next += (ulong)((bytes + 15) & ~15);
        At(at, bytes).Clear();
        return at;
    }

    public ulong Put(ReadOnlySpan<byte> bytes)
    {
        ulong at = Alloc(bytes.Length);
        bytes.CopyTo(At(at, bytes.Length));
        return at;
    }

    public void WriteDesc(ushort index, ulong addr, uint len, ushort flags, ushort next)
    {
        var d = At(DescGpa + 16UL * index, 16);
        BinaryPrimitives.WriteUInt64LittleEndian(d, addr);
        BinaryPrimitives.WriteUInt32LittleEndian(d[8..], len);
        BinaryPrimitives.WriteUInt16LittleEndian(d[12..], flags);
        BinaryPrimitives.WriteUInt16LittleEndian(d[14..], next);
    }

    /// <summary>Publishes a head index on the available ring (any value: a hostile driver's too).</summary>
    public void MakeAvailable(ushort head)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(At(AvailGpa + 4 + 2UL * (ulong)(_availIdx % QueueSize), 2), head);
        _availIdx++;
        BinaryPrimitives.WriteUInt16LittleEndian(At(AvailGpa + 2, 2), _availIdx);
        // used_event (EVENT_IDX): interrupt me for the next used entry, as a driver waiting for answers does.
        BinaryPrimitives.WriteUInt16LittleEndian(At(AvailGpa + 4 + 2UL * QueueSize, 2), UsedIndex);
    }

    /// <summary>Sets the available index directly (to corrupt the ring).</summary>
    public void SetAvailIndex(ushort idx)
    {
        _availIdx = idx;
        BinaryPrimitives.WriteUInt16LittleEndian(At(AvailGpa + 2, 2), idx);
    }

    /// <summary>A well-formed request: the request bytes in one readable descriptor, then a writable one
    /// of <paramref name="responseBytes"/>. Returns the head and the response's address.</summary>
    public (ushort Head, ulong Response) Submit(ReadOnlySpan<byte> request, int responseBytes = 1024)
    {
        ulong req = Put(request);
        ulong resp = Alloc(responseBytes);
        ushort a = NextDesc(), b = NextDesc();
        WriteDesc(a, req, (uint)request.Length, SplitVirtqueue.DescFlagNext, b);
        WriteDesc(b, resp, (uint)responseBytes, SplitVirtqueue.DescFlagWrite, 0);
        MakeAvailable(a);
        return (a, resp);
    }

    public ushort NextDesc()
    {
        ushort d = _freeDesc;
        _freeDesc = (ushort)((_freeDesc + 1) % QueueSize);
        return d;
    }

    public ushort UsedIndex => BinaryPrimitives.ReadUInt16LittleEndian(At(UsedGpa + 2, 2));

    /// <summary>The used entries published since the last call.</summary>
    public List<(uint Id, uint Len)> TakeUsed()
    {
        var list = new List<(uint, uint)>();
        while (_usedSeen != UsedIndex)
        {
            var e = At(UsedGpa + 4 + 8UL * (ulong)(_usedSeen % QueueSize), 8);
            list.Add((BinaryPrimitives.ReadUInt32LittleEndian(e), BinaryPrimitives.ReadUInt32LittleEndian(e[4..])));
            _usedSeen++;
        }
        return list;
    }

    public uint ResponseType(ulong response) => BinaryPrimitives.ReadUInt32LittleEndian(At(response, 4));

    public void Dispose()
    {
        Libc.munmap(_map, (nuint)Bytes);
        Libc.close(Fd);
    }
}

/// <summary>Builds virtio-gpu requests as the guest kernel's driver lays them out.</summary>
internal static class Req
{
    public static byte[] Header(uint type, uint ctx = 0, ulong fence = 0, int bodyBytes = 0, uint flags = 0)
    {
        var b = new byte[Gpu.HeaderSize + bodyBytes];
        BinaryPrimitives.WriteUInt32LittleEndian(b, type);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), flags | (fence != 0 ? Gpu.FlagFence : 0));
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8), fence);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(16), ctx);
        return b;
    }

    public static byte[] With(uint type, uint ctx, params uint[] words)
    {
        var b = Header(type, ctx, 0, 4 * words.Length);
        for (int i = 0; i < words.Length; i++)
            BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(Gpu.HeaderSize + 4 * i), words[i]);
        return b;
    }

    public static byte[] CtxCreate(uint ctx, uint capset, string name)
    {
        var b = Header(Gpu.CmdCtxCreate, ctx, 0, 72);
        var n = System.Text.Encoding.UTF8.GetBytes(name);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(Gpu.HeaderSize), (uint)n.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(Gpu.HeaderSize + 4), capset);
        n.CopyTo(b.AsSpan(Gpu.HeaderSize + 8));
        return b;
    }

    /// <summary>RESOURCE_CREATE_3D of a buffer (PIPE_BUFFER) of <paramref name="bytes"/>.</summary>
    public static byte[] CreateBuffer(uint id, uint bytes) =>
        With(Gpu.CmdResourceCreate3D, 0, id, 0, 64 /* R8_UNORM */, 0x10 /* constant buffer */, bytes, 1, 1, 1, 0, 0, 0, 0);

    public static byte[] AttachBacking(uint id, params (ulong Addr, uint Len)[] entries)
    {
        var b = Header(Gpu.CmdResourceAttachBacking, 0, 0, 8 + 16 * entries.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(Gpu.HeaderSize), id);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(Gpu.HeaderSize + 4), (uint)entries.Length);
        for (int i = 0; i < entries.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(Gpu.HeaderSize + 8 + 16 * i), entries[i].Addr);
            BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(Gpu.HeaderSize + 16 + 16 * i), entries[i].Len);
        }
        return b;
    }

    /// <summary>RESOURCE_CREATE_BLOB as the kernel sends it (context 0 for guest memory); <paramref name="claimedEntries"/>
    /// overrides nr_entries (a hostile count).</summary>
    public static byte[] CreateBlob(uint id, uint mem, uint flags, ulong size, (ulong Addr, uint Len)[] entries, ulong blobId = 0,
        uint claimedEntries = uint.MaxValue, uint ctx = 0)
    {
        var b = Header(Gpu.CmdResourceCreateBlob, ctx, 0, 32 + 16 * entries.Length);
        var body = b.AsSpan(Gpu.HeaderSize);
        BinaryPrimitives.WriteUInt32LittleEndian(body, id);
        BinaryPrimitives.WriteUInt32LittleEndian(body[4..], mem);
        BinaryPrimitives.WriteUInt32LittleEndian(body[8..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(body[12..], claimedEntries == uint.MaxValue ? (uint)entries.Length : claimedEntries);
        BinaryPrimitives.WriteUInt64LittleEndian(body[16..], blobId);
        BinaryPrimitives.WriteUInt64LittleEndian(body[24..], size);
        for (int i = 0; i < entries.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(body[(32 + 16 * i)..], entries[i].Addr);
            BinaryPrimitives.WriteUInt32LittleEndian(body[(40 + 16 * i)..], entries[i].Len);
        }
        return b;
    }

    public static byte[] Submit(uint ctx, ReadOnlySpan<byte> commands, uint claimedSize = uint.MaxValue)
    {
        var b = Header(Gpu.CmdSubmit3D, ctx, 0, 8 + commands.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(Gpu.HeaderSize), claimedSize == uint.MaxValue ? (uint)commands.Length : claimedSize);
        commands.CopyTo(b.AsSpan(Gpu.HeaderSize + 8));
        return b;
    }

    public static byte[] Transfer3D(uint type, uint ctx, uint resource)
    {
        var b = Header(type, ctx, 0, 48);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(Gpu.HeaderSize + 32), resource);
        return b;
    }
}
