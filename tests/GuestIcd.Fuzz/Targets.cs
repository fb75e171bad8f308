using GuestIcd.HostSim;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;
using GuestIcd.Transport;
using Microsoft.Extensions.Logging;

namespace GuestIcd.Fuzz;

/// <summary>A session that ended by an exception other than the protocol's: a bug in hostsim even though
/// the session caught it, so the fuzzer reports it as a crash.</summary>
internal sealed class InternalErrorException(string message) : Exception(message);

internal static unsafe class Targets
{
    static readonly string s_device = HostVulkan.DeviceNames().FirstOrDefault() ?? "none";
    static ReplayHeap? s_heap;

    /// <summary>One guest session, as hostsim runs it, on the real host driver. A fresh session (and with it
    /// a fresh host VkInstance) per input; the heap mapping is reused, its pages are not cleared.</summary>
    public static string Session(byte[] input, ILogger log, bool trace = false)
    {
        var (stream, heapBytes) = Inputs.ToStream(input);
        if (s_heap is null || s_heap.Bytes < heapBytes) { s_heap?.Dispose(); s_heap = new ReplayHeap(heapBytes); }
        var transport = new ReplayTransport(stream, s_heap.Base, heapBytes);
        if (trace) transport.OnMessage = h => Console.Error.WriteLine($"fuzz: message {Name(h.Command)} ({h.ByteLength} bytes)");
        var options = new ServerOptions(s_device, Handshake.ProtocolMajor, Handshake.ProtocolMinor);
        var session = new Session(1, transport, options, log);
        string? refused = null;
        using (session)
        {
            bool ok = false;
            // What the listener does with a bad hello (Server.cs): the connection is refused, nothing crashed.
            try { ok = SupervisorHandshake.Run(1, transport, options, log); }
            catch (Exception e) when (e is ProtocolException or TransportClosedException or InvalidDataException) { refused = $"bad hello: {e.Message}"; }
            if (ok) session.Run();
        }
        var end = refused ?? session.End ?? "never started";
        if (end.StartsWith("internal error", StringComparison.Ordinal)) throw new InternalErrorException(end);
        return $"{session.Commands} commands, {session.Replies} replies, {session.Errors} errors; ended: {end}";
    }

    static string Name(uint id) => id switch
    {
        Handshake.HelloCommand => "hello",
        PrivateCommands.AllocateSharedMemory => "AllocateSharedMemory",
        PrivateCommands.WriteMemory => "WriteMemory",
        PrivateCommands.ReadMemory => "ReadMemory",
        _ => Tables.CommandOfId(id) is >= 0 and var c ? Tables.Commands[c].Name : $"0x{id:X8}",
    };

    /// <summary>The decoder alone: every message of the stream through the bounds-checked decoder, with a
    /// handle map that accepts any id. It may refuse with a <see cref="ProtocolException"/>; anything
    /// else escaping it is a decoder bug.</summary>
    public static void Decode(byte[] input)
    {
        var (stream, _) = Inputs.ToStream(input);
        using var arena = new Arena(1 << 16, 16u << 20);
        ulong* args = stackalloc ulong[CommandCodec.MaxParams];
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        var map = new AnyHandles();
        var s = stream.Span;
        bool first = true;
        try
        {
            while (s.Length >= MessageHeader.Size)
            {
                var h = MessageHeader.Read(s);
                int total = MessageHeader.Size + h.WireBytesAfterHeader;
                if (total > s.Length) throw new ProtocolException("message cut short");
                var payload = s.Slice(MessageHeader.Size, (int)h.ByteLength);
                s = s[total..];
                if (first) { first = false; Handshake.ReadHello(payload); continue; }
                if (h.Command == PrivateCommands.AllocateSharedMemory)
                {
                    if (payload.Length < 16) throw new ProtocolException("short");
                    payload = payload[16..];
                    h = h with { Command = Tables.Commands[Tables.vkAllocateMemory].Id };
                }
                else if (h.Command is PrivateCommands.WriteMemory or PrivateCommands.ReadMemory) continue;
                int cmd = Tables.CommandOfId(h.Command);
                if (cmd < 0 || !Tables.Commands[cmd].OnWire) throw new ProtocolException("unknown command");
                arena.Reset();
                // Fresh argument slots per message, as a session's are.
                new Span<ulong>(args, CommandCodec.MaxParams).Clear();
                CommandCodec.DecodeRequest(cmd, payload, args, caps, map, arena);
            }
        }
        catch (ProtocolException) { }
    }

    sealed class AnyHandles : IHandleMap
    {
        public ulong ToWire(int objectType, ulong handle) => handle;
        public ulong FromWire(int objectType, ulong id) => id;
        public ulong Create(int objectType, out ulong handle) => throw new InvalidOperationException("guest-only");
        public void ExpectCreate(int objectType, ulong id, ulong* slot) { }
    }
}
