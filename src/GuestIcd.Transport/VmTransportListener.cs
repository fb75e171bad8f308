using System.Buffers.Binary;
using GuestIcd.Transport.Native;

namespace GuestIcd.Transport;

/// <summary>
/// Host end of <see cref="VmTransport"/> (spec <c>vm:SOCKET,shm=FILE[,size=BYTES]</c>): FILE backs the guest's
/// ivshmem BAR (qemu <c>memory-backend-file,share=on,mem-path=FILE</c>), SOCKET is where qemu's virtio-serial
/// chardev connects. One VM per listener; sessions come one after another on that one connection.
/// </summary>
/// <remarks>
/// <para>Accept reads the next preamble (blocking until one arrives, qemu reconnects, or Accept is
/// cancelled), checks that its rings and heap lie inside FILE, maps FILE and returns a host transport that
/// does not own the socket. The next Accept waits until that transport is disposed.</para>
/// <para>A session ends at the guest's goodbye byte, at EOF (qemu went away), or when the next preamble
/// starts (a guest process that died without goodbye); the transport hands the bytes it drained past the
/// end back here. A guest process killed without goodbye while no other process starts keeps its session
/// until the next preamble or until the VM stops.</para>
/// </remarks>
public sealed unsafe class VmTransportListener : ITransportListener
{
    private readonly int _listenFd;
    private readonly AcceptGate _gate;
    private readonly ManualResetEventSlim _sessionDone = new(true);
    private int _connFd = -1;
    private byte[] _buffer = new byte[VmTransport.PreambleSize];
    private int _buffered;
    private int _sessions;

    /// <param name="socketPath">Where qemu's chardev connects; a stale socket there is replaced.</param>
    /// <param name="shmPath">The ivshmem backing file; created when missing.</param>
    /// <param name="shmSize">When &gt; 0, FILE is truncated to this size.</param>
    public VmTransportListener(string socketPath, string shmPath, long shmSize = 0)
    {
        ArgumentNullException.ThrowIfNull(socketPath);
        ArgumentNullException.ThrowIfNull(shmPath);
        SocketPath = socketPath;
        ShmPath = shmPath;
        using (var f = new FileStream(shmPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite))
        {
            if (shmSize > 0)
                f.SetLength(shmSize);
        }
        if (!Libc.TryMakeAddress(socketPath, out var address, out uint addressLength))
            throw new ArgumentException($"unix socket path '{socketPath}' is empty or longer than {Libc.SunPathLength - 1} bytes", nameof(socketPath));
        string? directory = Path.GetDirectoryName(Path.GetFullPath(socketPath));
        if (!string.IsNullOrEmpty(directory))
            Directory.CreateDirectory(directory);
        if (File.Exists(socketPath) || Directory.Exists(socketPath))
        {
            if ((File.GetAttributes(socketPath) & FileAttributes.Directory) != 0)
                throw new IOException($"{Description}: the socket path is a directory");
            File.Delete(socketPath); // one VM per listener: whatever was there is ours to replace
        }
        _listenFd = Libc.socket(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_NONBLOCK | Libc.SOCK_CLOEXEC, 0);
        if (_listenFd < 0)
            throw Error("socket() failed", Libc.Errno);
        if (Libc.bind(_listenFd, &address, addressLength) != 0 || Libc.listen(_listenFd, 4) != 0)
        {
            int errno = Libc.Errno;
            Libc.close(_listenFd);
            throw Error("bind()/listen() failed", errno);
        }
        int wakeFd = Libc.eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK);
        if (wakeFd < 0)
        {
            int errno = Libc.Errno;
            Libc.close(_listenFd);
            throw Error("eventfd() failed", errno);
        }
        _gate = new AcceptGate(wakeFd, CloseAll);
    }

    public string SocketPath { get; }
    public string ShmPath { get; }
    public string Description => $"vm:{SocketPath},shm={ShmPath}";

    /// <summary>Largest ring a guest may ask for.</summary>
    public int MaxRingBytes { get; set; } = 64 << 20;

    ITransport? ITransportListener.Accept(CancellationToken cancellationToken) => Accept(cancellationToken);

    /// <summary>Waits for the next session. Returns null when cancelled or disposed.</summary>
    /// <exception cref="TransportClosedException">A bad preamble; the listener stays usable.</exception>
    public UnixRingTransport? Accept(CancellationToken cancellationToken)
    {
        return _gate.Accept(cancellationToken, AfterLastSession);
    }

    private UnixRingTransport? AfterLastSession(CancellationToken cancellationToken)
    {
        // The previous session's transport must be gone before its channel is read again.
        try
        {
            _sessionDone.Wait(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            return null;
        }
        return ReadPreamble(cancellationToken);
    }

    private UnixRingTransport? ReadPreamble(CancellationToken cancellationToken)
    {
        Libc.PollFd* fds = stackalloc Libc.PollFd[3];
        while (true)
        {
            if (cancellationToken.IsCancellationRequested || _gate.IsDisposed)
                return null;
            if (_buffered == _buffer.Length)
                return Complete();

            fds[0] = new Libc.PollFd { fd = _gate.WakeFd, events = Libc.POLLIN };
            fds[1] = new Libc.PollFd { fd = _listenFd, events = Libc.POLLIN };
            fds[2] = new Libc.PollFd { fd = _connFd, events = Libc.POLLIN };
            int r = Libc.PollOrThrow(fds, 3, -1, Description);
            if (r < 0)
                continue;
            if (fds[0].revents != 0)
            {
                _gate.Drain();
                continue;
            }
            if (fds[1].revents != 0)
            {
                int fd = Libc.accept4(_listenFd, null, null, Libc.SOCK_NONBLOCK | Libc.SOCK_CLOEXEC);
                if (fd >= 0)
                {
                    // qemu reconnected (or a new VM started): the new connection replaces the old one.
                    if (_connFd >= 0)
                        Libc.close(_connFd);
                    _connFd = fd;
                    _buffered = 0;
                }
                continue;
            }
            if (_connFd >= 0 && fds[2].revents != 0)
                ReadSome();
        }
    }

    private void ReadSome()
    {
        fixed (byte* b = _buffer)
        {
            nint n = Libc.recv(_connFd, b + _buffered, (nuint)(_buffer.Length - _buffered), Libc.MSG_DONTWAIT);
            if (n == 0 || (n < 0 && Libc.Errno is not (Libc.EINTR or Libc.EAGAIN)))
            {
                // qemu went away (VM stopped): wait for its next connection.
                Libc.close(_connFd);
                _connFd = -1;
                _buffered = 0;
                return;
            }
            if (n > 0)
                Append(new ReadOnlySpan<byte>(b + _buffered, (int)n), inPlace: true);
        }
    }

    /// <summary>Adds channel bytes to the preamble buffer, skipping the doorbells and goodbyes that may
    /// precede a preamble (late bytes of an ended session).</summary>
    private void Append(ReadOnlySpan<byte> bytes, bool inPlace)
    {
        if (_buffered == 0)
        {
            int start = bytes.IndexOfAnyExcept(UnixRingTransport.VmDoorbell, UnixRingTransport.VmGoodbye);
            bytes = start < 0 ? default : bytes[start..];
        }
        if (bytes.Length > _buffer.Length - _buffered)
            bytes = bytes[..(_buffer.Length - _buffered)]; // bytes of a session that has not been accepted yet cannot exist
        if (inPlace && _buffered > 0)
        {
            _buffered += bytes.Length;
            return;
        }
        bytes.CopyTo(_buffer.AsSpan(_buffered));
        _buffered += bytes.Length;
    }

    private UnixRingTransport Complete()
    {
        ReadOnlySpan<byte> p = _buffer;
        _buffered = 0;
        ulong magic = BinaryPrimitives.ReadUInt64LittleEndian(p);
        if (magic != VmTransport.PreambleMagic)
            throw new TransportClosedException($"{Description}: the guest sent no GuestIcd VM preamble (bad magic 0x{magic:x16}); skipped");
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(p[8..]);
        if (version != VmTransport.PreambleVersion)
            throw new TransportClosedException($"{Description}: the guest speaks VM preamble version {version}; this host speaks {VmTransport.PreambleVersion}");
        uint ringBytes = BinaryPrimitives.ReadUInt32LittleEndian(p[12..]);
        ulong heapBytes = BinaryPrimitives.ReadUInt64LittleEndian(p[16..]);
        if (ringBytes < UnixRingTransport.MinRingBytes || ringBytes > (uint)Math.Min(MaxRingBytes, UnixRingTransport.MaxRingBytes)
            || !SharedRing.IsValidCapacity((int)ringBytes))
            throw new TransportClosedException($"{Description}: the guest asked for a {ringBytes}-byte ring; allowed: a power of two from {UnixRingTransport.MinRingBytes} to {MaxRingBytes}");
        long fileSize = new FileInfo(ShmPath).Length;
        long rings = UnixRingTransport.SharedSize((int)ringBytes);
        // A hostile guest must not make us map (and then touch) anything outside the file.
        if (heapBytes % 4096 != 0 || heapBytes > (ulong)UnixRingTransport.MaxHeapBytes || rings + (long)heapBytes > fileSize)
            throw new TransportClosedException($"{Description}: the guest's {ringBytes}-byte rings and {heapBytes}-byte heap do not fit the {fileSize}-byte shared file");
        nuint size = (nuint)(rings + (long)heapBytes);

        int fd;
        fixed (byte* path = System.Text.Encoding.UTF8.GetBytes(ShmPath + "\0"))
            fd = Libc.open(path, Libc.O_RDWR | Libc.O_CLOEXEC, 0);
        if (fd < 0)
            throw new IOException($"{Description}: cannot open the shared file ({Libc.Describe(Libc.Errno)})");
        void* region = Libc.mmap(null, size, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, fd, 0);
        int errno = Libc.Errno;
        if (region == Libc.MAP_FAILED)
        {
            Libc.close(fd);
            throw new IOException($"{Description}: mapping the shared file failed ({Libc.Describe(errno)})");
        }

        int session = ++_sessions;
        _sessionDone.Reset();
        var transport = new UnixRingTransport(UnixRingTransport.Channel.HostVmSession, _connFd, (byte*)region, size, (int)ringBytes,
            $"{Description} session {session} (ring {ringBytes} B, heap {heapBytes >> 20} MiB)", (long)heapBytes, SessionEnded);
        // Kept (closed on Dispose) so a worker process can map the same memory (RelayVmSession).
        transport.KeepSharedMemoryFd(fd);
        return transport;
    }

    /// <summary>Called by the session's Dispose with the channel bytes it drained past its end.</summary>
    private void SessionEnded(byte[] leftover)
    {
        lock (_gate.Lock)
        {
            _buffered = 0;
            Append(leftover, inPlace: false);
        }
        _sessionDone.Set();
    }

    public void Dispose() => _gate.Dispose(whileAccepting: _sessionDone.Set);

    private void CloseAll()
    {
        // A live session's transport may still poll _connFd; it ends at EOF once qemu goes, or when disposed.
        if (_connFd >= 0 && _sessionDone.IsSet)
            Libc.close(_connFd);
        Libc.close(_listenFd);
        try
        {
            File.Delete(SocketPath);
        }
        catch (IOException)
        {
        }
    }

    private IOException Error(string what, int errno) => new($"{Description}: {what} ({Libc.Describe(errno)})");
}
