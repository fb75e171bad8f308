using System.Buffers.Binary;

namespace GuestIcd.VirtioGpu;

/// <summary>One readable or writable piece of a descriptor chain, in guest-physical addresses.</summary>
public readonly record struct Segment(ulong Gpa, uint Length);

/// <summary>
/// A descriptor chain popped from a virtqueue: the device-readable segments (the request) and then
/// the device-writable ones (room for the response). Its arrays are the queue's and are reused by the
/// next <see cref="SplitVirtqueue.Pop"/>.
/// </summary>
public sealed class DescriptorChain
{
    internal Segment[] ReadableArray = [];
    internal Segment[] WritableArray = [];

    public ushort Head { get; internal set; }
    public int ReadableCount { get; internal set; }
    public int WritableCount { get; internal set; }
    public ulong ReadableBytes { get; internal set; }
    public ulong WritableBytes { get; internal set; }
    public ReadOnlySpan<Segment> Readable => ReadableArray.AsSpan(0, ReadableCount);
    public ReadOnlySpan<Segment> Writable => WritableArray.AsSpan(0, WritableCount);
}

/// <summary>What <see cref="SplitVirtqueue.Pop"/> found.</summary>
public enum PopResult
{
    /// <summary>The driver has made nothing new available.</summary>
    Empty,

    /// <summary>A well-formed chain (in the out parameter).</summary>
    Chain,

    /// <summary>A malformed chain: it was consumed (used with length 0) and the reason is given; the queue goes on.</summary>
    BadChain,

    /// <summary>The ring itself is corrupt (the available index ran ahead by more than the queue size):
    /// nothing on it can be trusted, so the queue stops until the frontend sets it up again.</summary>
    Broken,
}

/// <summary>
/// A split virtqueue (virtio 1.x §2.7) walked from the device side. Every value read from the rings is
/// guest-controlled: descriptor indices are bounded by the queue size, chains by the queue size (a
/// loop cannot spin), segments must lie in guest RAM, and readable and writable totals are capped.
/// Indirect descriptors are refused (the backend does not offer VIRTIO_RING_F_INDIRECT_DESC).
/// </summary>
public sealed unsafe class SplitVirtqueue
{
    public const ushort DescFlagNext = 1, DescFlagWrite = 2, DescFlagIndirect = 4;
    public const ushort AvailFlagNoInterrupt = 1;

    private readonly byte* _desc;
    private readonly byte* _avail;
    private readonly byte* _used;
    private readonly DescriptorChain _chain = new();
    private ushort _lastAvail;
    private ushort _usedIdx;

    /// <param name="size">Number of descriptors: a power of two from 1 to 32768.</param>
    /// <param name="desc">Host pointer to 16 × size bytes.</param>
    /// <param name="avail">Host pointer to 6 + 2 × size bytes.</param>
    /// <param name="used">Host pointer to 6 + 8 × size bytes.</param>
    public SplitVirtqueue(GuestMemory memory, ushort size, byte* desc, byte* avail, byte* used, ushort lastAvail,
        ulong maxReadable = 16 << 20, ulong maxWritable = 16 << 20)
    {
        if (size == 0 || size > 32768 || (size & (size - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(size), size, "a split virtqueue's size is a power of two up to 32768");
        Memory = memory;
        Size = size;
        _desc = desc;
        _avail = avail;
        _used = used;
        _lastAvail = lastAvail;
        _usedIdx = Volatile.Read(ref *(ushort*)(used + 2));
        MaxReadable = maxReadable;
        MaxWritable = maxWritable;
        _chain.ReadableArray = new Segment[Math.Max((int)size, MaxIndirect)];
        _chain.WritableArray = new Segment[Math.Max((int)size, MaxIndirect)];
    }

    public GuestMemory Memory { get; }
    public ushort Size { get; }

    /// <summary>VIRTIO_RING_F_INDIRECT_DESC was negotiated.</summary>
    public bool IndirectAllowed { get; init; }

    /// <summary>VIRTIO_RING_F_EVENT_IDX was negotiated: the device publishes how far it has read
    /// (avail_event) so the driver knows when to kick, and interrupts when the driver's used_event is passed.</summary>
    public bool EventIndex { get; init; }
    public ulong MaxReadable { get; }
    public ulong MaxWritable { get; }

    /// <summary>The next available index the device will read (GET_VRING_BASE reports it).</summary>
    public ushort LastAvail => _lastAvail;

    public static ulong DescBytes(ushort size) => 16UL * size;
    public static ulong AvailBytes(ushort size) => 6UL + 2UL * size;
    public static ulong UsedBytes(ushort size) => 6UL + 8UL * size;

    /// <summary>Takes the next available chain.</summary>
    public PopResult Pop(out DescriptorChain chain, out string? error)
    {
        chain = _chain;
        error = null;
        ushort availIdx = Volatile.Read(ref *(ushort*)(_avail + 2));
        ushort pending = (ushort)(availIdx - _lastAvail);
        if (pending == 0)
            return PopResult.Empty;
        if (pending > Size)
        {
            error = $"the available index {availIdx} is {pending} entries ahead of {_lastAvail} on a {Size}-entry queue";
            return PopResult.Broken;
        }
        // The ring entries must be read after the index (the driver wrote them before it).
        Interlocked.MemoryBarrier();
        ushort head = *(ushort*)(_avail + 4 + 2 * (_lastAvail % Size));
        _lastAvail++;
        if (head >= Size)
        {
            // Nothing to mark used: a head outside the table names no descriptor the driver could track.
            error = $"head descriptor {head} is outside the {Size}-entry table";
            return PopResult.BadChain;
        }
        _chain.Head = head;
        error = Walk(head);
        if (error is null)
            return PopResult.Chain;
        PushUsed(head, 0);
        return PopResult.BadChain;
    }

    /// <summary>Longest indirect table accepted (the guest kernel uses one entry per page of a request).</summary>
    public const int MaxIndirect = 4096;

    private string? Walk(ushort head)
    {
        int readable = 0, writable = 0;
        ulong readBytes = 0, writeBytes = 0;
        byte* table = _desc;
        int tableSize = Size;
        bool indirect = false;
        int i = head;
        for (int count = 0; ; count++)
        {
            if (count >= tableSize)
                return $"the chain from descriptor {head} is longer than its table ({tableSize}): it loops";
            byte* d = table + 16 * i;
            ulong addr = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(d, 8));
            uint len = BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(d + 8, 4));
            ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(d + 12, 2));
            ushort next = BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(d + 14, 2));
            string where = indirect ? $"indirect descriptor {i} of chain {head}" : $"descriptor {i}";
            if ((flags & DescFlagIndirect) != 0)
            {
                if (!IndirectAllowed)
                    return $"{where} is indirect, which this device did not offer";
                if (indirect)
                    return $"{where} is an indirect table inside an indirect table";
                if ((flags & DescFlagNext) != 0)
                    return $"{where} is indirect and also continues";
                if (len == 0 || len % 16 != 0 || len / 16 > MaxIndirect)
                    return $"{where}: an indirect table of {len} bytes (a multiple of 16, at most {MaxIndirect} entries)";
                byte* t = Memory.Translate(addr, len);
                if (t == null)
                    return $"{where}: its indirect table (0x{addr:x}+{len}) is not inside guest memory";
                table = t;
                tableSize = (int)(len / 16);
                indirect = true;
                i = 0;
                count = -1;
                continue;
            }
            if (!Memory.Covers(addr, len))
                return $"{where} (0x{addr:x}+{len}) points outside guest memory";
            if ((flags & DescFlagWrite) != 0)
            {
                writeBytes += len;
                if (writeBytes > MaxWritable)
                    return $"the chain from descriptor {head} offers more than {MaxWritable} writable bytes";
                if (readable + writable >= _chain.ReadableArray.Length)
                    return $"the chain from descriptor {head} has more than {_chain.ReadableArray.Length} segments";
                _chain.WritableArray[writable++] = new Segment(addr, len);
            }
            else
            {
                if (writable > 0)
                    return $"{where} is readable after a writable one";
                readBytes += len;
                if (readBytes > MaxReadable)
                    return $"the chain from descriptor {head} carries more than {MaxReadable} readable bytes";
                if (readable + writable >= _chain.ReadableArray.Length)
                    return $"the chain from descriptor {head} has more than {_chain.ReadableArray.Length} segments";
                _chain.ReadableArray[readable++] = new Segment(addr, len);
            }
            if ((flags & DescFlagNext) == 0)
                break;
            if (next >= tableSize)
                return $"{where} continues at {next}, outside its {tableSize}-entry table";
            i = next;
        }
        _chain.ReadableCount = readable;
        _chain.WritableCount = writable;
        _chain.ReadableBytes = readBytes;
        _chain.WritableBytes = writeBytes;
        return null;
    }

    /// <summary>Returns a chain to the driver with <paramref name="written"/> bytes written into it.</summary>
    public void PushUsed(ushort head, uint written)
    {
        byte* e = _used + 4 + 8 * (_usedIdx % Size);
        BinaryPrimitives.WriteUInt32LittleEndian(new Span<byte>(e, 4), head);
        BinaryPrimitives.WriteUInt32LittleEndian(new Span<byte>(e + 4, 4), written);
        // The entry must be visible before the index that publishes it.
        Interlocked.MemoryBarrier();
        _usedIdx++;
        Volatile.Write(ref *(ushort*)(_used + 2), _usedIdx);
        Interlocked.MemoryBarrier();
    }

    private ushort _signalledUsed;

    /// <summary>With EVENT_IDX: tells the driver everything up to here was seen, so its next addition kicks.
    /// Returns true when more became available meanwhile (process again before sleeping).</summary>
    public bool PublishAvailEvent()
    {
        if (!EventIndex)
            return false;
        Volatile.Write(ref *(ushort*)(_used + 4 + 8 * Size), _lastAvail);
        Interlocked.MemoryBarrier();
        return Volatile.Read(ref *(ushort*)(_avail + 2)) != _lastAvail;
    }

    /// <summary>Whether the driver wants an interrupt for what was used since the last one: its
    /// used_event with EVENT_IDX, else VRING_AVAIL_F_NO_INTERRUPT.</summary>
    public bool WantsInterrupt
    {
        get
        {
            Interlocked.MemoryBarrier();
            if (!EventIndex)
                return (Volatile.Read(ref *(ushort*)_avail) & AvailFlagNoInterrupt) == 0;
            ushort usedEvent = Volatile.Read(ref *(ushort*)(_avail + 4 + 2 * Size));
            ushort old = _signalledUsed;
            _signalledUsed = _usedIdx;
            // vring_need_event: the driver's event index lies in (old, new].
            return (ushort)(_usedIdx - usedEvent - 1) < (ushort)(_usedIdx - old);
        }
    }

    /// <summary>Gathers a chain's readable bytes into <paramref name="destination"/> (at most its length).</summary>
    public int GatherReadable(DescriptorChain chain, Span<byte> destination)
    {
        int at = 0;
        foreach (var s in chain.Readable)
        {
            int n = (int)Math.Min(s.Length, (uint)(destination.Length - at));
            if (n == 0)
                break;
            if (!Memory.Read(s.Gpa, destination.Slice(at, n)))
                return at; // Covers was checked at Pop; only a memory table swap could get here
            at += n;
        }
        return at;
    }

    /// <summary>Scatters <paramref name="source"/> over a chain's writable segments; false when they are too small.</summary>
    public bool ScatterWritable(DescriptorChain chain, ReadOnlySpan<byte> source)
    {
        if ((ulong)source.Length > chain.WritableBytes)
            return false;
        foreach (var s in chain.Writable)
        {
            if (source.IsEmpty)
                break;
            int n = (int)Math.Min(s.Length, (uint)source.Length);
            if (!Memory.Write(s.Gpa, source[..n]))
                return false;
            source = source[n..];
        }
        return true;
    }
}
