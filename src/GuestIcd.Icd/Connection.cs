using System.Buffers;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;
using GuestIcd.Transport;
using GuestIcd.Vulkan;

namespace GuestIcd.Icd;

/// <summary>One guest↔host connection (one per VkInstance): transport, encoder, handle map and the
/// handshake's answers. Calls are serialised: a reply always belongs to the last request that wanted one.</summary>
internal sealed unsafe class Connection : IDisposable
{
    static readonly Connection?[] s_all = new Connection?[256];

    public readonly int Index;
    public readonly GuestHandleMap Handles;
    public HelloReply Host { get; private set; } = null!;
    readonly ITransport _transport;
    readonly WireWriter _writer = new();
    byte[] _reply = ArrayPool<byte>.Shared.Rent(4096);
    volatile bool _lost;
    string _lostReason = "";

    Connection(int index, ITransport transport)
    {
        Index = index;
        _transport = transport;
        Handles = new GuestHandleMap(index);
    }

    public static Connection Get(int index) => s_all[index] ?? throw new InvalidOperationException($"connection {index} is closed");

    public static int ConnectTimeoutMs =>
        int.TryParse(Environment.GetEnvironmentVariable("GUESTICD_CONNECT_TIMEOUT_MS"), out var t) && t > 0 ? t : 5000;

    /// <summary>Reaches hostsim over the configured transport and runs the version check.
    /// Throws <see cref="IncompatibleHostException"/> with one clear sentence when that fails.</summary>
    public static Connection Open()
    {
        var spec = Environment.GetEnvironmentVariable("GUESTICD_TRANSPORT");
        if (string.IsNullOrEmpty(spec) || spec == "auto") spec = "unix:" + Handshake.DefaultSocketPath();
        ITransport transport;
        try
        {
            transport = spec.StartsWith("unix:", StringComparison.Ordinal)
                ? UnixRingTransport.Connect(spec[5..], ConnectTimeoutMs)
                : throw new IncompatibleHostException($"GUESTICD_TRANSPORT={spec} is not a transport this build supports (unix:PATH)");
        }
        catch (TransportClosedException e)
        {
            throw new IncompatibleHostException($"no hostsim reachable at {spec}: {e.Message}");
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
        foreach (var cd in Tables.Commands) if (cd.Carry != Carry.None) cmds.Add(cd.Id);
        var exts = new List<string>();
        foreach (var e in Tables.Extensions) if (e.Carried) exts.Add(e.Name);
        _writer.Reset();
        Handshake.Write(new Hello(major, minor, Tables.RegistryVersion, BuildId, cmds.ToArray(), exts.ToArray()), _writer);
        HelloReply reply;
        try
        {
            _transport.Write(_writer.Written);
            _transport.Flush();
            var payload = ReadReply(ConnectTimeoutMs, Handshake.HelloReplyCommand);
            reply = Handshake.ReadReply(payload);
        }
        catch (Exception e) when (e is TransportClosedException or ProtocolException or TimeoutException)
        {
            throw new IncompatibleHostException($"handshake with hostsim at {_transport.Description} failed: {e.Message}");
        }
        if (!reply.Accepted)
            throw new IncompatibleHostException($"hostsim refused protocol {major}.{minor} (host speaks {reply.Major}.{reply.Minor}): {reply.Reason}");
        Host = reply;
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

    /// <summary>Sends command <paramref name="command"/> and, when it has a result or outputs, waits for the reply.</summary>
    public ulong Call(int command, ulong* args)
    {
        ref readonly var cd = ref Tables.Commands[command];
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        lock (this)
        {
            if (_lost) throw new DeviceLostException(_lostReason);
            try
            {
                _writer.Reset();
                CommandCodec.EncodeRequest(command, args, _writer, Handles, caps);
                _transport.Write(_writer.Written);
                _transport.Flush();
                if (!cd.WantsReply) return 0;
                var payload = ReadReply(-1, cd.Id);
                return CommandCodec.DecodeReply(command, payload, args, caps, Handles);
            }
            catch (Exception e) when (e is TransportClosedException or ProtocolException)
            {
                _lost = true;
                _lostReason = $"connection to hostsim lost during {cd.Name}: {e.Message}";
                Log.Error(_lostReason);
                throw new DeviceLostException(_lostReason);
            }
        }
    }

    ReadOnlySpan<byte> ReadReply(int timeoutMs, uint expectedCommand)
    {
        Span<byte> header = stackalloc byte[ReplyHeader.Size];
        if (!_transport.ReadExactly(header, timeoutMs)) throw new TimeoutException($"no reply within {timeoutMs} ms");
        var h = ReplyHeader.Read(header);
        if (h.Command != expectedCommand) throw new ProtocolException($"reply for command 0x{h.Command:X8} while waiting for 0x{expectedCommand:X8}");
        int padded = MessageHeader.Padded((int)h.ByteLength);
        if (_reply.Length < padded)
        {
            ArrayPool<byte>.Shared.Return(_reply);
            _reply = ArrayPool<byte>.Shared.Rent(padded);
        }
        if (!_transport.ReadExactly(_reply.AsSpan(0, padded), timeoutMs < 0 ? -1 : timeoutMs)) throw new TimeoutException("reply cut short");
        return _reply.AsSpan(0, (int)h.ByteLength);
    }

    public void Dispose()
    {
        lock (s_all) if (s_all[Index] == this || s_all[Index] is null) s_all[Index] = null;
        try { _transport.Dispose(); } catch { }
        Handles.FreeAll();
        _writer.Dispose();
    }
}

internal sealed class IncompatibleHostException(string message) : Exception(message);
internal sealed class DeviceLostException(string message) : Exception(message);
