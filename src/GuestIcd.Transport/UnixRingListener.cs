using System.Buffers.Binary;
using System.Diagnostics;
using GuestIcd.Transport.Native;

namespace GuestIcd.Transport;

/// <summary>
/// Host end of <see cref="UnixRingTransport"/>: listens on a unix socket, takes each guest's memfd and
/// preamble, checks them, and hands back the transport with the roles swapped (reads commands, writes
/// replies).
/// </summary>
/// <remarks>
/// A guest that connects and then says nothing cannot hold up other guests: handshakes are read
/// non-blocking, several at once, each with <see cref="HandshakeTimeoutMs"/>. A newcomer is always
/// accepted: when one peer (pid, from SO_PEERCRED) already has <see cref="MaxPendingPerPeer"/> unfinished
/// handshakes, or all <see cref="MaxPendingHandshakes"/> slots are taken, the oldest unfinished one (of
/// that peer, else of anyone) is dropped — a real guest finishes its handshake within a millisecond, so
/// only silent peers are ever old. A guest whose handshake is bad, late or evicted is dropped and
/// <see cref="Accept"/> throws a <see cref="TransportClosedException"/> naming the reason; the listener
/// stays usable, so call Accept again. One thread calls Accept at a time;
/// <see cref="Dispose"/> may come from any thread and makes a blocked Accept return null.
/// </remarks>
public sealed unsafe class UnixRingListener : ITransportListener
{
    /// <summary>Unfinished handshakes held at once, over all peers.</summary>
    public const int MaxPendingHandshakes = 256;
    /// <summary>Unfinished handshakes one peer (process) may hold at once.</summary>
    public const int MaxPendingPerPeer = 16;

    private readonly int _listenFd;
    private readonly AcceptGate _gate;
    private readonly List<Pending> _pending = [];
    /// <summary>Guests dropped to make room for newcomers, reported by the next Accept calls.</summary>
    private readonly Queue<string> _evicted = new();

    private sealed class Pending(int fd, long deadline, int peer)
    {
        public readonly int Fd = fd;
        public readonly int Peer = peer;
        public readonly long Deadline = deadline;
        public readonly byte[] Preamble = new byte[UnixRingTransport.PreambleSize];
        public int Received;
        public int Memfd = -1;
    }

    /// <summary>Binds <paramref name="socketPath"/>, creating its directory and replacing a stale socket
    /// file left by a dead host. Throws <see cref="IOException"/> when a live host already listens there
    /// or the path is something other than a socket.</summary>
    public UnixRingListener(string socketPath)
    {
        ArgumentNullException.ThrowIfNull(socketPath);
        if (!Libc.TryMakeAddress(socketPath, out var address, out uint addressLength))
            throw new ArgumentException($"unix socket path '{socketPath}' is empty or longer than {Libc.SunPathLength - 1} bytes", nameof(socketPath));
        SocketPath = socketPath;

        string? directory = Path.GetDirectoryName(Path.GetFullPath(socketPath));
        if (!string.IsNullOrEmpty(directory))
            Directory.CreateDirectory(directory);
        RemoveStaleSocket(socketPath, &address, addressLength);

        _listenFd = Libc.socket(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_NONBLOCK | Libc.SOCK_CLOEXEC, 0);
        if (_listenFd < 0)
            throw Error("socket() failed", Libc.Errno);
        if (Libc.bind(_listenFd, &address, addressLength) != 0)
        {
            int errno = Libc.Errno;
            Libc.close(_listenFd);
            throw Error("bind() failed", errno);
        }
        if (Libc.listen(_listenFd, 128) != 0)
        {
            int errno = Libc.Errno;
            Libc.close(_listenFd);
            Unlink(socketPath);
            throw Error("listen() failed", errno);
        }
        int wakeFd = Libc.eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK);
        if (wakeFd < 0)
        {
            int errno = Libc.Errno;
            Libc.close(_listenFd);
            Unlink(socketPath);
            throw Error("eventfd() failed", errno);
        }
        _gate = new AcceptGate(wakeFd, CloseAll);
    }

    public string SocketPath { get; }

    public string Description => $"unix:{SocketPath}";

    /// <summary>How long a connected guest has to deliver its preamble and memfd.</summary>
    public int HandshakeTimeoutMs { get; set; } = 2000;

    /// <summary>Largest ring a guest may ask for; bigger requests are refused (host memory is the limit).</summary>
    public int MaxRingBytes { get; set; } = 64 << 20;

    /// <summary>Largest shared heap (HOST_VISIBLE memory) one guest may bring: its memory quota on this listener.</summary>
    public long MaxHeapBytes { get; set; } = 16L << 30;

    ITransport? ITransportListener.Accept(CancellationToken cancellationToken) => Accept(cancellationToken);

    /// <summary>Waits for the next guest with a valid handshake. Returns null when cancelled or disposed.</summary>
    /// <exception cref="TransportClosedException">A guest was dropped (bad or late handshake); the
    /// message says why. The listener stays usable.</exception>
    public UnixRingTransport? Accept(CancellationToken cancellationToken)
    {
        return _gate.Accept(cancellationToken, AcceptLoop);
    }

    private UnixRingTransport? AcceptLoop(CancellationToken cancellationToken)
    {
        var fds = new Libc.PollFd[2 + MaxPendingHandshakes];
        while (true)
        {
            if (cancellationToken.IsCancellationRequested || _gate.IsDisposed)
                return null;
            if (_evicted.TryDequeue(out string? evicted))
                throw new TransportClosedException(evicted);

            long now = Stopwatch.GetTimestamp();
            long nextDeadline = long.MaxValue;
            for (int i = 0; i < _pending.Count; i++)
            {
                if (_pending[i].Deadline <= now)
                    throw Drop(i, $"sent no complete preamble within {HandshakeTimeoutMs} ms");
                nextDeadline = Math.Min(nextDeadline, _pending[i].Deadline);
            }

            fds[0] = new Libc.PollFd { fd = _gate.WakeFd, events = Libc.POLLIN };
            // Always listening: a newcomer evicts the oldest half-open guest rather than wait behind it.
            fds[1] = new Libc.PollFd { fd = _listenFd, events = Libc.POLLIN };
            for (int i = 0; i < _pending.Count; i++)
                fds[2 + i] = new Libc.PollFd { fd = _pending[i].Fd, events = Libc.POLLIN };
            int count = 2 + _pending.Count;

            int r;
            fixed (Libc.PollFd* p = fds)
                r = Libc.PollOrThrow(p, (nuint)count, Libc.RemainingMs(nextDeadline), Description);
            if (r < 0)
                continue;
            if (r == 0)
                continue;

            if (fds[0].revents != 0)
            {
                _gate.Drain();
                continue; // cancellation or dispose; a stale wake from an earlier Accept just loops
            }

            // Handshakes first: they were accepted earlier. Iterate backwards, since Drop removes entries.
            for (int i = count - 3; i >= 0; i--)
            {
                if (fds[2 + i].revents == 0)
                    continue;
                UnixRingTransport? transport = Advance(i);
                if (transport != null)
                    return transport;
            }

            if (fds[1].revents != 0)
                AcceptPending();
        }
    }

    private void AcceptPending()
    {
        // Bounded, so a flood of connections cannot keep this loop from serving handshakes.
        for (int accepted = 0; accepted < MaxPendingHandshakes; accepted++)
        {
            int fd = Libc.accept4(_listenFd, null, null, Libc.SOCK_NONBLOCK | Libc.SOCK_CLOEXEC);
            if (fd < 0)
            {
                int errno = Libc.Errno;
                if (errno == Libc.EINTR)
                    continue;
                return; // EAGAIN, or a client that vanished (ECONNABORTED): nothing to do
            }
            int peer = PeerPid(fd);
            int oldestOfPeer = -1, ofPeer = 0;
            for (int i = 0; i < _pending.Count; i++)
            {
                if (_pending[i].Peer != peer)
                    continue;
                ofPeer++;
                if (oldestOfPeer < 0)
                    oldestOfPeer = i;
            }
            // _pending is in arrival order: index 0 is the oldest.
            if (ofPeer >= MaxPendingPerPeer)
                Evict(oldestOfPeer, $"was evicted: its process holds {ofPeer} unfinished handshakes (at most {MaxPendingPerPeer})");
            else if (_pending.Count >= MaxPendingHandshakes)
                Evict(0, $"was evicted: {_pending.Count} unfinished handshakes (at most {MaxPendingHandshakes}) and it was the oldest");
            _pending.Add(new Pending(fd, Libc.Deadline(HandshakeTimeoutMs), peer));
        }
    }

    private void Evict(int index, string reason)
    {
        // Bounded like the pending list: a report more or less is worth less than memory.
        TransportClosedException e = Drop(index, reason);
        if (_evicted.Count < MaxPendingHandshakes)
            _evicted.Enqueue(e.Message);
    }

    /// <summary>Reads what a pending guest has sent; returns its transport once the handshake is complete
    /// and valid, null while incomplete; throws (after dropping it) when it is bad.</summary>
    private UnixRingTransport? Advance(int index)
    {
        Pending p = _pending[index];
        const int MaxFds = 4;
        int controlSize = Libc.CmsgSpace(MaxFds * sizeof(int));
        byte* control = stackalloc byte[controlSize];
        new Span<byte>(control, controlSize).Clear();
        nint n;
        Libc.MsgHdr msg;
        fixed (byte* preamble = p.Preamble)
        {
            var iov = new Libc.IoVec { iov_base = preamble + p.Received, iov_len = (nuint)(p.Preamble.Length - p.Received) };
            msg = new Libc.MsgHdr { msg_iov = &iov, msg_iovlen = 1, msg_control = control, msg_controllen = (nuint)controlSize };
            n = Libc.recvmsg(p.Fd, &msg, Libc.MSG_DONTWAIT | Libc.MSG_CMSG_CLOEXEC);
        }
        if (n < 0)
        {
            int errno = Libc.Errno;
            if (errno == Libc.EINTR || errno == Libc.EAGAIN)
                return null;
            throw Drop(index, $"recvmsg failed ({Libc.Describe(errno)})");
        }

        // Take ownership of every fd it sent before judging anything, so none leaks.
        bool extraFds = false;
        nuint offset = 0;
        while (offset + (nuint)sizeof(Libc.CmsgHdr) <= msg.msg_controllen)
        {
            var header = (Libc.CmsgHdr*)(control + offset);
            nuint length = header->cmsg_len;
            if (length < (nuint)Libc.CmsgDataOffset || offset + length > msg.msg_controllen)
                break;
            if (header->cmsg_level == Libc.SOL_SOCKET && header->cmsg_type == Libc.SCM_RIGHTS)
            {
                int fdCount = (int)((length - (nuint)Libc.CmsgDataOffset) / sizeof(int));
                int* received = (int*)((byte*)header + Libc.CmsgDataOffset);
                for (int i = 0; i < fdCount; i++)
                {
                    if (p.Memfd < 0 && !extraFds)
                    {
                        p.Memfd = received[i];
                    }
                    else
                    {
                        Libc.close(received[i]);
                        extraFds = true;
                    }
                }
            }
            offset += (length + 7) & ~(nuint)7;
        }
        if (extraFds || (msg.msg_flags & Libc.MSG_CTRUNC) != 0)
            throw Drop(index, "sent more than one file descriptor");
        if (n == 0)
            throw Drop(index, $"closed the connection after {p.Received} of {p.Preamble.Length} preamble bytes");
        p.Received += (int)n;
        if (p.Received < p.Preamble.Length)
            return null;
        return Complete(index);
    }

    private UnixRingTransport Complete(int index)
    {
        Pending p = _pending[index];
        ReadOnlySpan<byte> preamble = p.Preamble;
        if (BinaryPrimitives.ReadUInt64LittleEndian(preamble) != UnixRingTransport.PreambleMagic)
            throw Drop(index, "is not a GuestIcd ring client (bad preamble magic)");
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(preamble[8..]);
        if (version != UnixRingTransport.PreambleVersion)
            throw Drop(index, $"speaks ring preamble version {version}; this host speaks {UnixRingTransport.PreambleVersion}");
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(preamble[12..]);
        if (flags != 0)
            throw Drop(index, $"sent unknown preamble flags 0x{flags:x}");
        ulong ringBytes = BinaryPrimitives.ReadUInt64LittleEndian(preamble[16..]);
        if (ringBytes < UnixRingTransport.MinRingBytes || ringBytes > (ulong)Math.Min(MaxRingBytes, UnixRingTransport.MaxRingBytes)
            || !SharedRing.IsValidCapacity((int)ringBytes))
            throw Drop(index, $"asked for a {ringBytes}-byte ring; allowed: a power of two from {UnixRingTransport.MinRingBytes} to {MaxRingBytes}");
        if (p.Memfd < 0)
            throw Drop(index, "sent no shared-memory file descriptor");

        // Sealed against shrinking, or the guest could truncate it under our mapping and SIGBUS the host.
        int seals = Libc.fcntl(p.Memfd, Libc.F_GET_SEALS, 0);
        if (seals < 0 || (seals & Libc.F_SEAL_SHRINK) == 0)
            throw Drop(index, "sent shared memory that is not a memfd sealed against shrinking");
        ulong heapBytes = BinaryPrimitives.ReadUInt64LittleEndian(preamble[24..]);
        if (heapBytes > (ulong)MaxHeapBytes || heapBytes % 4096 != 0)
            throw Drop(index, $"asked for a {heapBytes}-byte shared heap; allowed: a multiple of 4096 up to {MaxHeapBytes}");
        long expected = UnixRingTransport.SharedSize((int)ringBytes) + (long)heapBytes;
        long size = Libc.lseek(p.Memfd, 0, Libc.SEEK_END);
        if (size != expected)
            throw Drop(index, $"sent {size} bytes of shared memory for {ringBytes}-byte rings and a {heapBytes}-byte heap; expected {expected}");

        void* region = Libc.mmap(null, (nuint)expected, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, p.Memfd, 0);
        if (region == Libc.MAP_FAILED)
            throw Drop(index, $"mapping its shared memory failed ({Libc.Describe(Libc.Errno)})");

        int pid = PeerPid(p.Fd);

        // The socket and the memfd now belong to the transport; the memfd stays open so the connection
        // can be handed to a worker process.
        _pending.RemoveAt(index);
        var transport = new UnixRingTransport(p.Fd, (byte*)region, (nuint)expected, (int)ringBytes, isHost: true,
            $"unix:{SocketPath} guest pid {pid} (ring {ringBytes} B, heap {heapBytes >> 20} MiB)", (long)heapBytes);
        transport.KeepSharedMemoryFd(p.Memfd);
        transport.EnableFutexDoorbells();
        return transport;
    }

    private TransportClosedException Drop(int index, string reason)
    {
        Pending p = _pending[index];
        _pending.RemoveAt(index);
        int pid = PeerPid(p.Fd);
        ClosePending(p);
        return new TransportClosedException($"{Description}: dropped guest pid {pid}: it {reason}");
    }

    /// <summary>The guest's process id, for log lines (0 when the kernel cannot say).</summary>
    private static int PeerPid(int fd) => Libc.PeerCredentials(fd).pid;

    private static void ClosePending(Pending p)
    {
        if (p.Memfd >= 0)
            Libc.close(p.Memfd);
        Libc.close(p.Fd);
    }

    public void Dispose() => _gate.Dispose();

    private void CloseAll()
    {
        foreach (Pending p in _pending)
            ClosePending(p);
        _pending.Clear();
        Libc.close(_listenFd);
        Unlink(SocketPath);
    }

    private static void RemoveStaleSocket(string path, Libc.SockAddrUn* address, uint addressLength)
    {
        byte* stat = stackalloc byte[Libc.StatSize];
        bool exists;
        bool isSocket = true;
        try
        {
            fixed (byte* p = System.Text.Encoding.UTF8.GetBytes(path + "\0"))
            {
                exists = Libc.lstat(p, stat) == 0;
                if (exists)
                    isSocket = (*(uint*)(stat + Libc.StatModeOffset) & Libc.S_IFMT) == Libc.S_IFSOCK;
            }
        }
        catch (EntryPointNotFoundException)
        {
            // glibc before 2.33 has no lstat symbol; fall back to a type-blind check.
            exists = File.Exists(path);
        }
        if (!exists)
            return;
        if (!isSocket)
            throw new IOException($"unix:{path}: the path exists and is not a socket; not replacing it");

        // Only a socket nobody answers on is stale; a live host keeps its path.
        int probe = Libc.socket(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_NONBLOCK | Libc.SOCK_CLOEXEC, 0);
        if (probe >= 0)
        {
            int rc = Libc.connect(probe, address, addressLength);
            int errno = Libc.Errno;
            Libc.close(probe);
            if (rc == 0 || errno == Libc.EINPROGRESS || errno == Libc.EAGAIN)
                throw new IOException($"unix:{path}: another host is already listening there");
        }
        Unlink(path);
    }

    private static void Unlink(string path)
    {
        fixed (byte* p = System.Text.Encoding.UTF8.GetBytes(path + "\0"))
            Libc.unlink(p);
    }

    private IOException Error(string what, int errno) =>
        new($"unix:{SocketPath}: {what} ({Libc.Describe(errno)})");
}
