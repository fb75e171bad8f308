using System.Net.Sockets;
using GuestIcd.Transport.Native;

namespace GuestIcd.Transport;

/// <summary>
/// The guest's vsock transport (virtio-vsock, hv_sock on Hyper-V): the same stream, TLS and shared-secret
/// code as <see cref="TcpTransport"/> once connected; only the connect itself goes through libc, since .NET's
/// Socket cannot create or address an AF_VSOCK socket.
/// </summary>
public static unsafe class VsockTransport
{
    /// <summary>The hypervisor host's CID.</summary>
    public const uint HostCid = Vsock.VMADDR_CID_HOST;

    /// <summary>
    /// Connects to a <see cref="VsockTransportListener"/> at <paramref name="cid"/>:<paramref name="port"/>
    /// and authenticates, all within <paramref name="timeoutMs"/> (-1: no limit).
    /// </summary>
    /// <exception cref="TransportClosedException">No vsock here, nothing listening, timed out, or refused;
    /// the message says which.</exception>
    /// <exception cref="ArgumentException">No usable secret.</exception>
    public static ITransport Connect(uint cid, uint port, TransportSecurity security, int timeoutMs) =>
        Connect(cid, port, security, timeoutMs, $"vsock:{cid}:{port}", null);

    /// <summary><see cref="Connect(uint, uint, TransportSecurity, int)"/> under another name (hv_sock), whose
    /// failures <paramref name="explain"/> may word for that transport: it gets the errno (0: the socket
    /// could not be created) and returns the reason, or null for the vsock wording.</summary>
    internal static ITransport Connect(uint cid, uint port, TransportSecurity security, int timeoutMs, string where, Func<int, string?>? explain)
    {
        ArgumentNullException.ThrowIfNull(security);
        if (cid == Vsock.VMADDR_CID_ANY || port == Vsock.VMADDR_PORT_ANY)
            throw new ArgumentOutOfRangeException(cid == Vsock.VMADDR_CID_ANY ? nameof(cid) : nameof(port), "a vsock peer needs a concrete CID and port");
        security.Validate(where);
        long deadline = Libc.Deadline(timeoutMs);

        int fd;
        try
        {
            fd = Vsock.CreateSocket(nonBlocking: true, $"cannot connect to {where}");
        }
        catch (IOException e)
        {
            throw new TransportClosedException(explain?.Invoke(0) is { } why ? $"{e.Message}; {why}" : e.Message);
        }
        try
        {
            ConnectFd(fd, cid, port, where, deadline, timeoutMs, explain);
        }
        catch
        {
            Libc.close(fd);
            throw;
        }
        var handle = new SafeSocketHandle(fd, ownsHandle: true);
        Socket socket;
        try
        {
            socket = new Socket(handle);
            // Tell .NET what the descriptor already is: non-blocking, as the TCP guest's (StreamTransport polls).
            socket.Blocking = false;
        }
        catch (SocketException e)
        {
            handle.Dispose();
            throw new TransportClosedException($"cannot connect to {where}: {e.Message}");
        }
        return StreamTransport.Establish(socket, security, cid.ToString(System.Globalization.CultureInfo.InvariantCulture),
            deadline, timeoutMs, where, $"hostsim at {where}");
    }

    private static void ConnectFd(int fd, uint cid, uint port, string where, long deadline, int timeoutMs, Func<int, string?>? explain)
    {
        Vsock.SockAddrVm address = Vsock.Address(cid, port);
        if (Vsock.connect(fd, &address, (uint)sizeof(Vsock.SockAddrVm)) == 0)
            return;
        int errno = Libc.Errno;
        if (errno != Libc.EINPROGRESS && errno != Libc.EAGAIN && errno != Libc.EINTR)
            throw Fail(where, errno, explain);
        int r = Libc.WaitWritable(fd, deadline);
        if (r < 0)
            throw Fail(where, Libc.Errno, explain);
        if (r == 0)
            throw new TransportClosedException($"cannot connect to {where}: timed out after {timeoutMs} ms" + (explain?.Invoke(Vsock.ETIMEDOUT) is { } why ? $" ({why})" : ""));
        int error = 0;
        uint length = sizeof(int);
        if (Libc.getsockopt(fd, Libc.SOL_SOCKET, Libc.SO_ERROR, &error, &length) != 0)
            throw Fail(where, Libc.Errno, explain);
        if (error != 0)
            throw Fail(where, error, explain);
    }

    private static TransportClosedException Fail(string where, int errno, Func<int, string?>? explain)
    {
        string why = explain?.Invoke(errno) ?? errno switch
        {
            Libc.ECONNREFUSED or Libc.ECONNRESET => "nothing is listening there",
            Vsock.ENODEV or Vsock.EAFNOSUPPORT => "this machine has no vsock device",
            Vsock.ENETUNREACH or Vsock.EHOSTUNREACH or Vsock.EADDRNOTAVAIL => "no route to that CID",
            Vsock.ETIMEDOUT => "timed out",
            _ => "connect() failed",
        };
        return new TransportClosedException($"cannot connect to {where}: {why} ({Libc.Describe(errno)})");
    }
}
