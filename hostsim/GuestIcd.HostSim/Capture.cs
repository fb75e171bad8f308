using System.Buffers.Binary;
using System.Runtime.InteropServices;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;
using GuestIcd.Transport;
using Microsoft.Extensions.Logging;

namespace GuestIcd.HostSim;

/// <summary>
/// A capture file (DESIGN.md §6): a 24-byte header, then the session's inbound byte stream exactly as
/// hostsim read it (the hello and every message, header + padded payload). Replies are not stored: a
/// replay re-derives them. The header keeps the shared heap's size, so a replay offers the same
/// heap and AllocateSharedMemory ranges stay valid; the heap's contents (what the guest wrote into
/// mapped memory) are not captured, so data-dependent results may differ.
/// </summary>
internal static class CaptureFormat
{
    public static ReadOnlySpan<byte> Magic => "GICDCAP\0"u8;
    public const uint Version = 1;
    public const int HeaderSize = 24;

    public static void WriteHeader(Span<byte> dst, long heapBytes)
    {
        Magic.CopyTo(dst);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[8..], Version);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[12..], 0);
        BinaryPrimitives.WriteInt64LittleEndian(dst[16..], heapBytes);
    }

    /// <summary>The stream and heap size of a capture; a file without the header is taken as a bare
    /// stream (fuzzer inputs, regression inputs) from a guest with the ICD's default 1 GiB shared heap.</summary>
    public static (ReadOnlyMemory<byte> Stream, long HeapBytes) Parse(byte[] file)
    {
        if (file.Length < HeaderSize || !file.AsSpan(0, 8).SequenceEqual(Magic)) return (file, 1L << 30);
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(8));
        if (version != Version) throw new InvalidDataException($"capture version {version}; this hostsim reads version {Version}");
        long heap = BinaryPrimitives.ReadInt64LittleEndian(file.AsSpan(16));
        return (file.AsMemory(HeaderSize), heap);
    }
}

/// <summary>Appends a session's inbound bytes to DIR/session-N.gicd, flushed per message so the file
/// holds everything up to the message that was being executed when hostsim died.</summary>
internal sealed class CaptureWriter : IDisposable
{
    readonly FileStream _file;

    CaptureWriter(FileStream file) => _file = file;

    public static CaptureWriter? Open(string? dir, int session, ITransport transport, ILogger log)
    {
        if (dir is null) return null;
        try
        {
            Directory.CreateDirectory(dir);
            var path = Path.Combine(dir, $"session-{session}.gicd");
            var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read, 1 << 16);
            Span<byte> header = stackalloc byte[CaptureFormat.HeaderSize];
            CaptureFormat.WriteHeader(header, transport is ISharedHeap h ? h.HeapBytes : 0);
            file.Write(header);
            // The hello was answered before this session existed (in the listener, SupervisorHandshake), so
            // the capture starts with one of its own: a replay negotiates like the guest did.
            using (var w = new WireWriter())
            {
                Handshake.Write(new Hello(Handshake.ProtocolMajor, Handshake.ProtocolMinor, Tables.RegistryVersion, "capture", [], []), w);
                file.Write(w.Written);
            }
            log.LogInformation("session {Session}: capturing to {Path}", session, path);
            return new CaptureWriter(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Capture is a diagnostic: failing to open it must not refuse the guest.
            log.LogWarning("session {Session}: cannot capture to {Dir}: {Error}", session, dir, e.Message);
            return null;
        }
    }

    public void Header(ReadOnlySpan<byte> bytes) => _file.Write(bytes);

    public void Payload(ReadOnlySpan<byte> bytes)
    {
        _file.Write(bytes);
        _file.Flush();
    }

    public void Dispose() => _file.Dispose();
}

/// <summary>A guest connection fed from memory: reads come from a captured (or fuzzed) stream, writes
/// are counted and dropped. The end of the stream is the guest leaving.</summary>
internal sealed unsafe class ReplayTransport(ReadOnlyMemory<byte> stream, byte* heap, long heapBytes) : ITransport, ISharedHeap
{
    int _at, _payloadDue;
    public long BytesWritten;

    /// <summary>Called with each message header as the session reads it, before the message runs: the last
    /// one seen when the process dies names the command that killed it.</summary>
    public Action<MessageHeader>? OnMessage;

    public byte* HeapBase => heap;
    public long HeapBytes => heap == null ? 0 : heapBytes;
    public string Description => "replay";

    /// <summary>The recorded guest is gone once its stream is used up: a wait in its last command ends as
    /// the real session's would when that guest left.</summary>
    public bool PeerClosed => _at >= stream.Length;

    public bool ReadExactly(Span<byte> buffer, int timeoutMs)
    {
        if (stream.Length - _at < buffer.Length)
        {
            _at = stream.Length;
            throw new TransportClosedException("end of the recorded stream");
        }
        stream.Span.Slice(_at, buffer.Length).CopyTo(buffer);
        _at += buffer.Length;
        // Reads alternate header, payload (none when empty), header...
        if (_payloadDue > 0) _payloadDue = 0;
        else if (buffer.Length == MessageHeader.Size && OnMessage is { } on)
        {
            var h = new MessageHeader(BinaryPrimitives.ReadUInt32LittleEndian(buffer), (MessageFlags)BinaryPrimitives.ReadUInt32LittleEndian(buffer[4..]),
                BinaryPrimitives.ReadUInt32LittleEndian(buffer[8..]));
            _payloadDue = h.ByteLength <= MessageHeader.MaxPayload ? h.WireBytesAfterHeader : 0;
            on(h);
        }
        return true;
    }

    public void Write(ReadOnlySpan<byte> data) => BytesWritten += data.Length;
    public void Flush() { }
    public void Dispose() { }
}

/// <summary>A page-aligned, zeroed stand-in for a guest's shared heap (the driver imports host pointers
/// only at page alignment). Anonymous mmap: pages cost nothing until a replayed command touches them.</summary>
internal sealed unsafe partial class ReplayHeap : IDisposable
{
    public readonly byte* Base;
    public readonly long Bytes;

    public ReplayHeap(long bytes)
    {
        if (bytes <= 0) return;
        const int ProtRead = 1, ProtWrite = 2, MapPrivate = 2, MapAnonymous = 0x20;
        var p = mmap(null, (nuint)bytes, ProtRead | ProtWrite, MapPrivate | MapAnonymous, -1, 0);
        if (p == (void*)-1) throw new IOException($"cannot map a {bytes}-byte heap for the replay");
        Base = (byte*)p;
        Bytes = bytes;
    }

    public void Dispose()
    {
        if (Base != null) munmap(Base, (nuint)Bytes);
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial void* mmap(void* addr, nuint length, int prot, int flags, int fd, nint offset);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int munmap(void* addr, nuint length);
}

/// <summary>`guesticd-hostsim replay FILE`: runs a recorded stream through a real Session on the host
/// driver and prints what happened.</summary>
internal static unsafe class Replay
{
    public static int Run(string path, ServerOptions options, ILogger log)
    {
        var (stream, heapBytes) = CaptureFormat.Parse(File.ReadAllBytes(path));
        using var heap = new ReplayHeap(heapBytes);
        var transport = new ReplayTransport(stream, heap.Base, heap.Bytes);
        var session = new Session(1, transport, options, log);
        using (session) if (SupervisorHandshake.Run(1, transport, options, log)) session.Run();
        Console.WriteLine($"replay {path}: {stream.Length} bytes, {session.Commands} commands, {session.Replies} replies ({transport.BytesWritten} bytes), {session.Errors} errors; ended: {session.End}");
        return 0;
    }
}
