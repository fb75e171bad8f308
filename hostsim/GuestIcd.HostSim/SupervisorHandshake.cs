using GuestIcd.Protocol;
using GuestIcd.Protocol.Wire;
using GuestIcd.Transport;
using Microsoft.Extensions.Logging;

namespace GuestIcd.HostSim;

/// <summary>The protocol hello (version negotiation, instance extensions). Runs in the parent, before the
/// connection goes to a worker, so a guest that never says hello costs no process and the worker starts
/// at the command loop.</summary>
internal static class SupervisorHandshake
{
    /// <summary>Largest hello accepted: a guest's extension list is a few KiB.</summary>
    const int MaxHelloBytes = 64 << 10;

    /// <summary>True when the guest may go on to the command loop; false when it was refused or silent
    /// (logged here). Throws <see cref="ProtocolException"/> or <see cref="TransportClosedException"/>
    /// for a broken hello.</summary>
    public static bool Run(int id, ITransport transport, ServerOptions options, ILogger log) => Run(id, transport, options, log, out _);

    /// <param name="outcome">The agreed version, or why the guest was refused (<see cref="LiveStatus.RefusalReasons"/>).</param>
    public static bool Run(int id, ITransport transport, ServerOptions options, ILogger log, out HelloOutcome outcome)
    {
        outcome = new(0, 0, "bad_hello");
        Span<byte> hdr = stackalloc byte[MessageHeader.Size];
        if (!transport.ReadExactly(hdr, options.HandshakeTimeoutMs))
        {
            log.LogWarning("session {Session}: no hello within {Ms} ms; closing", id, options.HandshakeTimeoutMs);
            outcome = new(0, 0, "no_hello");
            return false;
        }
        var h = MessageHeader.Read(hdr);
        if (h.Command != Handshake.HelloCommand) throw new ProtocolException($"first message is 0x{h.Command:X8}, not a hello");
        if (h.WireBytesAfterHeader > MaxHelloBytes) throw new ProtocolException($"a {h.ByteLength}-byte hello (at most {MaxHelloBytes})");
        var payload = new byte[h.WireBytesAfterHeader];
        if (!transport.ReadExactly(payload, options.HandshakeTimeoutMs)) throw new ProtocolException("hello cut short");
        var hello = Handshake.ReadHello(payload.AsSpan(0, (int)h.ByteLength));
        var (ok, major, minor) = Handshake.Negotiate(hello.Major, hello.Minor, options.ProtocolMajor, options.ProtocolMinor);
        HelloReply reply;
        if (!ok)
        {
            var reason = $"guest speaks protocol {hello.Major}.{hello.Minor}, host speaks {options.ProtocolMajor}.{options.ProtocolMinor}: no common major version";
            log.LogWarning("session {Session} refused: {Reason}", id, reason);
            outcome = new(0, 0, "protocol_version");
            reply = new HelloReply(false, options.ProtocolMajor, options.ProtocolMinor, reason, options.DeviceName, 0, []);
        }
        else
        {
            var wanted = hello.Extensions.ToHashSet();
            var exts = HostVulkan.InstanceExtensions().Where(e => wanted.Contains(e.Name)).Select(e => new ExtensionVersion(e.Name, e.Spec)).ToArray();
            reply = new HelloReply(true, major, minor, "", options.DeviceName, HostVulkan.InstanceVersion(), exts);
            outcome = new(major, minor, null);
            log.LogInformation("session {Session}: guest build {Build}, registry 1.3.{Reg}, protocol {Major}.{Minor} agreed, serving {Device}",
                id, hello.BuildId, hello.RegistryVersion, major, minor, options.DeviceName);
        }
        using var writer = new WireWriter();
        Handshake.Write(reply, writer);
        transport.Write(writer.Written);
        transport.Flush();
        return ok;
    }
}

/// <summary>How a hello went: the version agreed, or the reason it was refused.</summary>
internal readonly record struct HelloOutcome(ushort Major, ushort Minor, string? Refused);
