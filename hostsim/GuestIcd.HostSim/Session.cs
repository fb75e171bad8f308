using System.Buffers;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;
using GuestIcd.Transport;
using GuestIcd.Vulkan;
using Microsoft.Extensions.Logging;

namespace GuestIcd.HostSim;

/// <summary>One guest connection after its handshake (<see cref="SupervisorHandshake"/>): decode → execute →
/// reply until the guest leaves or breaks the rules. Everything the guest created lives in this session's
/// <see cref="ObjectTable"/>. Runs in a worker process (<see cref="WorkerMain"/>) or, with
/// <c>serve --in-process</c>, on a thread of hostsim.</summary>
internal sealed unsafe partial class Session(int id, ITransport transport, ServerOptions options, ILogger log) : IDisposable
{
    /// <summary>The guest's shared heap mapped here, when its transport has one (HOST_VISIBLE memory lives there).</summary>
    readonly byte* _heap = transport is ISharedHeap sh ? sh.HeapBase : null;
    readonly ulong _heapBytes = transport is ISharedHeap sh2 ? (ulong)sh2.HeapBytes : 0;
    public readonly int Id = id;
    readonly ObjectTable _objects = new() { Limit = (options.Quotas ?? Quotas.Default).Objects };
    readonly Arena _arena = new(limit: (nuint)(options.Quotas ?? Quotas.Default).DecodeBytes) { OutputLimit = (options.Quotas ?? Quotas.Default).ReplyBytes };
    readonly WireWriter _writer = new();
    byte[] _payload = ArrayPool<byte>.Shared.Rent(1 << 16);
    ulong _sequence;
    readonly nint[] _fns = new nint[Tables.Commands.Length];
    VkInstance _instance;
    readonly CaptureWriter? _capture = CaptureWriter.Open(options.CaptureDir, id, transport, log);

    /// <summary>Where the command being executed is recorded (one store per command) so that a supervisor
    /// can name it when the worker dies: wire id in the low 32 bits, commands so far in the high 32.</summary>
    public ulong* Progress = WorkerStatus.Sink;

    // Metrics (DESIGN.md §6).
    public long Commands, BytesIn, Replies, Errors;
    public int LiveObjects => _objects.GuestCount;
    /// <summary>Why the session ended, once <see cref="Run"/> returned (replay and the fuzzer report it).</summary>
    public string? End { get; private set; }

    public void Run()
    {
        using var scope = log.BeginScope("session {Session}", Id);
        string end;
        try
        {
            while (ServeOne()) Publish();
            end = "guest disconnected";
        }
        catch (TransportClosedException e) { end = "transport closed: " + e.Message; }
        catch (ProtocolException e)
        {
            Errors++;
            end = "protocol error: " + e.Message;
            log.LogWarning("session {Session} ended by a protocol error: {Reason}", Id, e.Message);
        }
        catch (Exception e)
        {
            Errors++;
            end = "internal error: " + e.Message;
            log.LogError(e, "session {Session} failed", Id);
        }
        End = end;
        PublishEnd(end);
        DropWaits();
        int leaked = _objects.GuestCount;
        ReleaseAll();
        ReportValidation();
        log.LogInformation("session {Session} ended ({End}): {Commands} commands, {Bytes} bytes in, {Replies} replies, {Errors} errors, {Live} guest objects left",
            Id, end, Commands, BytesIn, Replies, Errors, leaked);
    }

    ReadOnlySpan<byte> ReadPayload(MessageHeader h, int timeoutMs)
    {
        if (h.ByteLength > Limits.MessageBytes) throw new ProtocolException($"message of {h.ByteLength} bytes exceeds the session's {Limits.MessageBytes}-byte message quota");
        int padded = h.WireBytesAfterHeader;
        if (_payload.Length < padded)
        {
            ArrayPool<byte>.Shared.Return(_payload);
            _payload = ArrayPool<byte>.Shared.Rent(padded);
        }
        // Copied out of the shared ring before decoding: the guest cannot change bytes under the decoder.
        if (!transport.ReadExactly(_payload.AsSpan(0, padded), timeoutMs)) throw new ProtocolException("message cut short");
        _capture?.Payload(_payload.AsSpan(0, padded));
        BytesIn += MessageHeader.Size + padded;
        return _payload.AsSpan(0, (int)h.ByteLength);
    }

    bool ServeOne()
    {
        Span<byte> hdr = stackalloc byte[MessageHeader.Size];
        try
        {
            // Pending waits and feedback slots are polled while the guest sends nothing (PendingWaits.cs).
            if (!ReadHeaderPolling(hdr)) return false;
        }
        catch (TransportClosedException) when (_waits.Count == 0) { return false; }
        _capture?.Header(hdr);
        var h = MessageHeader.Read(hdr);
        *Progress = ((ulong)(uint)(Commands + 1) << 32) | h.Command;
        var payload = ReadPayload(h, options.MessageTimeoutMs);
        if (h.Command == PrivateCommands.WriteMemory) { Commands++; WriteMemory(payload); _sequence++; return true; }
        if (h.Command == PrivateCommands.ReadMemory) { Commands++; ReadMemory(payload); _sequence++; return true; }
        if (h.Command == PrivateCommands.Features) { Commands++; OnFeatures(payload); _sequence++; return true; }
        if (h.Command == PrivateCommands.Feedback) { Commands++; OnFeedback(payload); _sequence++; return true; }
        if (h.Command == PrivateCommands.RecordedCommands) { RunRecorded(payload); _sequence++; return true; }
        int cmd = RunMessage(h, payload);
        _sequence++;
        if (cmd >= 0 && _waits.Count > 0) PollWaitsAfter(cmd);
        return true;
    }

    /// <summary>Decode → gate → execute → reply for one registry command (or AllocateSharedMemory), whether it
    /// arrived as its own message or nested in a command buffer's recording (CommandBuffers.cs). Returns the
    /// command's index.</summary>
    /// <param name="nestedIn">The host handle of the command buffer whose recording this message came in; 0 for a message of its own.</param>
    int RunMessage(MessageHeader h, ReadOnlySpan<byte> payload, ulong nestedIn = 0)
    {
        ulong heapOffset = 0, heapSize = 0;
        bool shared = h.Command == PrivateCommands.AllocateSharedMemory;
        if (shared)
        {
            var pr = new WireReader(payload);
            heapOffset = pr.U64();
            heapSize = pr.U64();
            payload = payload[16..];
            h = h with { Command = Tables.Commands[Tables.vkAllocateMemory].Id };
        }
        int cmd = Tables.CommandOfId(h.Command);
        if (cmd < 0 || !Tables.Commands[cmd].OnWire) throw new ProtocolException($"unknown command id 0x{h.Command:X8}");
        Commands++;
        ulong* args = stackalloc ulong[CommandCodec.MaxParams];
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        _arena.Reset();
        _objects.DiscardCreates();
        CommandCodec.DecodeRequest(cmd, payload, args, caps, _objects, _arena);
        if (Tables.Commands[cmd].Level != CommandLevel.Global && args[0] == 0)
            throw new ProtocolException($"{Tables.Commands[cmd].Name} with a NULL dispatchable handle");
        // The live-object count at a point the guest chooses (tests read it); logged on arrival, since the wait
        // itself may be answered later (PendingWaits.cs).
        if (cmd == Tables.vkDeviceWaitIdle && log.IsEnabled(LogLevel.Debug))
            log.LogDebug("session {Session}: vkDeviceWaitIdle with {Live} guest objects live", Id, _objects.GuestCount);
        if (nestedIn != 0 && args[0] != nestedIn) throw new ProtocolException($"{Tables.Commands[cmd].Name} names another command buffer than the recording it came in");
        // The valid-usage gate (Gate/): refuses what would make the driver misbehave, or answers for it.
        ulong result;
        if (RecordingFailed(cmd, args, out result)) { } // a submit of a command buffer whose deferred recording failed here (CommandBuffers.cs)
        else if (_gate.Check(cmd, args, out result))
        {
            // A wait of a guest that takes replies in any order is answered when it completes (PendingWaits.cs).
            if ((h.Flags & MessageFlags.ReplyWanted) != 0 && TryDefer(cmd, args, caps)) return cmd;
            result = shared ? AllocateShared(args, heapOffset, heapSize) : Execute(cmd, args);
            if (options.Strict) ThrowIfValidationBlocked(cmd);
            _gate.Record(cmd, args, result);
        }
        CountResult(cmd, result);
        // Before the reply: a guest told its signal succeeded may read the slot at once.
        FeedbackAfter(cmd, args, result);
        AfterMessage(cmd, args, result, nestedIn, h.Flags);
        if ((h.Flags & MessageFlags.ReplyWanted) != 0)
        {
            _writer.Reset();
            CommandCodec.EncodeReply(cmd, result, args, caps, _sequence, _writer, _objects);
            transport.Write(_writer.Written);
            transport.Flush();
            BytesOut += _writer.Written.Length;
            Replies++;
        }
        return cmd;
    }

    nint Fn(int cmd)
    {
        var fn = _fns[cmd];
        if (fn != 0) return fn;
        fn = HostVulkan.GetInstanceProcAddr(_instance, Tables.Commands[cmd].Name);
        if (fn == 0) throw new ProtocolException($"{Tables.Commands[cmd].Name} is not available on this host");
        return _fns[cmd] = fn;
    }

    public void Dispose()
    {
        transport.Dispose();
        _capture?.Dispose();
        _arena.Dispose();
        _writer.Dispose();
        ArrayPool<byte>.Shared.Return(_payload);
    }
}
