using System.Text;
using GuestIcd.Protocol.Wire;

namespace GuestIcd.Protocol;

/// <summary>What the guest says when it connects (DESIGN.md §4).</summary>
public sealed record Hello(ushort Major, ushort Minor, uint RegistryVersion, string BuildId, uint[] Commands, string[] Extensions);

/// <summary>The host's answer: the version both will speak (or a refusal with its reason) and what the host offers.</summary>
public sealed record HelloReply(bool Accepted, ushort Major, ushort Minor, string Reason, string HostDriver, uint InstanceApiVersion,
    ExtensionVersion[] InstanceExtensions);

public readonly record struct ExtensionVersion(string Name, uint SpecVersion);

public static class Handshake
{
    public const uint Magic = 0x44434947; // "GICD"
    public const uint HelloCommand = 1, HelloReplyCommand = 2;
    /// <summary>1.1: command buffers record guest-side and travel as <see cref="PrivateCommands.RecordedCommands"/>,
    /// and the guest may announce <see cref="PrivateCommands.Features"/> (replies in any order, feedback slots);
    /// a 1.0 peer gets every vkCmd* as its own message, waits for begin/end/reset, and never sees those messages.</summary>
    /// <remarks>1.2: the guest does not wait for the results of <see cref="AsyncResults"/> commands (submits,
    /// binds, resets); a 1.1 peer gets them with replies wanted, as before.</remarks>
    public const ushort ProtocolMajor = 1, ProtocolMinor = 2;

    /// <summary>The first minor version whose guests may send <see cref="PrivateCommands.RecordedCommands"/>.</summary>
    public const ushort RecordedCommandsMinor = 1;

    /// <summary>The first minor version whose guests send <see cref="AsyncResults"/> commands without waiting.</summary>
    public const ushort AsyncResultsMinor = 2;

    /// <summary>Same major: both speak the lower minor. Different major: no common version.</summary>
    public static (bool Ok, ushort Major, ushort Minor) Negotiate(ushort guestMajor, ushort guestMinor, ushort hostMajor, ushort hostMinor)
        => guestMajor != hostMajor ? (false, (ushort)0, (ushort)0) : (true, guestMajor, Math.Min(guestMinor, hostMinor));

    public static void Write(Hello h, WireWriter w)
    {
        int at = w.BeginMessage(HelloCommand, MessageFlags.ReplyWanted);
        w.U32(Magic); w.U32(h.Major); w.U32(h.Minor); w.U32(h.RegistryVersion);
        Str(w, h.BuildId);
        w.U32((uint)h.Commands.Length);
        foreach (var c in h.Commands) w.U32(c);
        w.U32((uint)h.Extensions.Length);
        foreach (var e in h.Extensions) Str(w, e);
        w.EndMessage(at);
    }

    public static Hello ReadHello(ReadOnlySpan<byte> payload)
    {
        var r = new WireReader(payload);
        if (r.U32() != Magic) throw new ProtocolException("not a GuestIcd hello (bad magic)");
        ushort major = checked((ushort)r.U32()), minor = checked((ushort)r.U32());
        uint reg = r.U32();
        var build = Str(ref r);
        var cmds = new uint[r.Count(4)];
        for (int i = 0; i < cmds.Length; i++) cmds[i] = r.U32();
        var exts = new string[r.Count(4)];
        for (int i = 0; i < exts.Length; i++) exts[i] = Str(ref r);
        r.ExpectEnd();
        return new Hello(major, minor, reg, build, cmds, exts);
    }

    public static void Write(HelloReply h, WireWriter w)
    {
        int at = w.BeginReply(HelloReplyCommand, 0);
        w.U32(h.Accepted ? 1u : 0u); w.U32(h.Major); w.U32(h.Minor);
        Str(w, h.Reason); Str(w, h.HostDriver); w.U32(h.InstanceApiVersion);
        w.U32((uint)h.InstanceExtensions.Length);
        foreach (var e in h.InstanceExtensions) { Str(w, e.Name); w.U32(e.SpecVersion); }
        w.EndReply(at);
    }

    public static HelloReply ReadReply(ReadOnlySpan<byte> payload)
    {
        var r = new WireReader(payload);
        bool ok = r.U32() == 1;
        ushort major = checked((ushort)r.U32()), minor = checked((ushort)r.U32());
        var reason = Str(ref r); var driver = Str(ref r); uint api = r.U32();
        var exts = new ExtensionVersion[r.Count(8)];
        for (int i = 0; i < exts.Length; i++) exts[i] = new ExtensionVersion(Str(ref r), r.U32());
        r.ExpectEnd();
        return new HelloReply(ok, major, minor, reason, driver, api, exts);
    }

    static void Str(WireWriter w, string s)
    {
        var n = Encoding.UTF8.GetByteCount(s);
        w.U32((uint)n);
        Encoding.UTF8.GetBytes(s, w.Reserve(n));
    }

    static string Str(ref WireReader r) => Encoding.UTF8.GetString(r.Take(checked((int)r.Count(1))));

    /// <summary>"unix:PATH" etc.; the default socket both sides agree on when nothing is configured.</summary>
    public static string DefaultSocketPath()
    {
        var dir = Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR");
        if (string.IsNullOrEmpty(dir)) dir = "/tmp";
        return Path.Combine(dir, "guesticd", "hostsim.sock");
    }
}
