using System.Buffers.Binary;
using System.IO.Hashing;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;
using GuestIcd.Transport;
using GuestIcd.Transport.Native;
using Microsoft.Extensions.Logging;

namespace GuestIcd.HostSim;

/// <summary>
/// A capture file (README "Capture and replay", DESIGN.md §6), version 2:
/// a 24-byte header (magic "GICDCAP\0", u32 version, u32 flags = 0, i64 shared heap bytes), then records
/// {u32 kind, u32 length, length bytes, u32 CRC-32 of kind, length and bytes}:
///   1 Stream: inbound bytes exactly as hostsim read them (the hello, or one message: header + padded payload);
///   2 Memory: u64 heap offset, then whole pages of the shared heap as the guest had written them when hostsim
///     read the next Stream record (a submit, a flush...): the pages that changed since they were last captured;
///   3 End: u64 stream bytes, u64 memory bytes, u32 records before it; always the last record.
/// Replies are not stored (a replay re-derives them), and nothing of a heap-less transport's memory is either:
/// its contents travel in the stream (WriteMemory). Version 1 was the header followed by the bare stream.
/// </summary>
internal static class CaptureFormat
{
    public static ReadOnlySpan<byte> Magic => "GICDCAP\0"u8;
    public const uint Version = 2;
    public const int HeaderSize = 24, RecordHeaderSize = 8, RecordTrailerSize = 4, PageSize = 4096;
    public const uint KindStream = 1, KindMemory = 2, KindEnd = 3;
    /// <summary>A message is at most the protocol's largest plus its header; a memory record is bounded by the writer.</summary>
    public const int MaxRecordBytes = (int)MessageHeader.MaxPayload + 64;
    public const int MaxPagesPerRecord = 256;

    public static void WriteHeader(Span<byte> dst, long heapBytes)
    {
        Magic.CopyTo(dst);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[8..], Version);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[12..], 0);
        BinaryPrimitives.WriteInt64LittleEndian(dst[16..], heapBytes);
    }

    /// <summary>The stream and heap size of a capture, memory records left out (the fuzzer mutates streams). A file
    /// without the header is taken as a bare stream (fuzzer inputs, regression inputs) from a guest with the ICD's
    /// default 1 GiB shared heap.</summary>
    public static (ReadOnlyMemory<byte> Stream, long HeapBytes) Parse(byte[] file)
    {
        var c = CaptureFile.Read(file, requireHello: false, allowPartial: true);
        return (c.Stream, c.HeapBytes);
    }

    public static string KindName(uint kind) => kind switch { KindStream => "stream", KindMemory => "memory", KindEnd => "end", _ => $"kind {kind}" };
}

/// <summary>Shared-heap pages to write into the replay's heap before the stream byte at <see cref="StreamAt"/> is read.</summary>
internal readonly record struct MemoryPatch(long StreamAt, long HeapOffset, ReadOnlyMemory<byte> Bytes);

/// <summary>A capture read and checked whole before anything runs: a damaged file is refused with where and
/// why, never half replayed.</summary>
internal sealed class CaptureFile
{
    public required ReadOnlyMemory<byte> Stream { get; init; }
    public required long HeapBytes { get; init; }
    public required uint Version { get; init; }
    public required MemoryPatch[] Patches { get; init; }
    public int Records { get; init; }
    public long MemoryBytes { get; init; }
    /// <summary>Why the file has no End record (hostsim stopped mid-session, or it was cut); null when it has one.</summary>
    public string? Incomplete { get; init; }

    /// <param name="requireHello">Refuse a file that is neither a capture nor a stream starting with a hello
    /// (replay); the fuzzer takes any bytes as a stream.</param>
    /// <param name="allowPartial">Accept a capture without its End record, up to its last whole record.</param>
    public static CaptureFile Read(byte[] file, bool requireHello, bool allowPartial)
    {
        if (file.Length < 8 || !file.AsSpan(0, 8).SequenceEqual(CaptureFormat.Magic))
        {
            if (requireHello && (file.Length < MessageHeader.Size || BinaryPrimitives.ReadUInt32LittleEndian(file) != Handshake.HelloCommand))
                throw new InvalidDataException($"not a capture: the file starts with neither the capture magic \"GICDCAP\" nor a guest hello (first bytes {Convert.ToHexString(file.AsSpan(0, Math.Min(8, file.Length)))})");
            return new CaptureFile { Stream = file, HeapBytes = 1L << 30, Version = 0, Patches = [] };
        }
        if (file.Length < CaptureFormat.HeaderSize) throw new InvalidDataException($"capture truncated: {file.Length} bytes, shorter than its {CaptureFormat.HeaderSize}-byte header");
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(8));
        long heap = BinaryPrimitives.ReadInt64LittleEndian(file.AsSpan(16));
        if (version is not (1 or CaptureFormat.Version))
            throw new InvalidDataException($"capture version {version}; this hostsim reads versions 1 and {CaptureFormat.Version}");
        if (heap < 0 || heap > 1L << 40 || heap % CaptureFormat.PageSize != 0) throw new InvalidDataException($"capture header: a shared heap of {heap} bytes is not a whole number of pages up to 1 TiB");
        if (version == 1) return new CaptureFile { Stream = file.AsMemory(CaptureFormat.HeaderSize), HeapBytes = heap, Version = 1, Patches = [] };
        return ReadRecords(file, heap, allowPartial);
    }

    static CaptureFile ReadRecords(byte[] file, long heap, bool allowPartial)
    {
        var stream = new MemoryStream();
        var patches = new List<MemoryPatch>();
        var crc = new Crc32();
        long memoryBytes = 0;
        int records = 0, at = CaptureFormat.HeaderSize;
        string? incomplete = null;
        bool ended = false;
        while (at < file.Length)
        {
            string where = $"record {records + 1} at byte {at}";
            if (ended) throw new InvalidDataException($"capture corrupted: {where} follows the end record");
            if (file.Length - at < CaptureFormat.RecordHeaderSize + CaptureFormat.RecordTrailerSize)
            {
                incomplete = $"{where} is cut short after {file.Length - at} bytes";
                break;
            }
            uint kind = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(at));
            uint length = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(at + 4));
            if (kind is not (CaptureFormat.KindStream or CaptureFormat.KindMemory or CaptureFormat.KindEnd))
                throw new InvalidDataException($"capture corrupted: {where} has unknown kind {kind} (framing lost)");
            if (length > CaptureFormat.MaxRecordBytes) throw new InvalidDataException($"capture corrupted: {where} claims {length} bytes (framing lost)");
            if (file.Length - at - CaptureFormat.RecordHeaderSize - CaptureFormat.RecordTrailerSize < length)
            {
                incomplete = $"{where} ({CaptureFormat.KindName(kind)}, {length} bytes) is cut short after {file.Length - at} bytes";
                break;
            }
            var body = file.AsMemory(at + CaptureFormat.RecordHeaderSize, (int)length);
            crc.Reset();
            crc.Append(file.AsSpan(at, CaptureFormat.RecordHeaderSize + (int)length));
            uint want = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(at + CaptureFormat.RecordHeaderSize + (int)length));
            uint got = crc.GetCurrentHashAsUInt32();
            if (want != got)
                throw new InvalidDataException($"capture corrupted: {where} ({CaptureFormat.KindName(kind)}, {length} bytes) fails its checksum (stored 0x{want:X8}, computed 0x{got:X8})");
            switch (kind)
            {
                case CaptureFormat.KindStream:
                    stream.Write(body.Span);
                    break;
                case CaptureFormat.KindMemory:
                {
                    if (length < 8 || (length - 8) % CaptureFormat.PageSize != 0) throw new InvalidDataException($"capture corrupted: {where}: a memory record of {length} bytes is not an offset and whole pages");
                    long offset = BinaryPrimitives.ReadInt64LittleEndian(body.Span);
                    long bytes = length - 8;
                    if (offset < 0 || offset % CaptureFormat.PageSize != 0 || offset > heap - bytes)
                        throw new InvalidDataException($"capture corrupted: {where}: memory at heap offset {offset}, {bytes} bytes, is not whole pages inside the {heap}-byte heap");
                    patches.Add(new MemoryPatch(stream.Length, offset, body[8..]));
                    memoryBytes += bytes;
                    break;
                }
                default:
                {
                    if (length != 20) throw new InvalidDataException($"capture corrupted: {where}: an end record of {length} bytes (20 expected)");
                    var s = body.Span;
                    long streamBytes = BinaryPrimitives.ReadInt64LittleEndian(s), mem = BinaryPrimitives.ReadInt64LittleEndian(s[8..]);
                    uint count = BinaryPrimitives.ReadUInt32LittleEndian(s[16..]);
                    if (streamBytes != stream.Length || mem != memoryBytes || count != records)
                        throw new InvalidDataException($"capture corrupted: the end record counts {count} records, {streamBytes} stream and {mem} memory bytes; the file holds {records}, {stream.Length} and {memoryBytes}");
                    ended = true;
                    break;
                }
            }
            records++;
            at += CaptureFormat.RecordHeaderSize + (int)length + CaptureFormat.RecordTrailerSize;
        }
        if (!ended)
        {
            incomplete ??= $"it ends after {records} records without its end record";
            if (!allowPartial)
                throw new InvalidDataException($"capture truncated: {incomplete} (hostsim stopped mid-session, or the file was cut); --partial replays the whole records it holds");
        }
        else incomplete = null;
        return new CaptureFile
        {
            Stream = stream.GetBuffer().AsMemory(0, (int)stream.Length), HeapBytes = heap, Version = CaptureFormat.Version,
            Patches = [.. patches], Records = records, MemoryBytes = memoryBytes, Incomplete = incomplete,
        };
    }
}

/// <summary>Appends a session's inbound bytes to DIR/session-N.gicd, one record per message, flushed per message
/// so the file holds everything up to the message that was being executed when hostsim died. On a transport with
/// a shared heap it also keeps a copy of the guest's allocated heap ranges as last captured: before a message that
/// makes the host read guest-written memory (<see cref="ReadsHeap"/>), the pages that differ from that copy are
/// written as Memory records. Nothing here allocates per message; with capture off Session holds null.</summary>
internal sealed unsafe class CaptureWriter : IDisposable
{
    readonly FileStream _file;
    readonly Crc32 _crc = new();
    readonly byte[] _header = new byte[MessageHeader.Size];
    bool _headerPending;
    long _streamBytes, _memoryBytes;
    uint _records;

    readonly byte* _heap, _copy;
    readonly long _heapBytes;
    /// <summary>The heap ranges the guest allocated so far, sorted and disjoint (freed ones stay: the guest's
    /// allocator reuses them, and a diff of a range nobody writes costs a compare).</summary>
    readonly List<(long Offset, long Bytes)> _ranges = new(64);
    readonly ILogger _log;
    readonly int _session;

    /// <summary>Messages after which the host (its driver) reads what the guest wrote into mapped memory: work
    /// submitted, host-side signals that release work already queued, and explicit flushes and unmaps.</summary>
    static readonly uint[] s_readsHeap =
    [
        Tables.Commands[Tables.vkQueueSubmit].Id, Tables.Commands[Tables.vkQueueSubmit2].Id, Tables.Commands[Tables.vkQueueBindSparse].Id,
        Tables.Commands[Tables.vkSetEvent].Id, Tables.Commands[Tables.vkSignalSemaphore].Id,
        Tables.Commands[Tables.vkFlushMappedMemoryRanges].Id, Tables.Commands[Tables.vkUnmapMemory].Id,
    ];

    /// <summary>Off only for the tests that prove the snapshots matter (GUESTICD_CAPTURE_NO_MEMORY=1).</summary>
    static readonly bool s_noMemory = Environment.GetEnvironmentVariable("GUESTICD_CAPTURE_NO_MEMORY") == "1";

    CaptureWriter(FileStream file, ITransport transport, ILogger log, int session)
    {
        _file = file;
        _log = log;
        _session = session;
        if (transport is ISharedHeap h && h.HeapBase != null && h.HeapBytes > 0 && !s_noMemory)
        {
            _heap = h.HeapBase;
            _heapBytes = h.HeapBytes;
            // Anonymous pages: the copy costs memory only where the guest allocated and wrote.
            var p = Libc.mmap(null, (nuint)_heapBytes, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS | Libc.MAP_NORESERVE, -1, 0);
            if (p == Libc.MAP_FAILED) throw new IOException($"cannot map a {_heapBytes}-byte copy of the shared heap");
            _copy = (byte*)p;
        }
    }

    public static CaptureWriter? Open(string? dir, int session, ITransport transport, ILogger log)
    {
        if (dir is null) return null;
        FileStream? file = null;
        try
        {
            Directory.CreateDirectory(dir);
            var path = Path.Combine(dir, $"session-{session}.gicd");
            file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read, 1 << 16);
            Span<byte> header = stackalloc byte[CaptureFormat.HeaderSize];
            CaptureFormat.WriteHeader(header, transport is ISharedHeap h ? h.HeapBytes : 0);
            file.Write(header);
            var w = new CaptureWriter(file, transport, log, session);
            // The hello was answered before this session existed (in the listener, SupervisorHandshake), so
            // the capture starts with one of its own: a replay negotiates like the guest did.
            using (var hello = new WireWriter())
            {
                Handshake.Write(new Hello(Handshake.ProtocolMajor, Handshake.ProtocolMinor, Tables.RegistryVersion, "capture", [], []), hello);
                w.Record(CaptureFormat.KindStream, hello.Written, default);
            }
            file.Flush();
            log.LogInformation("session {Session}: capturing to {Path}{Memory}", session, path, w._copy != null ? " (with shared-heap snapshots)" : "");
            return w;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Capture is a diagnostic: failing to open it must not refuse the guest.
            file?.Dispose();
            log.LogWarning("session {Session}: cannot capture to {Dir}: {Error}", session, dir, e.Message);
            return null;
        }
    }

    /// <summary>A message header as the session read it; its record is written with the payload.</summary>
    public void Header(ReadOnlySpan<byte> bytes)
    {
        if (_headerPending) Record(CaptureFormat.KindStream, _header, default);
        bytes.CopyTo(_header);
        _headerPending = true;
    }

    /// <summary>The payload of the message whose header came last, read and about to run.</summary>
    public void Payload(ReadOnlySpan<byte> bytes)
    {
        if (_copy != null)
        {
            uint command = BinaryPrimitives.ReadUInt32LittleEndian(_header);
            if (command == PrivateCommands.AllocateSharedMemory && bytes.Length >= 16) Allocated(bytes);
            else if (Array.IndexOf(s_readsHeap, command) >= 0) Snapshot();
        }
        Record(CaptureFormat.KindStream, _header, bytes);
        _headerPending = false;
        _file.Flush();
    }

    /// <summary>The host zeroes a range it hands to the driver (Session.AllocateShared): so does the copy, and only
    /// what the guest writes afterwards differs.</summary>
    void Allocated(ReadOnlySpan<byte> payload)
    {
        long offset = (long)BinaryPrimitives.ReadUInt64LittleEndian(payload), bytes = (long)BinaryPrimitives.ReadUInt64LittleEndian(payload[8..]);
        // The session refuses a range outside the heap; the capture only records it.
        if (offset < 0 || bytes <= 0 || offset % CaptureFormat.PageSize != 0 || bytes % CaptureFormat.PageSize != 0 || offset > _heapBytes - bytes) return;
        Libc.madvise(_copy + offset, (nuint)bytes, Libc.MADV_DONTNEED); // private anonymous pages read as zero again
        int i = 0;
        while (i < _ranges.Count && _ranges[i].Offset + _ranges[i].Bytes < offset) i++;
        long start = offset, end = offset + bytes;
        while (i < _ranges.Count && _ranges[i].Offset <= end)
        {
            start = Math.Min(start, _ranges[i].Offset);
            end = Math.Max(end, _ranges[i].Offset + _ranges[i].Bytes);
            _ranges.RemoveAt(i);
        }
        _ranges.Insert(i, (start, end - start));
    }

    /// <summary>The pages of the allocated ranges that differ from the copy, as runs of Memory records.</summary>
    void Snapshot()
    {
        foreach (var (offset, bytes) in _ranges)
        {
            long run = -1;
            for (long at = offset; at < offset + bytes; at += CaptureFormat.PageSize)
            {
                var live = new ReadOnlySpan<byte>(_heap + at, CaptureFormat.PageSize);
                var copy = new Span<byte>(_copy + at, CaptureFormat.PageSize);
                if (live.SequenceEqual(copy))
                {
                    if (run >= 0) { Memory(run, at); run = -1; }
                    continue;
                }
                // The guest may still be writing: the record holds the copy taken now, whole.
                live.CopyTo(copy);
                if (run < 0) run = at;
                else if (at - run == CaptureFormat.MaxPagesPerRecord * CaptureFormat.PageSize) { Memory(run, at); run = at; }
            }
            if (run >= 0) Memory(run, offset + bytes);
        }
    }

    void Memory(long from, long to)
    {
        Span<byte> offset = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(offset, from);
        Record(CaptureFormat.KindMemory, offset, new ReadOnlySpan<byte>(_copy + from, (int)(to - from)));
        _memoryBytes += to - from;
    }

    void Record(uint kind, ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        Span<byte> head = stackalloc byte[CaptureFormat.RecordHeaderSize];
        BinaryPrimitives.WriteUInt32LittleEndian(head, kind);
        BinaryPrimitives.WriteUInt32LittleEndian(head[4..], (uint)(a.Length + b.Length));
        _crc.Reset();
        _crc.Append(head);
        _crc.Append(a);
        _crc.Append(b);
        _file.Write(head);
        _file.Write(a);
        _file.Write(b);
        Span<byte> tail = stackalloc byte[CaptureFormat.RecordTrailerSize];
        BinaryPrimitives.WriteUInt32LittleEndian(tail, _crc.GetCurrentHashAsUInt32());
        _file.Write(tail);
        if (kind == CaptureFormat.KindStream) _streamBytes += a.Length + b.Length;
        _records++;
    }

    public void Dispose()
    {
        try
        {
            // A header whose payload never came (the message was refused) is part of what the guest sent.
            if (_headerPending) Record(CaptureFormat.KindStream, _header, default);
            Span<byte> end = stackalloc byte[20];
            BinaryPrimitives.WriteInt64LittleEndian(end, _streamBytes);
            BinaryPrimitives.WriteInt64LittleEndian(end[8..], _memoryBytes);
            BinaryPrimitives.WriteUInt32LittleEndian(end[16..], _records);
            Record(CaptureFormat.KindEnd, end, default);
            _file.Dispose();
        }
        catch (IOException e) { _log.LogWarning("session {Session}: the capture could not be finished: {Error}", _session, e.Message); }
        if (_copy != null) Libc.munmap(_copy, (nuint)_heapBytes);
    }
}
