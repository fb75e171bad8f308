using GuestIcd.Transport.Native;
using System.Collections.Concurrent;
using GuestIcd.Transport;
using Microsoft.Extensions.Logging;

namespace GuestIcd.VirtioGpu;

/// <summary>
/// <c>serve --listen vhost-user-gpu:SOCKET</c>: the unix socket a QEMU's vhost-user virtio-gpu device
/// (<c>-chardev socket,path=SOCKET -device vhost-user-device-pci,virtio-id=16,num_vqs=2,config_size=16</c>
/// or <c>vhost-user-gpu-pci</c>) connects to. Each connection is one VM's device, served on a thread of its
/// own; one that breaks the protocol ends alone. Guest sessions (contexts of our capset) come out of
/// <see cref="Accept"/> once a context host hands them over (<see cref="Offer"/>).
/// </summary>
public sealed unsafe class VhostUserGpuListener : ITransportListener
{
    private readonly int _listenFd;
    private readonly int _wakeFd;
    private readonly ILogger _log;
    private readonly VirtioGpuOptions _options;
    /// <summary>Makes the context host of each new connection (null: contexts are plain, their submissions
    /// accepted and dropped). Set before the first frontend connects.</summary>
    public Func<VhostUserConnection, IGpuContextHost?>? Hosts { get; set; }
    private readonly Thread _acceptThread;
    private readonly ConcurrentDictionary<VhostUserConnection, Thread> _connections = new();
    private readonly BlockingCollection<ITransport> _sessions = new();
    private volatile bool _disposed;
    private int _count;

    /// <param name="hosts">Makes the context host of each new connection (null: contexts are plain, their
    /// submissions accepted and dropped).</param>
    public VhostUserGpuListener(string socketPath, VirtioGpuOptions options, ILogger log, Func<VhostUserConnection, IGpuContextHost?>? hosts = null)
    {
        SocketPath = socketPath;
        _options = options;
        _log = log;
        Hosts = hosts;
        if (!Libc.TryMakeAddress(socketPath, out var address, out uint length))
            throw new ArgumentException($"vhost-user-gpu: socket path '{socketPath}' is empty or longer than {Libc.SunPathLength - 1} bytes");
        string? dir = Path.GetDirectoryName(Path.GetFullPath(socketPath));
        if (!string.IsNullOrEmpty(dir))
            Directory.CreateDirectory(dir);
        if (File.Exists(socketPath))
            File.Delete(socketPath); // a stale socket of an earlier run
        _listenFd = Libc.socket(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC, 0);
        if (_listenFd < 0)
            throw new IOException($"{Description}: socket() failed ({Libc.Describe(Libc.Errno)})");
        if (Libc.bind(_listenFd, &address, length) != 0 || Libc.listen(_listenFd, 8) != 0)
        {
            int e = Libc.Errno;
            Libc.close(_listenFd);
            throw new IOException($"{Description}: bind()/listen() failed ({Libc.Describe(e)})");
        }
        _wakeFd = Libc.eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK);
        _acceptThread = new Thread(AcceptLoop) { IsBackground = true, Name = "vhost-user-gpu accept" };
        _acceptThread.Start();
    }

    public string SocketPath { get; }

    public string Description => $"vhost-user-gpu:{SocketPath}";

    /// <summary>Connections being served now.</summary>
    public int ConnectionCount => _connections.Count;

    /// <summary>Called by a context host with a guest session ready for hostsim's server.</summary>
    public void Offer(ITransport session)
    {
        if (_disposed)
        {
            session.Dispose();
            return;
        }
        _sessions.Add(session);
    }

    ITransport? ITransportListener.Accept(CancellationToken cancellationToken) => Accept(cancellationToken);

    /// <summary>The next guest session; null when cancelled or disposed.</summary>
    public ITransport? Accept(CancellationToken cancellationToken)
    {
        try
        {
            return _sessions.Take(cancellationToken);
        }
        catch (Exception e) when (e is OperationCanceledException or InvalidOperationException or ObjectDisposedException)
        {
            return null;
        }
    }

    private void AcceptLoop()
    {
        var fds = stackalloc Libc.PollFd[2];
        while (!_disposed)
        {
            fds[0] = new Libc.PollFd { fd = _listenFd, events = Libc.POLLIN };
            fds[1] = new Libc.PollFd { fd = _wakeFd, events = Libc.POLLIN };
            int r = Libc.poll(fds, 2, -1);
            if (r < 0 && Libc.Errno == Libc.EINTR)
                continue;
            if (_disposed || r < 0)
                break;
            if (fds[0].revents == 0)
                continue;
            int fd = Libc.accept4(_listenFd, null, null, Libc.SOCK_CLOEXEC);
            if (fd < 0)
                continue;
            int n = Interlocked.Increment(ref _count);
            VhostUserConnection c;
            try
            {
                c = new VhostUserConnection(fd, $"{SocketPath}#{n}", _options, _log, null);
            }
            catch (IOException e)
            {
                _log.LogError("vhost-user-gpu: cannot serve connection {N}: {Error}", n, e.Message);
                Libc.close(fd);
                continue;
            }
            var t = new Thread(() => Serve(c)) { IsBackground = true, Name = $"vhost-user-gpu {n}" };
            _connections[c] = t;
            t.Start();
        }
    }

    private void Serve(VhostUserConnection c)
    {
        _log.LogInformation("vhost-user-gpu {Peer}: frontend connected", c.Description);
        string why;
        try
        {
            if (Hosts?.Invoke(c) is { } host)
                c.Device.SetHost(host);
            why = c.Run();
        }
        catch (Exception e)
        {
            // Whatever a frontend sends, the other VMs' devices and hostsim go on.
            why = $"the device failed: {e}";
        }
        _log.LogInformation("vhost-user-gpu {Peer}: connection ended: {Reason}; served: {Served}; refused: {Refused}",
            c.Description, why, c.Device.ServedSummary, c.Device.Refusals);
        _connections.TryRemove(c, out _);
        c.Dispose();
    }

    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        Native.Signal(_wakeFd);
        _acceptThread.Join(2000);
        foreach (var (c, t) in _connections)
        {
            c.Stop();
            t.Join(2000);
        }
        _sessions.CompleteAdding();
        while (_sessions.TryTake(out var s))
            s.Dispose();
        Libc.close(_listenFd);
        Libc.close(_wakeFd);
        try
        {
            File.Delete(SocketPath);
        }
        catch (IOException)
        {
        }
    }
}
