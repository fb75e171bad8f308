using System.Net.Sockets;
using GuestIcd.Transport.Native;

namespace GuestIcd.Transport;

/// <summary>
/// The host's vsock listener on <c>VMADDR_CID_ANY</c> (see <see cref="SocketTransportListener"/> for the
/// accept and authentication rules, which TCP shares). Binding and accepting go through libc; each accepted
/// descriptor is wrapped in a <see cref="Socket"/> and from then on takes the TCP code path.
/// </summary>
public sealed unsafe class VsockTransportListener : SocketTransportListener
{
    private readonly int _listenFd;
    private readonly int _wakeFd;
    private int _closed;

    /// <summary>Binds vsock port <paramref name="port"/> on every CID (0: the kernel picks one, see
    /// <see cref="Port"/>) and starts accepting.</summary>
    /// <exception cref="ArgumentException">No usable secret, or the TLS certificate cannot be loaded.</exception>
    /// <exception cref="IOException">No vsock support here, the port is taken, or binding is not allowed;
    /// the message says which.</exception>
    public VsockTransportListener(uint port, TransportSecurity security)
        : base(security, $"vsock:{port}")
    {
        string what = $"vsock:{port}: cannot listen";
        _listenFd = Vsock.CreateSocket(nonBlocking: true, what);
        try
        {
            Vsock.SockAddrVm address = Vsock.Address(Vsock.VMADDR_CID_ANY, port == 0 ? Vsock.VMADDR_PORT_ANY : port);
            if (Vsock.bind(_listenFd, &address, (uint)sizeof(Vsock.SockAddrVm)) != 0)
                throw BindError(what, Libc.Errno);
            if (Libc.listen(_listenFd, 128) != 0)
                throw new IOException($"{what}: listen() failed ({Libc.Describe(Libc.Errno)})");
            Vsock.SockAddrVm bound;
            uint length = (uint)sizeof(Vsock.SockAddrVm);
            if (Vsock.getsockname(_listenFd, &bound, &length) != 0)
                throw new IOException($"{what}: getsockname() failed ({Libc.Describe(Libc.Errno)})");
            Port = bound.svm_port;
            _wakeFd = Libc.eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK);
            if (_wakeFd < 0)
                throw new IOException($"{what}: eventfd() failed ({Libc.Describe(Libc.Errno)})");
        }
        catch
        {
            Libc.close(_listenFd);
            throw;
        }
        Description = $"vsock:{Port}";
        StartAccepting();
    }

    public override string Description { get; }

    /// <summary>The port actually bound.</summary>
    public uint Port { get; }

    private static IOException BindError(string what, int errno)
    {
        string why = errno switch
        {
            Vsock.EADDRINUSE => "the port is already in use",
            Vsock.EADDRNOTAVAIL or Vsock.ENODEV => "no vsock transport is available on this machine",
            Libc.EACCES or Vsock.EPERM => "binding this port is not permitted (ports below 1024 need CAP_NET_BIND_SERVICE)",
            _ => "bind() failed",
        };
        return new IOException($"{what}: {why} ({Libc.Describe(errno)})");
    }

    protected override Socket? AcceptSocket(CancellationToken stop, out string peer)
    {
        peer = "";
        Libc.PollFd* fds = stackalloc Libc.PollFd[2];
        while (!stop.IsCancellationRequested)
        {
            fds[0] = new Libc.PollFd { fd = _wakeFd, events = Libc.POLLIN };
            fds[1] = new Libc.PollFd { fd = _listenFd, events = Libc.POLLIN };
            int r = Libc.PollOrThrow(fds, 2, -1, Description);
            if (r < 0)
                continue;
            if (fds[0].revents != 0)
                return null;
            Vsock.SockAddrVm address;
            uint length = (uint)sizeof(Vsock.SockAddrVm);
            // Blocking descriptor: the stream code polls before it reads.
            int fd = Vsock.accept4(_listenFd, &address, &length, Libc.SOCK_CLOEXEC);
            if (fd < 0)
            {
                int errno = Libc.Errno;
                if (errno is Libc.EINTR or Libc.EAGAIN or Vsock.ECONNABORTED)
                    continue;
                throw new IOException($"{Description}: accept() failed ({Libc.Describe(errno)})");
            }
            peer = $"vsock:{address.svm_cid}:{address.svm_port}";
            var handle = new SafeSocketHandle(fd, ownsHandle: true);
            try
            {
                return new Socket(handle);
            }
            catch (SocketException)
            {
                handle.Dispose();
                throw;
            }
        }
        return null;
    }

    protected override void CloseListeningSocket()
    {
        // The accept thread owns the descriptors until it has left poll(); wake it, close them later.
        ulong one = 1;
        Libc.write(_wakeFd, &one, sizeof(ulong));
    }

    protected override void Dispose(bool disposing)
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0)
            return;
        Libc.close(_listenFd);
        Libc.close(_wakeFd);
    }
}
