using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using GuestIcd.Transport.Native;

namespace GuestIcd.HostSim;

/// <summary>
/// The control socket <c>guesticd-hostsim status</c> asks: a unix socket, mode 0600 in a directory this
/// process makes 0700, that answers a request line (<c>status</c>) with <see cref="LiveStatus.Report"/> as
/// JSON and closes. The file mode is one wall; the other is the peer's uid (SO_PEERCRED), which must be ours
/// or root's, so a window between bind and chmod shows nothing to anybody else.
/// </summary>
internal sealed class ControlSocket : IDisposable
{
    const int MaxRequestBytes = 256;
    const int ClientTimeoutMs = 2000;

    readonly Socket _socket;
    readonly ILogger _log;
    readonly (ulong Dev, ulong Ino) _identity;
    volatile bool _disposed;
    public string Path { get; }

    const string SystemDir = "/run/guesticd";

    /// <summary>root, and a service user that may write /run/guesticd (systemd's RuntimeDirectory=guesticd):
    /// /run/guesticd/hostsim.ctl, where root's <c>status</c> looks; others: $XDG_RUNTIME_DIR/guesticd/hostsim.ctl,
    /// or /tmp/guesticd-UID/hostsim.ctl without it.</summary>
    public static string DefaultPath()
    {
        // The options' help text asks for this on every OS; off Linux there is no control socket (and no libc).
        if (!OperatingSystem.IsLinux()) return "none off Linux";
        var dir = Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR");
        if (Geteuid() == 0 || (string.IsNullOrEmpty(dir) && Directory.Exists(SystemDir) && OpsNative.Writable(SystemDir))) return SystemDir + "/hostsim.ctl";
        return string.IsNullOrEmpty(dir) ? $"/tmp/guesticd-{Geteuid()}/hostsim.ctl" : System.IO.Path.Combine(dir, "guesticd", "hostsim.ctl");
    }

    ControlSocket(string path, Socket socket, ILogger log)
    {
        Path = path;
        _socket = socket;
        _log = log;
        _identity = Identity(path);
        new Thread(AcceptLoop) { IsBackground = true, Name = "control socket" }.Start();
    }

    /// <summary>Listens at <paramref name="path"/>. A socket left there by a hostsim that is gone is replaced;
    /// one a running hostsim answers on is not (IOException).</summary>
    public static ControlSocket Listen(string path, ILogger log)
    {
        var dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        if (OperatingSystem.IsWindows()) throw new IOException("control socket: not on Windows yet");
        if (!Directory.Exists(dir)) Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        // A directory somebody else made (in /tmp, say) is theirs to swap our socket in: not used.
        if (OpsNative.Owner(dir) is uint owner && owner != 0 && owner != Geteuid())
            throw new IOException($"control socket {path}: its directory belongs to uid {owner}, not to this user");
        if (File.Exists(path) || Directory.Exists(path))
        {
            if (Directory.Exists(path)) throw new IOException($"control socket {path}: is a directory");
            using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                probe.Connect(new UnixDomainSocketEndPoint(path));
                throw new IOException($"control socket {path}: another hostsim answers there");
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionRefused or SocketError.AddressNotAvailable)
            {
                File.Delete(path); // left by a hostsim that is gone
            }
        }
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(path));
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            socket.Listen(16);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new IOException($"control socket {path}: {e.Message}", e);
        }
        return new ControlSocket(path, socket, log);
    }

    void AcceptLoop()
    {
        while (!_disposed)
        {
            Socket client;
            try { client = _socket.Accept(); }
            catch (Exception) when (_disposed) { return; }
            catch (SocketException) { continue; }
            using (client)
            {
                try { Answer(client); }
                catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException)
                {
                    _log.LogDebug("control socket: a request failed ({Error})", e.Message);
                }
            }
        }
    }

    void Answer(Socket client)
    {
        var peer = Libc.PeerCredentials((int)client.Handle);
        var (pid, uid) = (peer.pid, peer.uid);
        if (uid != 0 && uid != Geteuid())
        {
            _log.LogWarning("control socket: refused pid {Pid} of uid {Uid} (only uid {Own} and root may ask)", pid, uid, Geteuid());
            return;
        }
        client.ReceiveTimeout = ClientTimeoutMs;
        client.SendTimeout = ClientTimeoutMs;
        var request = new byte[MaxRequestBytes];
        int n = 0;
        while (n < request.Length && Array.IndexOf(request, (byte)'\n', 0, n) < 0)
        {
            int got = client.Receive(request, n, request.Length - n, SocketFlags.None);
            if (got == 0) break;
            n += got;
        }
        var verb = Encoding.ASCII.GetString(request, 0, n).Trim();
        byte[] answer = verb == "status"
            ? JsonSerializer.SerializeToUtf8Bytes(LiveStatus.Report(), StatusJson.Default.StatusReport)
            : Encoding.UTF8.GetBytes($"{{\"error\": \"unknown request; this hostsim answers: status\"}}");
        client.Send(answer);
        client.Shutdown(SocketShutdown.Send);
    }

    /// <summary>Client side (<c>status</c>): one request, the whole answer.</summary>
    public static byte[] Ask(string path, string verb, int timeoutMs = 5000)
    {
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = timeoutMs, SendTimeout = timeoutMs };
        s.Connect(new UnixDomainSocketEndPoint(path));
        s.Send(Encoding.ASCII.GetBytes(verb + "\n"));
        using var ms = new MemoryStream();
        var buf = new byte[16384];
        int got;
        while ((got = s.Receive(buf)) > 0) ms.Write(buf, 0, got);
        return ms.ToArray();
    }

    static uint Geteuid() => OpsNative.geteuid();

    /// <summary>The socket file's device and inode, so that shutting down never removes a socket another
    /// hostsim has since put at the same path.</summary>
    static (ulong, ulong) Identity(string path)
    {
        return OpsNative.DevIno(path);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _socket.Dispose();
        try
        {
            if (_identity != (0, 0) && OpsNative.DevIno(Path) == _identity) File.Delete(Path);
        }
        catch (IOException) { }
    }
}
