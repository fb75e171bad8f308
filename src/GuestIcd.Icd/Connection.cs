using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Runtime.InteropServices;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;
using GuestIcd.Transport;
using GuestIcd.Vulkan;

namespace GuestIcd.Icd;

/// <summary>One guest↔host connection (one per VkInstance): transport, encoder, handle map and the
/// handshake's answers. Sending is serialised; waiting is not: each reply carries the sequence number of its
/// request and finds its waiter by it (Replies.cs), so replies may come in any order.</summary>
internal sealed unsafe partial class Connection : IDisposable
{
    static readonly Connection?[] s_all = new Connection?[256];

    public readonly int Index;
    public readonly GuestHandleMap Handles;
    public HelloReply Host { get; private set; } = null!;
    readonly ITransport _transport;
    /// <summary>Shared memory for HOST_VISIBLE allocations; null on transports without it.</summary>
    public readonly byte* HeapBase;
    public readonly HeapAllocator? Heap;
    readonly WireWriter _writer = new();
    /// <summary>Serialises encoding into <see cref="_writer"/> and writing to the transport; never held
    /// while waiting for a reply.</summary>
    readonly object _send = new();
    volatile bool _lost;
    string _lostReason = "";
    /// <summary>The host numbers every message after the hello from 0 and echoes the number in its reply:
    /// this is the number of the next message sent (counting starts once the handshake is done).</summary>
    ulong _sent;
    bool _numbered;
    /// <summary>The host speaks 1.2: <see cref="AsyncResults"/> commands go without waiting for their result.</summary>
    bool _asyncResults;
    /// <summary>GUESTICD_STATS=1 (Stats.cs); null otherwise.</summary>
    public readonly ConnectionStats? Stats = ConnectionStats.Enabled ? new() : null;

    Connection(int index, ITransport transport)
    {
        Index = index;
        _transport = transport;
        Handles = new GuestHandleMap(index);
        if (transport is ISharedHeap { HeapBytes: > 0 } heap)
        {
            HeapBase = heap.HeapBase;
            Heap = new HeapAllocator((ulong)heap.HeapBytes);
        }
    }

    /// <summary>Still connected, as far as the transport can tell without a round trip.</summary>
    public bool Usable => !_lost && !_transport.PeerClosed;

    public static Connection Get(int index) => s_all[index] ?? throw new InvalidOperationException($"connection {index} is closed");

    public static int ConnectTimeoutMs =>
        int.TryParse(Config.Get("GUESTICD_CONNECT_TIMEOUT_MS"), out var t) && t > 0 ? t : 5000;

    /// <summary>GUESTICD_HEAP_MB: the shared memory for HOST_VISIBLE allocations (default 1024 MiB, sparse:
    /// untouched pages cost nothing).</summary>
    static long HeapBytes =>
        long.TryParse(Config.Get("GUESTICD_HEAP_MB"), out var mb) && mb >= 0 ? mb << 20 : UnixRingTransport.DefaultHeapBytes;

    /// <summary>Reaches hostsim over the configured transport and runs the version check.
    /// Throws <see cref="IncompatibleHostException"/> with one clear sentence when that fails.</summary>
    public static Connection Open()
    {
        var spec = Config.Get("GUESTICD_TRANSPORT");
        if (string.IsNullOrEmpty(spec)) spec = "auto";
        ITransport transport;
        try
        {
            // Only the remote transports take a secret: a bad secret setting must not break a unix guest.
            var security = spec.StartsWith("tcp:", StringComparison.Ordinal) || spec.StartsWith("vsock:", StringComparison.Ordinal)
                ? TransportSecurity.FromEnvironment(Config.Get) : null;
            transport = Transports.Connect(spec, ConnectTimeoutMs, Handshake.DefaultSocketPath(), security, heapBytes: HeapBytes, info: Log.Warn,
                debug: Log.Enabled(Log.Level.Debug) ? Log.Debug : null);
        }
        catch (TransportClosedException e)
        {
            // auto names the unix default it ended up trying (a vm attempt, if any, was logged at info).
            throw new IncompatibleHostException($"no hostsim reachable at {(spec == "auto" ? "unix:" + Handshake.DefaultSocketPath() : spec)}: {e.Message}");
        }
        catch (ArgumentException e)
        {
            // A malformed GUESTICD_TRANSPORT or a missing/short GUESTICD_SECRET: configuration, not a crash.
            throw new IncompatibleHostException($"GUESTICD_TRANSPORT={spec}: {e.Message}");
        }
        int index;
        lock (s_all)
        {
            index = Array.IndexOf(s_all, null);
            if (index < 0) { transport.Dispose(); throw new IncompatibleHostException("too many open GuestIcd connections"); }
            s_all[index] = null!;
        }
        var c = new Connection(index, transport);
        try { c.Hello(); }
        catch { c.Dispose(); throw; }
        lock (s_all) s_all[index] = c;
        return c;
    }

    void Hello()
    {
        var (major, minor) = OwnVersion();
        var cmds = new List<uint>();
        foreach (var cd in Tables.Commands) if (cd.OnWire) cmds.Add(cd.Id);
        var exts = new List<string>();
        foreach (var e in Tables.Extensions) if (e.Carried) exts.Add(e.Name);
        _writer.Reset();
        Handshake.Write(new Hello(major, minor, Tables.RegistryVersion, BuildId, cmds.ToArray(), exts.ToArray()), _writer);
        HelloReply reply;
        try
        {
            SendQueued();
            var payload = ReadReply(ConnectTimeoutMs, Handshake.HelloReplyCommand);
            Stats?.RoundTrip(Handshake.HelloCommand);
            reply = Handshake.ReadReply(payload);
        }
        catch (Exception e) when (e is TransportClosedException or ProtocolException or TimeoutException)
        {
            throw new IncompatibleHostException($"handshake with hostsim at {_transport.Description} failed: {e.Message}");
        }
        if (!reply.Accepted)
            throw new IncompatibleHostException($"hostsim refused protocol {major}.{minor} (host speaks {reply.Major}.{reply.Minor}): {reply.Reason}");
        Host = reply;
        _numbered = true;
        _asyncResults = reply.Minor >= Handshake.AsyncResultsMinor;
        NegotiateFeatures();
        Log.Info($"connected to {reply.HostDriver} over {_transport.Description}, protocol {reply.Major}.{reply.Minor}");
    }

    /// <summary>GUESTICD_PROTOCOL_VERSION=MAJOR.MINOR overrides what this ICD claims, to exercise the version check.</summary>
    static (ushort, ushort) OwnVersion()
    {
        var v = Environment.GetEnvironmentVariable("GUESTICD_PROTOCOL_VERSION");
        if (v is not null && v.Split('.') is [var a, var b] && ushort.TryParse(a, out var ma) && ushort.TryParse(b, out var mi)) return (ma, mi);
        return (Handshake.ProtocolMajor, Handshake.ProtocolMinor);
    }

    static string BuildId => typeof(Connection).Assembly.GetName().Version?.ToString() ?? "0";

    /// <summary>Commands that need no answer (vkCmd*, destroys, frees, other void commands) collect in the
    /// write buffer and travel together when something needs the host's answer, or when this much is queued.</summary>
    const int BatchBytes = 256 << 10;

    /// <summary>Runs command <paramref name="command"/>. Without a result or outputs it is queued and returns
    /// at once; otherwise the queue and the command go to the host and this waits for the reply. Only the
    /// encoding and the send are serialised (<see cref="_send"/>); the wait for the reply is not, so a thread
    /// blocked in a wait leaves the connection to the others (Replies.cs matches replies by sequence).</summary>
    public ulong Call(int command, ulong* args)
    {
        ref readonly var cd = ref Tables.Commands[command];
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        // A wait's timeout runs from the application's call and holds even when the host does not answer.
        long waitDeadline = WaitDeadline(command, args);
        if (_lost) throw new DeviceLostException(_lostReason);
        try
        {
            ulong sequence;
            long sentAt;
            byte[]? cacheKey = null;
            lock (_send)
            {
                if (_lost) throw new DeviceLostException(_lostReason);
                if (_shadows.Count > 0 && ShadowSync.PushBefore[command]) PushShadowsLocked();
                if (_asyncResults && AsyncResults.Commands[command])
                {
                    int at = _writer.BeginMessage(cd.Id, MessageFlags.None);
                    CommandCodec.EncodeParams(command, args, _writer, Handles, caps);
                    _writer.EndMessage(at);
                    if (AsyncResults.SendNow[command] || _writer.Position >= BatchBytes) SendQueued();
                    return 0; // VK_SUCCESS: a failure on the host ends the session (AsyncResults)
                }
                int start = _writer.Position;
                CommandCodec.EncodeRequest(command, args, _writer, Handles, caps);
                if (QueryCache.Cacheable[command])
                {
                    // A physical device's answers never change: the same question is answered from the first reply.
                    var request = _writer.Written[start..];
                    if (_queries.TryGet(request, out var cached))
                    {
                        _writer.Truncate(start);
                        Stats?.Cached(command);
                        return CommandCodec.DecodeReply(command, cached, args, caps, Handles);
                    }
                    cacheKey = request.ToArray();
                }
                else if (!cd.WantsReply)
                {
                    if (_writer.Position >= BatchBytes) SendQueued();
                    return 0;
                }
                sentAt = Stopwatch.GetTimestamp();
                sequence = SendForReply(cd.Id);
            }
            if (cacheKey is not null)
            {
                using var cachedReply = AwaitReply(sequence, long.MaxValue);
                lock (_send) _queries.Add(cacheKey, cachedReply.Span.ToArray());
                return CommandCodec.DecodeReply(command, cachedReply.Span, args, caps, Handles);
            }
            if (waitDeadline != long.MaxValue)
            {
                using var waited = AwaitReply(sequence, waitDeadline + GraceTicks);
                if (!waited.Arrived) return unchecked((ulong)(uint)(int)VkResult.VK_TIMEOUT);
                return DecodeWaitReply(command, waited.Span, args, caps);
            }
            using var answer = AwaitReply(sequence, long.MaxValue);
            // Clamped: a call the host takes long to run (vkCreateDevice) says nothing about its latency.
            if (!IsWait(command))
                _roundTrip += (Math.Min(Stopwatch.GetTimestamp() - sentAt, Stopwatch.Frequency / 1000) - _roundTrip) / 8;
            return DecodeWaitReply(command, answer.Span, args, caps);
        }
        catch (Exception e) when (e is TransportClosedException or ProtocolException)
        {
            throw Lost(cd.Name, e);
        }
    }

    static bool IsWait(int command) => command is Tables.vkWaitForFences or Tables.vkWaitSemaphores or Tables.vkQueueWaitIdle
        or Tables.vkDeviceWaitIdle or Tables.vkGetQueryPoolResults;

    /// <summary>Round trip of recent calls that did not wait (Stopwatch ticks; a moving average of 1/8).</summary>
    long _roundTrip;

    /// <summary>How long the host may take to answer a wait beyond its timeout (it measures the timeout from
    /// the request's arrival) before the wait returns VK_TIMEOUT here without the host's answer: a second
    /// plus eight recent round trips. What the guest cannot answer itself (protocol 1.0 has no slots) only
    /// the host knows, so a poll with timeout 0 must get the host's answer whenever the host is merely busy: on a loaded 2-core machine a worker
    /// waits for the CPU for tens of milliseconds, and a 2 ms grace answered VK_TIMEOUT for a semaphore at
    /// its value (sync.c's "wait 10, timeout 0", 1 run in 100 at load 6). A stopped host costs a wait a second.</summary>
    long GraceTicks => Stopwatch.Frequency + 8 * _roundTrip;

    /// <summary>The local deadline (Stopwatch ticks, before the grace) of a wait with a timeout, long.MaxValue
    /// for every other call and for timeouts too long to matter (UINT64_MAX is "forever").</summary>
    static long WaitDeadline(int command, ulong* args)
    {
        ulong timeoutNs = command switch
        {
            Tables.vkWaitForFences => args[4],
            Tables.vkWaitSemaphores => args[2], // vkWaitSemaphoresKHR is the same command
            _ => ulong.MaxValue,
        };
        if (timeoutNs >= 1UL << 60) return long.MaxValue;
        ulong f = (ulong)Stopwatch.Frequency;
        return Stopwatch.GetTimestamp() + (long)(timeoutNs / 1_000_000_000 * f + timeoutNs % 1_000_000_000 * f / 1_000_000_000) + 1;
    }

    ulong DecodeWaitReply(int command, ReadOnlySpan<byte> reply, ulong* args, ulong* caps)
    {
        ulong result = CommandCodec.DecodeReply(command, reply, args, caps, Handles);
        if (_shadows.Count > 0 && ShadowSync.PullAfter[command]) PullShadows();
        return result;
    }

    /// <summary>vkAllocateMemory backed by the range [offset, offset+size) of the shared heap.</summary>
    public ulong CallSharedAllocation(ulong heapOffset, ulong size, ulong* args)
    {
        ref readonly var cd = ref Tables.Commands[Tables.vkAllocateMemory];
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        if (_lost) throw new DeviceLostException(_lostReason);
        try
        {
            ulong sequence;
            lock (_send)
            {
                int at = _writer.BeginMessage(PrivateCommands.AllocateSharedMemory, MessageFlags.ReplyWanted);
                _writer.U64(heapOffset);
                _writer.U64(size);
                CommandCodec.EncodeParams(Tables.vkAllocateMemory, args, _writer, Handles, caps);
                _writer.EndMessage(at);
                sequence = SendForReply(cd.Id);
            }
            using var reply = AwaitReply(sequence, long.MaxValue);
            return CommandCodec.DecodeReply(Tables.vkAllocateMemory, reply.Span, args, caps, Handles);
        }
        catch (Exception e) when (e is TransportClosedException or ProtocolException)
        {
            throw Lost(cd.Name, e);
        }
    }

    // ---- mapped memory without a shared heap (TCP, vsock): guest-side copies, only changed pages travel ----
    // The copies and their dictionary are guarded by _send: pushes happen while encoding, pulls apply
    // their replies under it, so the two never touch a copy at once.

    sealed class Shadow
    {
        public byte* Data, Seen;
        public ulong Size;
    }

    readonly Dictionary<ulong, Shadow> _shadows = new();
    readonly QueryCache _queries = new();

    /// <summary>A HOST_VISIBLE allocation on a connection without shared memory gets a local copy to map.</summary>
    public void AddShadow(ulong memory, ulong size)
    {
        var s = new Shadow { Size = size, Data = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(size, 1), 4096), Seen = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(size, 1), 4096) };
        NativeMemory.Clear(s.Data, (nuint)size);
        NativeMemory.Clear(s.Seen, (nuint)size);
        lock (_send) _shadows[memory] = s;
    }

    public void RemoveShadow(ulong memory)
    {
        lock (_send)
        {
            if (!_shadows.Remove(memory, out var s)) return;
            NativeMemory.AlignedFree(s.Data);
            NativeMemory.AlignedFree(s.Seen);
        }
    }

    /// <summary>The mapping of a shadowed allocation, brought up to date with the host's contents.</summary>
    public byte* MapShadow(ulong memory)
    {
        Shadow? s;
        lock (_send) if (!_shadows.TryGetValue(memory, out s)) return null;
        if (_lost) throw new DeviceLostException(_lostReason);
        try { Pull(memory, s); }
        catch (Exception e) when (e is TransportClosedException or ProtocolException) { throw Lost("vkMapMemory", e); }
        return s.Data;
    }

    /// <summary>Sends what the application wrote into its mappings (before submits, flushes, unmaps).</summary>
    public void PushShadows()
    {
        lock (_send) PushShadowsLocked();
    }

    void PushShadowsLocked()
    {
        foreach (var (memory, s) in _shadows)
            for (ulong from = 0; from < s.Size;)
            {
                int at = _writer.BeginMessage(PrivateCommands.WriteMemory, MessageFlags.None);
                _writer.U64(memory);
                int countAt = _writer.Position;
                _writer.U32(0);
                uint runs = DirtyPages.AppendChanged(s.Data, s.Seen, s.Size, _writer, ref from);
                if (runs == 0) { _writer.Truncate(at); continue; }
                _writer.PatchU32(countAt, runs);
                _writer.EndMessage(at);
                if (_writer.Position >= BatchBytes) SendQueued();
            }
    }

    /// <summary>Fetches what the device wrote (after waits, invalidates).</summary>
    void PullShadows()
    {
        KeyValuePair<ulong, Shadow>[] all;
        lock (_send) all = _shadows.ToArray();
        foreach (var (memory, s) in all) Pull(memory, s);
    }

    void Pull(ulong memory, Shadow s)
    {
        // Whole pulls of one allocation take turns: the host answers each read with what changed since its last
        // answer, so a second thread's read can come back empty while the first one's runs are still unapplied,
        // and that thread would see the old contents.
        lock (s) PullLocked(memory, s);
    }

    void PullLocked(ulong memory, Shadow s)
    {
        for (ulong from = 0; from < s.Size;)
        {
            ulong sequence;
            lock (_send)
            {
                int at = _writer.BeginMessage(PrivateCommands.ReadMemory, MessageFlags.ReplyWanted);
                _writer.U64(memory);
                _writer.U64(from);
                _writer.EndMessage(at);
                sequence = SendForReply(PrivateCommands.ReadMemory);
            }
            using var reply = AwaitReply(sequence, long.MaxValue);
            lock (_send)
            {
                // Freed meanwhile (by another thread): its copy is gone, and so is the reason to read it.
                if (!_shadows.TryGetValue(memory, out var live) || live != s) return;
                var r = new WireReader(reply.Span);
                ulong next = r.U64();
                if (next <= from) throw new ProtocolException($"memory read did not advance ({from} → {next})");
                DirtyPages.Apply(ref r, r.U32(), s.Data, s.Seen, s.Size);
                r.ExpectEnd();
                from = next;
            }
        }
    }

    /// <summary>Sends the queue, whose last message wants a reply of <paramref name="replyCommand"/>, and
    /// returns that message's sequence number; its waiter is registered before the bytes leave, so whichever
    /// thread reads the reply knows whom it is for. Caller holds <see cref="_send"/>.</summary>
    ulong SendForReply(uint replyCommand)
    {
        ulong sequence = _sent + CountMessages(_writer.Written) - 1;
        ExpectReply(sequence, replyCommand);
        Stats?.RoundTrip(replyCommand);
        try { SendQueued(); }
        catch { ForgetReply(sequence); throw; }
        return sequence;
    }

    void SendQueued()
    {
        if (_writer.Position == 0) return;
        Stats?.Sent(_writer.Written);
        _transport.Write(_writer.Written);
        _transport.Flush();
        if (_numbered) _sent += CountMessages(_writer.Written);
        _writer.Reset();
    }

    /// <summary>Messages in a batch: each is its header and payload, padded to 8 (DESIGN.md §3).</summary>
    static ulong CountMessages(ReadOnlySpan<byte> batch)
    {
        ulong n = 0;
        for (int at = 0; at + MessageHeader.Size <= batch.Length; n++)
            at += MessageHeader.Padded(MessageHeader.Size + (int)BinaryPrimitives.ReadUInt32LittleEndian(batch[(at + 8)..]));
        return n;
    }

    DeviceLostException Lost(string during, Exception e)
    {
        lock (_replyGate)
        {
            if (!_lost) _lostReason = $"connection to hostsim lost during {during}: {e.Message}";
            _lost = true;
            Monitor.PulseAll(_replyGate);
        }
        Log.Error(_lostReason);
        return new DeviceLostException(_lostReason);
    }

    /// <summary>The hello's answer: read directly, before any other thread can use the connection.</summary>
    ReadOnlySpan<byte> ReadReply(int timeoutMs, uint expectedCommand)
    {
        long deadline = timeoutMs < 0 ? long.MaxValue : Stopwatch.GetTimestamp() + timeoutMs * Stopwatch.Frequency / 1000;
        Span<byte> header = stackalloc byte[ReplyHeader.Size];
        if (!_transport.ReadExactly(header, RemainingMs(deadline))) throw new TimeoutException($"no reply within {timeoutMs} ms");
        var h = ReplyHeader.Read(header);
        if (h.ByteLength > MessageHeader.MaxPayload) throw new ProtocolException($"a reply of {h.ByteLength} bytes");
        int padded = MessageHeader.Padded((int)h.ByteLength);
        if (_helloReply.Length < padded) _helloReply = new byte[padded];
        if (!_transport.ReadExactly(_helloReply.AsSpan(0, padded), Math.Max(RemainingMs(deadline), 1000))) throw new ProtocolException("reply cut short");
        if (h.Command != expectedCommand) throw new ProtocolException($"reply for command 0x{h.Command:X8} while waiting for 0x{expectedCommand:X8}");
        return _helloReply.AsSpan(0, (int)h.ByteLength);
    }

    byte[] _helloReply = new byte[4096];

    static int RemainingMs(long deadline)
    {
        if (deadline == long.MaxValue) return -1;
        long left = deadline - Stopwatch.GetTimestamp();
        return left <= 0 ? 0 : (int)Math.Min(int.MaxValue, (left * 1000 + Stopwatch.Frequency - 1) / Stopwatch.Frequency);
    }

    /// <summary>False once the figures were printed for a session kept for the next instance (SessionReuse.cs), until
    /// that instance comes: a process that exits meanwhile has already said them.</summary>
    public bool StatsDue { get; set; } = true;

    public void PrintStats()
    {
        Stats?.Print(_transport.Description);
        StatsDue = false;
    }

    public void Dispose()
    {
        // Queued destroys still reach the host; a dead host has nothing left to tell.
        lock (_send) try { if (!_lost) SendQueued(); } catch (TransportClosedException) { }
        lock (s_all) if (s_all[Index] == this || s_all[Index] is null) s_all[Index] = null;
        try { _transport.Dispose(); } catch { }
        if (StatsDue) Stats?.Print(_transport.Description);
        CommandPools.ReleaseAll();
        Handles.FreeAll();
        _writer.Dispose();
    }
}

internal sealed class IncompatibleHostException(string message) : Exception(message);
internal sealed class DeviceLostException(string message) : Exception(message);
