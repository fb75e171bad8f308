using System.Buffers.Binary;
using System.Diagnostics;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Wire;
using GuestIcd.Transport;
using GuestIcd.Transport.Native;
using Microsoft.Extensions.Logging;
using Spectre.Console;

namespace GuestIcd.HostSim;

/// <summary>A guest connection fed from memory: reads come from a captured (or fuzzed) stream, writes
/// are counted and dropped. The end of the stream is the guest leaving. A capture's memory records are
/// written into the heap at the stream positions they were taken at, before the message there is read.</summary>
internal sealed unsafe class ReplayTransport(ReadOnlyMemory<byte> stream, byte* heap, long heapBytes, MemoryPatch[]? patches = null) : ITransport, ISharedHeap
{
    int _at, _payloadDue, _patch;
    uint _payloadOf;
    public long BytesWritten;
    readonly MemoryPatch[] _patches = heap == null ? [] : patches ?? [];

    /// <summary>Called with each message header as the session reads it, before the message runs: the last
    /// one seen when the process dies names the command that killed it.</summary>
    public Action<MessageHeader>? OnMessage;

    /// <summary>The heap ranges the recorded guest allocated (AllocateSharedMemory), in order, each once.</summary>
    public readonly List<(long Offset, long Bytes)> SharedRanges = new();

    public byte* HeapBase => heap;
    public long HeapBytes => heap == null ? 0 : heapBytes;
    public string Description => "replay";
    /// <summary>Capture bytes used so far, stream and memory snapshots (progress; read from another thread).</summary>
    public long Position => Volatile.Read(ref _at) + Volatile.Read(ref _patchedBytes);
    public long Length => stream.Length + _patchBytes;
    long _patchedBytes;
    readonly long _patchBytes = heap == null || patches is null ? 0 : patches.Sum(p => (long)p.Bytes.Length);
    public int PatchesApplied => _patch;

    /// <summary>The recorded guest is gone once its stream is used up: a wait in its last command ends as
    /// the real session's would when that guest left.</summary>
    public bool PeerClosed => _at >= stream.Length;

    /// <summary>Replies the recorded guest had received before it sent the next message: each message that wanted
    /// a reply, less each reply written.</summary>
    int _owed;
    long _holdingSince;

    /// <summary>How long a message is held back for the replies before it (a guest's other thread may have sent
    /// it while one waited, and its wait may need it).</summary>
    const int HoldLimitMs = 2000;

    public bool ReadExactly(Span<byte> buffer, int timeoutMs)
    {
        // A guest thread sends its next message only after the reply to its last: while the session holds that
        // reply back (a deferred wait, PendingWaits.cs) the recording's next message waits too, as the guest's
        // did, so that a reset or destroy never overtakes the wait it followed.
        if (_owed > 0 && _payloadDue == 0 && timeoutMs >= 0 && _at < stream.Length)
        {
            long now = Environment.TickCount64;
            if (_holdingSince == 0) _holdingSince = now;
            if (now - _holdingSince < HoldLimitMs)
            {
                if (timeoutMs > 0) Thread.Sleep(Math.Min(timeoutMs, 1));
                return false;
            }
        }
        _holdingSince = 0;
        while (_patch < _patches.Length && _patches[_patch].StreamAt <= _at)
        {
            var p = _patches[_patch++];
            p.Bytes.Span.CopyTo(new Span<byte>(heap + p.HeapOffset, p.Bytes.Length));
            _patchedBytes += p.Bytes.Length;
        }
        if (stream.Length - _at < buffer.Length)
        {
            _at = stream.Length;
            throw new TransportClosedException("end of the recorded stream");
        }
        stream.Span.Slice(_at, buffer.Length).CopyTo(buffer);
        _at += buffer.Length;
        // Reads alternate header, payload (none when empty), header...
        if (_payloadDue > 0)
        {
            _payloadDue = 0;
            if (_payloadOf == PrivateCommands.AllocateSharedMemory && buffer.Length >= 16)
            {
                var range = ((long)BinaryPrimitives.ReadUInt64LittleEndian(buffer), (long)BinaryPrimitives.ReadUInt64LittleEndian(buffer[8..]));
                if (!SharedRanges.Contains(range)) SharedRanges.Add(range);
            }
        }
        else if (buffer.Length == MessageHeader.Size)
        {
            var h = new MessageHeader(BinaryPrimitives.ReadUInt32LittleEndian(buffer), (MessageFlags)BinaryPrimitives.ReadUInt32LittleEndian(buffer[4..]),
                BinaryPrimitives.ReadUInt32LittleEndian(buffer[8..]));
            _payloadDue = h.ByteLength <= MessageHeader.MaxPayload ? h.WireBytesAfterHeader : 0;
            _payloadOf = h.Command;
            if ((h.Flags & MessageFlags.ReplyWanted) != 0) _owed++;
            OnMessage?.Invoke(h);
        }
        return true;
    }

    public void Write(ReadOnlySpan<byte> data)
    {
        BytesWritten += data.Length;
        if (_owed > 0) _owed--;
    }
    public void Flush() { }
    public void Dispose() { }
}

/// <summary>A page-aligned, zeroed stand-in for a guest's shared heap (the driver imports host pointers
/// only at page alignment). Anonymous mmap: pages cost nothing until a replayed command touches them.</summary>
internal sealed unsafe class ReplayHeap : IDisposable
{
    public readonly byte* Base;
    public readonly long Bytes;

    public ReplayHeap(long bytes)
    {
        if (bytes <= 0) return;
        var p = Libc.mmap(null, (nuint)bytes, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS | Libc.MAP_NORESERVE, -1, 0);
        if (p == Libc.MAP_FAILED) throw new IOException($"cannot map a {bytes}-byte heap for the replay");
        Base = (byte*)p;
        Bytes = bytes;
    }

    public void Dispose()
    {
        if (Base != null) Libc.munmap(Base, (nuint)Bytes);
    }
}

/// <summary>What `replay` was asked for beyond the file.</summary>
internal sealed record ReplayOptions(bool Partial = false, string? DumpMemory = null, int ProgressEveryMs = 1000, bool NoProgress = false);

/// <summary>`guesticd-hostsim replay FILE`: runs a recorded stream through a real Session on the host
/// driver and prints what happened.</summary>
internal static unsafe class Replay
{
    public static int Run(string path, ServerOptions options, ReplayOptions replay, ILogger log)
    {
        var capture = CaptureFile.Read(File.ReadAllBytes(path), requireHello: true, allowPartial: replay.Partial);
        if (capture.Incomplete is { } why) Console.Error.WriteLine($"replay: {path}: {why}; replaying the whole records it holds (--partial)");
        using var heap = new ReplayHeap(capture.HeapBytes);
        var transport = new ReplayTransport(capture.Stream, heap.Base, heap.Bytes, capture.Patches);
        var session = new Session(1, transport, options, log);
        var sw = Stopwatch.StartNew();
        WithProgress(transport, session, replay, () =>
        {
            using (session) if (SupervisorHandshake.Run(1, transport, options, log)) session.Run();
        });
        Console.WriteLine($"replay {path}: {capture.Stream.Length} bytes, {session.Commands} commands, {session.Replies} replies ({transport.BytesWritten} bytes), {session.Errors} errors; ended: {session.End}");
        Console.WriteLine(capture.Version switch
        {
            0 => "capture: a bare guest stream (no header, no memory snapshots)",
            1 => "capture: version 1 (no memory snapshots: data-dependent results may differ)",
            _ => $"capture: version {capture.Version}, {capture.Records} records, {capture.Patches.Length} memory snapshots ({capture.MemoryBytes} bytes, {transport.PatchesApplied} applied), heap {capture.HeapBytes >> 20} MiB; replayed in {sw.Elapsed.TotalSeconds:F2} s",
        });
        if (replay.DumpMemory is { } dir) Dump(dir, heap, transport);
        return 0;
    }

    /// <summary>The final contents of every shared-heap range the guest allocated, one file each, named by heap
    /// offset: what the guest would have read through its mapping when the session ended.</summary>
    static void Dump(string dir, ReplayHeap heap, ReplayTransport transport)
    {
        Directory.CreateDirectory(dir);
        int n = 0;
        foreach (var (offset, bytes) in transport.SharedRanges)
        {
            if (heap.Base == null || offset < 0 || bytes <= 0 || offset > heap.Bytes - bytes) continue;
            using var f = new FileStream(Path.Combine(dir, $"heap-{offset:x10}-{bytes}.bin"), FileMode.Create, FileAccess.Write);
            for (long at = 0; at < bytes; at += 1 << 30)
                f.Write(new ReadOnlySpan<byte>(heap.Base + offset + at, (int)Math.Min(1 << 30, bytes - at)));
            n++;
        }
        Console.WriteLine($"memory: {n} shared-heap ranges written to {dir}");
    }

    /// <summary>Progress on stderr (stdout keeps the result for scripts): a bar when stderr is a terminal, a line
    /// per <see cref="ReplayOptions.ProgressEveryMs"/> otherwise; nothing for a replay shorter than that.</summary>
    static void WithProgress(ReplayTransport transport, Session session, ReplayOptions replay, Action run)
    {
        if (replay.NoProgress) { run(); return; }
        if (!Console.IsErrorRedirected)
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            console.Progress().AutoClear(false).HideCompleted(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("replay", maxValue: Math.Max(1, transport.Length));
                    using var timer = new Timer(_ =>
                    {
                        task.Value = transport.Position;
                        task.Description = $"replay: {Interlocked.Read(ref session.Commands)} commands";
                    }, null, 100, 100);
                    run();
                    timer.Dispose();
                    task.Value = transport.Length;
                    task.Description = $"replay: {session.Commands} commands";
                });
            return;
        }
        bool printed = false;
        long last = -1;
        var start = Stopwatch.StartNew();
        void Line(bool final)
        {
            long at = transport.Position, all = Math.Max(1, transport.Length);
            if (final && at == last) return;
            last = at;
            Console.Error.WriteLine($"replay: {100.0 * at / all:F0}% ({at >> 10} of {all >> 10} KiB, {Interlocked.Read(ref session.Commands)} commands, {start.Elapsed.TotalSeconds:F1} s)");
            printed = true;
        }
        using (new Timer(_ => Line(false), null, replay.ProgressEveryMs, replay.ProgressEveryMs)) run();
        if (printed) Line(true);
    }
}
