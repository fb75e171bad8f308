using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using GuestIcd.Transport.Native;

namespace GuestIcd.Transport;

/// <summary>
/// Shared-memory transport: two <see cref="SharedRing"/>s in one memfd (guest→host commands, host→guest
/// replies) plus a unix stream socket that carried the memfd at connect time and afterwards only carries
/// one-byte doorbells.
/// </summary>
/// <remarks>
/// <para>Doorbells cost no syscall while the peer is busy: a writer publishes its head and rings only if
/// the consumer has raised its sleeping flag; a reader spins for <see cref="SpinMicroseconds"/>, then
/// raises the flag, re-checks, and sleeps: on a unix connection (both ends in one kernel, both announcing it
/// in the ring header, <see cref="EnableFutexDoorbells"/>) in FUTEX_WAIT on the flag word, woken by FUTEX_WAKE,
/// asking the socket whether the peer still lives whenever a <see cref="LivenessSliceMs"/> slice ends without
/// a wake-up; otherwise (VM channels, virtio-gpu, a peer without futexes) in poll() on the socket. A producer that finds the ring full does
/// the same in reverse (its "producer waiting" flag is checked by the consumer after it frees room).
/// Any doorbell byte just means "re-check"; spurious ones are harmless.</para>
/// <para>Threading: one thread may write while another reads (each direction is single-producer,
/// single-consumer); two threads must not write (or read) at once. Both may sleep at the same time — only
/// one of them polls the socket, the other waits for it in-process, so no doorbell is lost to the wrong
/// thread. <see cref="Dispose"/> must not race with calls on other threads; to unblock them first, call
/// <see cref="Shutdown"/>.</para>
/// <para>A peer is never trusted for more than its counters: they are bounds-checked (see
/// <see cref="SharedRing"/>), the memfd must be sealed against shrinking (so the mapping cannot SIGBUS),
/// and doorbells are sent non-blocking (a peer that never drains its socket cannot stall us).</para>
/// </remarks>
public sealed unsafe class UnixRingTransport : ITransport, ISharedHeap
{
    public const int DefaultRingBytes = 4 << 20;
    /// <summary>Smallest ring accepted on either side.</summary>
    public const int MinRingBytes = 4096;
    /// <summary>Largest ring a guest may ask for (the listener may lower it).</summary>
    public const int MaxRingBytes = 256 << 20;

    internal const uint PreambleVersion = 2;
    internal const int PreambleSize = 32;
    /// <summary>Shared memory after the rings for HOST_VISIBLE allocations (sparse: pages cost nothing until touched).</summary>
    public const long DefaultHeapBytes = 1L << 30;
    public const long MaxHeapBytes = 64L << 30;
    // "GICDRING" little-endian
    internal const ulong PreambleMagic = 0x474E495244434947;

    private readonly int _socket;
    private readonly byte* _region;
    private readonly nuint _regionSize;
    private readonly SharedRing _tx;
    private readonly SharedRing _rx;

    // Sleeping: only one thread polls the socket at a time; a second sleeper waits on _gate and is woken
    // by the poller, which bumps _wakeEpoch whenever it has drained the socket (see Sleep).
    private readonly object _gate = new();
    private bool _pollerActive;
    private long _wakeEpoch;
    private volatile bool _peerClosed;
    /// <summary>This side wakes and sleeps with futexes on the shared flags (<see cref="EnableFutexDoorbells"/>).</summary>
    private bool _futex;
    private volatile bool _shutDown;
    private int _disposed;

    private enum WaitFor { Data, Room }

    /// <summary>How the doorbell fd is used: a unix socket this transport owns (the default), the guest's
    /// virtio-serial char device (read/write, no shutdown, goodbye byte on Dispose), or the host end of a
    /// VM channel owned by <see cref="VmTransportListener"/> (session ends at a goodbye or a new preamble).</summary>
    internal enum Channel { OwnedSocket, GuestCharDevice, HostVmSession }

    /// <summary>VM channel bytes: a doorbell, and the guest's last byte of a session.</summary>
    internal const byte VmDoorbell = 0x01;
    internal const byte VmGoodbye = 0x00;

    private readonly Channel _channel = Channel.OwnedSocket;
    /// <summary>Longest futex sleep before the socket is asked whether the peer died (a futex is not woken by that).</summary>
    public const int LivenessSliceMs = 250;

    /// <summary>Both ends are processes of one kernel (a unix socket connection): sleep and wake with futexes on the
    /// ring's flags instead of doorbell bytes on the socket, where the peer announces it does the same.
    /// <c>GUESTICD_RING_DOORBELL=socket</c> keeps the socket doorbells (for comparing the two).</summary>
    internal void EnableFutexDoorbells()
    {
        if (!Futex.Available || Environment.GetEnvironmentVariable("GUESTICD_RING_DOORBELL") == "socket")
            return;
        _futex = true;
        _tx.AnnounceProducerFutex();
        _rx.AnnounceConsumerFutex();
    }

    /// <summary>Whether this side sleeps on futexes (for tests and the status of a connection).</summary>
    public bool UsesFutexDoorbells => _futex;

    /// <summary>Host side: the shared memory's fd, kept (not just the mapping) so the connection can be
    /// handed to a worker process (<see cref="Detach"/>); -1 when not kept.</summary>
    private int _memfd = -1;
    /// <summary>Non-owning host mode: called once from Dispose with the channel bytes drained after the
    /// session's end (the start of the next preamble), so the owner can carry on reading.</summary>
    private readonly Action<byte[]>? _onSessionEnd;
    private byte[] _leftover = [];
    /// <summary>Non-owning host mode: an eventfd that Shutdown signals, since the shared socket must not be shut down.</summary>
    private readonly int _wakeFd = -1;

    internal UnixRingTransport(int socketFd, byte* region, nuint regionSize, int ringBytes, bool isHost, string description, long heapBytes = 0)
    {
        HeapBytes = heapBytes;
        HeapBase = heapBytes == 0 ? null : region + SharedSize(ringBytes);
        _socket = socketFd;
        _region = region;
        _regionSize = regionSize;
        var toHost = new SharedRing(region, ringBytes);
        var toGuest = new SharedRing(region + SharedRing.RegionSize(ringBytes), ringBytes);
        _tx = isHost ? toGuest : toHost;
        _rx = isHost ? toHost : toGuest;
        RingBytes = ringBytes;
        IsHost = isHost;
        Description = description;
        _spin = new AdaptiveSpin(Environment.ProcessorCount > 1 ? DefaultSpinCap() : 0);
    }

    /// <summary>The spin cap (µs): <c>GUESTICD_RING_SPIN_US</c>, else 100 — about a host driver's slowest
    /// quick answer (lavapipe's empty submit + fence is ~10 µs on an idle machine, a few times that on a busy one).</summary>
    private static int DefaultSpinCap() =>
        int.TryParse(Environment.GetEnvironmentVariable("GUESTICD_RING_SPIN_US"), out int us) && us >= 0 ? us : 100;

    private readonly AdaptiveSpin _spin;

    /// <summary>A transport on a VM channel: <paramref name="channel"/> says whether <paramref name="fd"/> is
    /// the guest's char device (owned, closed on Dispose after a goodbye byte) or the host's socket to qemu
    /// (not owned: Dispose only unmaps and calls <paramref name="onSessionEnd"/>).</summary>
    internal UnixRingTransport(Channel channel, int fd, byte* region, nuint regionSize, int ringBytes, string description,
        long heapBytes, Action<byte[]>? onSessionEnd = null)
        : this(fd, region, regionSize, ringBytes, channel == Channel.HostVmSession, description, heapBytes)
    {
        _channel = channel;
        _onSessionEnd = onSessionEnd;
        if (channel == Channel.HostVmSession)
        {
            _wakeFd = Libc.eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK);
            if (_wakeFd < 0)
                throw new IOException($"{description}: eventfd() failed ({Libc.Describe(Libc.Errno)})");
        }
    }

    public string Description { get; }

    /// <summary>Capacity of each of the two rings.</summary>
    public int RingBytes { get; }

    /// <summary>True for the listener's end (reads commands, writes replies).</summary>
    public bool IsHost { get; }

    /// <summary>The most a blocked reader or writer busy-waits before it sleeps (futex or poll()); within that it
    /// spins twice the median of its recent waits (<see cref="AdaptiveSpin"/>). 0 on one CPU: never spins.</summary>
    public int SpinMicroseconds { get => _spin.CapMicroseconds; set => _spin.CapMicroseconds = value; }

    /// <summary>How long <see cref="Write"/> waits for the peer to make room before it gives up with
    /// <see cref="TransportClosedException"/>; -1 (default) waits as long as the peer lives. A host
    /// sets this so that a guest which stops reading cannot park a host thread forever.</summary>
    public int WriteTimeoutMs { get; set; } = -1;

    public byte* HeapBase { get; }
    public long HeapBytes { get; }

    /// <summary>Total shared bytes for two rings of <paramref name="ringBytes"/>.</summary>
    internal static long SharedSize(int ringBytes) => 2 * SharedRing.RegionSize(ringBytes);

    /// <summary>Set when someone else owns the mapping (the virtio-gpu backend, which may swap the guest's
    /// pages out from under the session): Dispose calls it instead of unmapping.</summary>
    internal Action? ReleaseRegion { get; set; }

    /// <summary>For tests: the mapped region both rings live in.</summary>
    internal byte* Region => _region;

    // ================================================================== host side: hand-off to another process

    /// <summary>What a process that continues this connection needs besides its two fds (socket, memfd):
    /// sizes and this side's private ring counters. Plain data, so it can travel as JSON.</summary>
    public readonly record struct Handoff(int RingBytes, long HeapBytes, SharedRing.State Tx, SharedRing.State Rx, string Description, bool Futex = false);

    /// <summary>True when <see cref="Detach"/> can hand this connection to another process.</summary>
    public bool IsHandoffCapable => IsHost && _channel == Channel.OwnedSocket && _memfd >= 0 && _disposed == 0;

    /// <summary>True for a host vm session whose rings can be served by another process through
    /// <see cref="RelayVmSession"/>.</summary>
    public bool IsVmSession => IsHost && _channel == Channel.HostVmSession && _memfd >= 0 && _disposed == 0;

    /// <summary>Host vm session: lets another process serve the rings while this thread relays the doorbells
    /// between the shared vm channel and <paramref name="workerSocket"/> (one byte each way means "re-check").
    /// <paramref name="started"/> receives what the other process needs (<see cref="Resume"/> with
    /// <c>sealedMemfd: false</c>) and a duplicate of the shared file's fd (the caller sends and closes it);
    /// it runs before any relaying. Returns when the session ends on the guest's side (goodbye, next
    /// preamble, qemu gone; the channel bytes past the end are kept for the listener) or the other process
    /// closes its end (it exited or died). The caller must make sure the other process no longer touches
    /// the memory before it disposes this transport, which lets the listener read the next session.</summary>
    public void RelayVmSession(int workerSocket, Action<Handoff, int> started)
    {
        if (!IsVmSession)
            throw new InvalidOperationException($"{Description}: not a host vm session");
        int fd = Libc.fcntl(_memfd, 1030 /* F_DUPFD_CLOEXEC: a plain dup could leak into a process spawned meanwhile */, 0);
        if (fd < 0)
            throw new IOException($"{Description}: dup failed ({Libc.Describe(Libc.Errno)})");
        started(new Handoff(RingBytes, HeapBytes, _tx.Save(), _rx.Save(), Description), fd);
        Libc.PollFd* pfd = stackalloc Libc.PollFd[3];
        byte* buffer = stackalloc byte[256];
        byte bell = VmDoorbell;
        while (!_peerClosed)
        {
            pfd[0] = new Libc.PollFd { fd = _socket, events = Libc.POLLIN };
            pfd[1] = new Libc.PollFd { fd = workerSocket, events = Libc.POLLIN };
            pfd[2] = new Libc.PollFd { fd = _wakeFd, events = Libc.POLLIN };
            int r = Libc.poll(pfd, 3, -1);
            if (r < 0 && Libc.Errno == Libc.EINTR)
                continue;
            if (r < 0 || pfd[2].revents != 0 || (pfd[0].revents & Libc.POLLNVAL) != 0)
                break;
            if (pfd[0].revents != 0)
            {
                nint n = Libc.read(_socket, buffer, 256);
                if (n == 0 || (n < 0 && Libc.Errno is not (Libc.EINTR or Libc.EAGAIN)))
                    break; // qemu went away
                if (n > 0)
                {
                    if (EndsSession(new ReadOnlySpan<byte>(buffer, (int)n)))
                        break;
                    // Non-blocking: a full socketpair already holds a doorbell the worker has not read.
                    Libc.send(workerSocket, &bell, 1, Libc.MSG_DONTWAIT | Libc.MSG_NOSIGNAL);
                }
            }
            if (pfd[1].revents != 0)
            {
                nint n = Libc.recv(workerSocket, buffer, 256, Libc.MSG_DONTWAIT);
                if (n == 0 || (n < 0 && Libc.Errno is not (Libc.EINTR or Libc.EAGAIN)))
                    break; // the worker closed its end: it ended the session or died
                if (n > 0)
                    Libc.write(_socket, &bell, 1);
            }
        }
        _peerClosed = true;
        Libc.shutdown(workerSocket, Libc.SHUT_RDWR);
    }

    /// <summary>Host side, listener-owned socket only: stops using this connection without ending it and
    /// returns what <see cref="Resume"/> needs in another process. The caller gets the socket and the memfd
    /// (to send with SCM_RIGHTS and then close); this object unmaps and is disposed. No other thread may be
    /// using the transport.</summary>
    public Handoff Detach(out int socketFd, out int memfd)
    {
        if (!IsHost || _channel != Channel.OwnedSocket || _memfd < 0)
            throw new InvalidOperationException($"{Description}: only a listener's unix connection can be handed off; a vm session is relayed (RelayVmSession)");
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            throw new ObjectDisposedException(Description);
        var handoff = new Handoff(RingBytes, HeapBytes, _tx.Save(), _rx.Save(), Description, _futex);
        socketFd = _socket;
        memfd = _memfd;
        _memfd = -1;
        // No shutdown(): the socket lives on in the process it goes to.
        Libc.munmap(_region, _regionSize);
        return handoff;
    }

    /// <summary>Host side, a mapping someone else owns (<see cref="ReleaseRegion"/> set: the virtio-gpu backend,
    /// whose guest pages the other process maps itself): stops using this connection without ending it and
    /// returns the ring counters and the socket (the caller sends and closes it). No other thread may be using it.</summary>
    internal Handoff DetachShared(out int socketFd)
    {
        if (!IsHost || _channel != Channel.OwnedSocket || ReleaseRegion is null)
            throw new InvalidOperationException($"{Description}: not a host connection over memory owned by someone else");
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            throw new ObjectDisposedException(Description);
        socketFd = _socket;
        ReleaseRegion();
        return new Handoff(RingBytes, HeapBytes, _tx.Save(), _rx.Save(), Description);
    }

    /// <summary>Continues, over <paramref name="region"/> (mapped by the caller, released through
    /// <paramref name="releaseRegion"/>), a connection handed off with <see cref="DetachShared"/>. Takes the socket.</summary>
    internal static UnixRingTransport ResumeShared(Handoff handoff, int socketFd, byte* region, nuint size, Action releaseRegion)
    {
        if (handoff.RingBytes < MinRingBytes || handoff.RingBytes > MaxRingBytes || !SharedRing.IsValidCapacity(handoff.RingBytes)
            || handoff.HeapBytes < 0 || (ulong)(SharedSize(handoff.RingBytes) + handoff.HeapBytes) > size)
        {
            Libc.close(socketFd);
            throw new TransportClosedException($"{handoff.Description}: hand-off with a {handoff.RingBytes}-byte ring and a {handoff.HeapBytes}-byte heap over {size} bytes");
        }
        var transport = new UnixRingTransport(socketFd, region, size, handoff.RingBytes, isHost: true, handoff.Description, handoff.HeapBytes)
        {
            ReleaseRegion = releaseRegion,
        };
        transport._tx.Resume(handoff.Tx);
        transport._rx.Resume(handoff.Rx);
        return transport;
    }

    /// <summary>Continues a connection another process <see cref="Detach"/>ed: maps
    /// <paramref name="memfd"/> (checked again: sealed, the right size) and takes ownership of both fds,
    /// including on failure.</summary>
    /// <exception cref="TransportClosedException">The memory is not what the hand-off says.</exception>
    public static UnixRingTransport Resume(Handoff handoff, int socketFd, int memfd, bool sealedMemfd = true)
    {
        byte* region = null;
        nuint size = 0;
        try
        {
            if (handoff.RingBytes < MinRingBytes || handoff.RingBytes > MaxRingBytes || !SharedRing.IsValidCapacity(handoff.RingBytes)
                || handoff.HeapBytes < 0 || handoff.HeapBytes > MaxHeapBytes)
                throw new TransportClosedException($"{handoff.Description}: hand-off with a {handoff.RingBytes}-byte ring and a {handoff.HeapBytes}-byte heap");
            long expected = SharedSize(handoff.RingBytes) + handoff.HeapBytes;
            if (sealedMemfd)
            {
                int seals = Libc.fcntl(memfd, Libc.F_GET_SEALS, 0);
                if (seals < 0 || (seals & Libc.F_SEAL_SHRINK) == 0 || Libc.lseek(memfd, 0, Libc.SEEK_END) != expected)
                    throw new TransportClosedException($"{handoff.Description}: handed-off memory is not a sealed memfd of {expected} bytes");
            }
            else if (Libc.lseek(memfd, 0, Libc.SEEK_END) < expected)
            {
                // The vm's shared file belongs to the host (qemu and hostsim), not to the guest; it only has to be big enough.
                throw new TransportClosedException($"{handoff.Description}: handed-off shared file is smaller than {expected} bytes");
            }
            size = (nuint)expected;
            region = (byte*)Libc.mmap(null, size, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, memfd, 0);
            if (region == Libc.MAP_FAILED)
            {
                region = null;
                throw new TransportClosedException($"{handoff.Description}: mapping the handed-off memory failed ({Libc.Describe(Libc.Errno)})");
            }
            var transport = new UnixRingTransport(socketFd, region, size, handoff.RingBytes, isHost: true, handoff.Description, handoff.HeapBytes);
            transport._tx.Resume(handoff.Tx);
            transport._rx.Resume(handoff.Rx);
            if (handoff.Futex)
                transport.EnableFutexDoorbells();
            // The mapping keeps the memory; this end is the last and is never handed on.
            Libc.close(memfd);
            socketFd = memfd = -1;
            region = null;
            return transport;
        }
        catch (ArgumentException e)
        {
            throw new TransportClosedException($"{handoff.Description}: {e.Message}");
        }
        finally
        {
            if (region != null)
                Libc.munmap(region, size);
            if (memfd >= 0)
                Libc.close(memfd);
            if (socketFd >= 0)
                Libc.close(socketFd);
        }
    }

    /// <summary>Listener: keeps the memfd for a later <see cref="Detach"/> (closed on Dispose).</summary>
    internal void KeepSharedMemoryFd(int memfd) => _memfd = memfd;

    // ================================================================== guest side: connect

    /// <summary>
    /// Connects to a <see cref="UnixRingListener"/> at <paramref name="socketPath"/>: creates and seals a
    /// memfd holding both rings, connects within <paramref name="timeoutMs"/> (-1: no limit) and sends the
    /// memfd with a "GICDRING" preamble.
    /// </summary>
    /// <exception cref="TransportClosedException">No listener at the path, refused, or timed out; the
    /// message names the path.</exception>
    public static UnixRingTransport Connect(string socketPath, int timeoutMs, int ringBytes = DefaultRingBytes, long heapBytes = 0)
    {
        if (heapBytes < 0 || heapBytes > MaxHeapBytes || heapBytes % 4096 != 0)
            throw new ArgumentOutOfRangeException(nameof(heapBytes), heapBytes, $"the heap must be a multiple of 4096 up to {MaxHeapBytes}");
        ArgumentNullException.ThrowIfNull(socketPath);
        if (ringBytes < MinRingBytes || ringBytes > MaxRingBytes || !SharedRing.IsValidCapacity(ringBytes))
            throw new ArgumentOutOfRangeException(nameof(ringBytes), ringBytes,
                $"ring size must be a power of two between {MinRingBytes} and {MaxRingBytes}");
        long deadline = Libc.Deadline(timeoutMs);

        int socket = ConnectSocket(socketPath, timeoutMs, deadline);
        int memfd = -1;
        byte* region = null;
        nuint size = (nuint)(SharedSize(ringBytes) + heapBytes);
        try
        {
            memfd = CreateSealedMemfd(socketPath, (long)size);
            region = (byte*)Libc.mmap(null, size, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, memfd, 0);
            if (region == Libc.MAP_FAILED)
            {
                region = null;
                throw Fail(socketPath, "mmap of the ring memory failed", Libc.Errno);
            }
            SharedRing.Initialize(region);
            SharedRing.Initialize(region + SharedRing.RegionSize(ringBytes));
            SendPreamble(socketPath, socket, memfd, ringBytes, heapBytes, timeoutMs, deadline);
            var transport = new UnixRingTransport(socket, region, size, ringBytes, isHost: false,
                $"unix:{socketPath} (ring {ringBytes} B)", heapBytes);
            transport.EnableFutexDoorbells();
            socket = -1;
            region = null;
            return transport;
        }
        finally
        {
            // The mapping keeps the memory alive; the fd was only needed to share it.
            if (memfd >= 0)
                Libc.close(memfd);
            if (region != null)
                Libc.munmap(region, size);
            if (socket >= 0)
                Libc.close(socket);
        }
    }

    private static int ConnectSocket(string path, int timeoutMs, long deadline)
    {
        if (!Libc.TryMakeAddress(path, out var address, out uint addressLength))
            throw new TransportClosedException($"cannot connect to unix socket '{path}': path is empty or longer than {Libc.SunPathLength - 1} bytes");
        int fd = Libc.socket(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_NONBLOCK | Libc.SOCK_CLOEXEC, 0);
        if (fd < 0)
            throw Fail(path, "socket() failed", Libc.Errno);
        try
        {
            while (true)
            {
                if (Libc.connect(fd, &address, addressLength) == 0)
                    return fd;
                int errno = Libc.Errno;
                if (errno == Libc.EINTR)
                    continue;
                if (errno == Libc.EINPROGRESS)
                {
                    WaitConnected(path, fd, timeoutMs, deadline);
                    return fd;
                }
                if (errno == Libc.EAGAIN)
                {
                    // A unix socket says EAGAIN when the listener's backlog is full: retry until the deadline.
                    if (Libc.RemainingMs(deadline) == 0)
                        throw TimedOut(path, timeoutMs);
                    Thread.Sleep(1);
                    continue;
                }
                string why = errno switch
                {
                    Libc.ENOENT => "no socket at that path (is the host running?)",
                    Libc.ECONNREFUSED => "nothing is listening there",
                    Libc.EACCES => "permission denied",
                    _ => "connect() failed",
                };
                throw Fail(path, why, errno);
            }
        }
        catch
        {
            Libc.close(fd);
            throw;
        }
    }

    private static void WaitConnected(string path, int fd, int timeoutMs, long deadline)
    {
        int r = Libc.WaitWritable(fd, deadline);
        if (r < 0)
            throw Fail(path, "poll() failed while connecting", Libc.Errno);
        if (r == 0)
            throw TimedOut(path, timeoutMs);
        int error = 0;
        uint len = sizeof(int);
        if (Libc.getsockopt(fd, Libc.SOL_SOCKET, Libc.SO_ERROR, &error, &len) != 0)
            throw Fail(path, "getsockopt(SO_ERROR) failed", Libc.Errno);
        if (error != 0)
            throw Fail(path, error == Libc.ECONNREFUSED ? "nothing is listening there" : "connect() failed", error);
    }

    private static int CreateSealedMemfd(string path, long size)
    {
        int fd;
        fixed (byte* name = "guesticd-ring\0"u8)
            fd = Libc.memfd_create(name, Libc.MFD_CLOEXEC | Libc.MFD_ALLOW_SEALING);
        if (fd < 0)
            throw Fail(path, "memfd_create failed", Libc.Errno);
        try
        {
            if (Libc.ftruncate(fd, size) != 0)
                throw Fail(path, $"ftruncate of the ring memory to {size} bytes failed", Libc.Errno);
            // The host maps this too; sealing the size means we can never make its mapping SIGBUS,
            // and it checks the seals before trusting the mapping.
            if (Libc.fcntl(fd, Libc.F_ADD_SEALS, Libc.F_SEAL_SHRINK | Libc.F_SEAL_GROW | Libc.F_SEAL_SEAL) != 0)
                throw Fail(path, "sealing the ring memory failed", Libc.Errno);
            return fd;
        }
        catch
        {
            Libc.close(fd);
            throw;
        }
    }

    private static void SendPreamble(string path, int socket, int memfd, int ringBytes, long heapBytes, int timeoutMs, long deadline)
    {
        byte* preamble = stackalloc byte[PreambleSize];
        WritePreamble(new Span<byte>(preamble, PreambleSize), PreambleVersion, (ulong)ringBytes, (ulong)heapBytes);

        int controlSize = Libc.CmsgSpace(sizeof(int));
        byte* control = stackalloc byte[controlSize];
        new Span<byte>(control, controlSize).Clear();
        var cmsg = (Libc.CmsgHdr*)control;
        cmsg->cmsg_len = (nuint)Libc.CmsgLen(sizeof(int));
        cmsg->cmsg_level = Libc.SOL_SOCKET;
        cmsg->cmsg_type = Libc.SCM_RIGHTS;
        *(int*)(control + Libc.CmsgDataOffset) = memfd;

        int sent = 0;
        while (sent < PreambleSize)
        {
            var iov = new Libc.IoVec { iov_base = preamble + sent, iov_len = (nuint)(PreambleSize - sent) };
            var msg = new Libc.MsgHdr { msg_iov = &iov, msg_iovlen = 1 };
            if (sent == 0)
            {
                // The fd rides on the first byte.
                msg.msg_control = control;
                msg.msg_controllen = (nuint)controlSize;
            }
            nint n = Libc.sendmsg(socket, &msg, Libc.MSG_NOSIGNAL);
            if (n > 0)
            {
                sent += (int)n;
                continue;
            }
            int errno = Libc.Errno;
            if (errno == Libc.EINTR)
                continue;
            if (errno != Libc.EAGAIN)
                throw Fail(path, "sending the ring memory to the host failed", errno);
            var pfd = new Libc.PollFd { fd = socket, events = Libc.POLLOUT };
            int r = Libc.poll(&pfd, 1, Libc.RemainingMs(deadline));
            if (r == 0)
                throw TimedOut(path, timeoutMs);
        }
    }

    internal static void WritePreamble(Span<byte> destination, uint version, ulong ringBytes, ulong heapBytes = 0)
    {
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(destination[24..], heapBytes);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(destination, PreambleMagic);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(destination[8..], version);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(destination[12..], 0); // reserved flags
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(destination[16..], ringBytes);
    }

    private static TransportClosedException Fail(string path, string what, int errno) =>
        new($"cannot connect to unix socket '{path}': {what} ({Libc.Describe(errno)})");

    private static TransportClosedException TimedOut(string path, int timeoutMs) =>
        new($"cannot connect to unix socket '{path}': timed out after {timeoutMs} ms");

    // ================================================================== ITransport

    public bool PeerClosed
    {
        get
        {
            if (_peerClosed || Volatile.Read(ref _disposed) != 0)
                return true;
            // An owned socket carries only doorbells, so its end is the peer's end: never read it here.
            if (PeerLiveness.HungUp(_socket, rdhup: _channel == Channel.OwnedSocket, out short revents))
                return true;
            if (_channel == Channel.HostVmSession && (revents & Libc.POLLIN) != 0)
            {
                // A VM channel outlives the session: its end is a byte (goodbye or the next preamble), so the
                // channel is drained here, unless one of our threads is already polling it and will do so.
                lock (_gate)
                {
                    if (!_pollerActive)
                    {
                        DrainDoorbells();
                        _wakeEpoch++;
                        Monitor.PulseAll(_gate);
                    }
                }
            }
            return _peerClosed;
        }
    }

    public void Write(ReadOnlySpan<byte> data)
    {
        ThrowIfUnusable();
        while (true)
        {
            data = data[_tx.Write(data)..];
            if (data.IsEmpty)
                return;
            // Ring full with more to go: let the consumer see what is there, then wait for room.
            Flush();
            if (!Wait(WaitFor.Room, 1, Libc.Deadline(WriteTimeoutMs)))
                throw new TransportClosedException(
                    $"{Description}: peer made no room in the ring for {WriteTimeoutMs} ms");
        }
    }

    public void Flush()
    {
        ThrowIfUnusable();
        int sleeper = _tx.PublishAndTakeSleeper();
        if (sleeper != 0)
            Wake(sleeper, _tx.ConsumerSleepingWord, throwIfClosed: true);
    }

    public bool ReadExactly(Span<byte> buffer, int timeoutMs)
    {
        ThrowIfDisposed();
        if (buffer.IsEmpty)
            return true;
        if (buffer.Length <= _rx.Capacity)
        {
            // All or nothing, so a timeout never leaves half a message consumed.
            if (_rx.Available < buffer.Length && !Wait(WaitFor.Data, buffer.Length, Libc.Deadline(timeoutMs)))
                return false;
            _rx.Read(buffer);
            int waiter = _rx.TakeProducerWaiter();
            if (waiter != 0)
                Wake(waiter, _rx.ProducerWaitingWord, throwIfClosed: false);
            return true;
        }
        return ReadLarge(buffer, timeoutMs);
    }

    /// <summary>A read bigger than the ring has to consume as it goes. Until the first byte is taken a
    /// timeout returns false; after that the stream is committed, each stall gets a fresh
    /// <paramref name="timeoutMs"/>, and a stall longer than that throws (the stream cannot be resynchronised).</summary>
    private bool ReadLarge(Span<byte> buffer, int timeoutMs)
    {
        int done = 0;
        long deadline = Libc.Deadline(timeoutMs);
        while (done < buffer.Length)
        {
            int n = _rx.Read(buffer[done..]);
            if (n > 0)
            {
                done += n;
                int waiter = _rx.TakeProducerWaiter();
                if (waiter != 0)
                    Wake(waiter, _rx.ProducerWaitingWord, throwIfClosed: false);
                deadline = Libc.Deadline(timeoutMs);
                continue;
            }
            if (!Wait(WaitFor.Data, 1, deadline))
            {
                if (done == 0)
                    return false;
                throw new TransportClosedException(
                    $"{Description}: peer stalled for {timeoutMs} ms after {done} of {buffer.Length} bytes of one read; the stream is out of sync");
            }
        }
        return true;
    }

    // ================================================================== waiting

    private bool IsReady(WaitFor what, int need) =>
        what == WaitFor.Data ? _rx.Available >= need : _tx.FreeSpace >= need;

    /// <summary>Waits until the ring has <paramref name="need"/> bytes (Data) or room (Room); false at
    /// <paramref name="deadline"/>; throws when the peer is gone and the condition cannot be met.</summary>
    private bool Wait(WaitFor what, int need, long deadline)
    {
        if (IsReady(what, need))
            return true;

        // Spin first: a busy peer answers within microseconds, and sleeping costs two syscalls on each side.
        // Between short spins the core is offered to whoever else is runnable on it (sched_yield): on a machine
        // with few cores that is often the peer, or the host driver's own thread, which this wait is waiting for.
        long start = Stopwatch.GetTimestamp();
        // Only waits that may block teach the spin: a poll with timeout 0 says nothing about the peer's latency.
        bool learn = deadline > start;
        long spinTicks = _spin.BudgetTicks;
        if (spinTicks > 0 && learn)
        {
            long spinEnd = Math.Min(start + spinTicks, deadline);
            while (true)
            {
                for (int i = 0; i < 4; i++)
                {
                    Thread.SpinWait(8);
                    if (IsReady(what, need))
                    {
                        _spin.Record(Stopwatch.GetTimestamp() - start);
                        return true;
                    }
                }
                if (Stopwatch.GetTimestamp() >= spinEnd)
                    break;
                Thread.Yield();
            }
        }
        bool ready = WaitSleeping(what, need, deadline);
        if (ready && learn)
            _spin.Record(Stopwatch.GetTimestamp() - start);
        return ready;
    }

    private bool WaitSleeping(WaitFor what, int need, long deadline)
    {
        while (true)
        {
            // Read the epoch before raising the flag: any doorbell drained after this point (by us or by
            // another sleeping thread of ours) bumps it, so Sleep will not block on an already-drained ring.
            long epoch = Volatile.Read(ref _wakeEpoch);
            // A futex only where the waker said it wakes one (a peer without futexes rings the socket).
            bool futex = _futex && (what == WaitFor.Data ? _rx.ProducerWakesFutex : _tx.ConsumerWakesFutex);
            int how = futex ? SharedRing.SleepsOnFutex : SharedRing.SleepsOnDoorbell;
            if (what == WaitFor.Data)
                _rx.BeginConsumerSleep(how);
            else
                _tx.BeginProducerWait(how);
            try
            {
                if (IsReady(what, need))
                    return true;
                if (_peerClosed)
                    throw Closed();
                int remaining = Libc.RemainingMs(deadline);
                if (remaining == 0)
                    return false;
                if (futex)
                    FutexSleep(what == WaitFor.Data ? _rx.ConsumerSleepingWord : _tx.ProducerWaitingWord, remaining);
                else
                    Sleep(epoch, remaining);
            }
            finally
            {
                if (what == WaitFor.Data)
                    _rx.EndConsumerSleep();
                else
                    _tx.EndProducerWait();
            }
        }
    }

    /// <summary>Blocks in FUTEX_WAIT on our raised flag until the peer takes it and wakes us, or a slice ends; a
    /// slice that ends with the flag still raised asks the socket whether the peer is gone. A wait without a
    /// deadline (<paramref name="timeoutMs"/> -1) sleeps in slices too: as Math.Min(-1, slice) it asked the
    /// kernel for a negative timeout, which fails at once, and every such wait spun a core in futex + poll.</summary>
    private void FutexSleep(int* flag, int timeoutMs)
    {
        Futex.Wait(flag, SharedRing.SleepsOnFutex, timeoutMs < 0 ? LivenessSliceMs : Math.Min(timeoutMs, LivenessSliceMs));
        if (Volatile.Read(ref *flag) == SharedRing.SleepsOnFutex && PeerLiveness.HungUp(_socket, rdhup: true, out _))
            _peerClosed = true;
    }

    /// <summary>Wakes the peer's sleeper whose flag this side took: a futex wake where it sleeps on one, else a
    /// doorbell byte.</summary>
    private void Wake(int how, int* flag, bool throwIfClosed)
    {
        if (how == SharedRing.SleepsOnFutex && Futex.Available)
            Futex.WakeAll(flag);
        else
            RingDoorbell(throwIfClosed);
    }

    /// <summary>Blocks until a doorbell, peer death or <paramref name="timeoutMs"/>, unless something was
    /// drained since <paramref name="epoch"/>.</summary>
    private void Sleep(long epoch, int timeoutMs)
    {
        lock (_gate)
        {
            if (_wakeEpoch != epoch)
                return;
            if (_pollerActive)
            {
                // Another of our threads polls the socket and will wake us whenever it drains a doorbell.
                Monitor.Wait(_gate, timeoutMs);
                return;
            }
            _pollerActive = true;
        }
        try
        {
            PollSocket(timeoutMs);
        }
        finally
        {
            lock (_gate)
            {
                _pollerActive = false;
                _wakeEpoch++;
                Monitor.PulseAll(_gate);
            }
        }
    }

    private void PollSocket(int timeoutMs)
    {
        Libc.PollFd* pfd = stackalloc Libc.PollFd[2];
        pfd[0] = new Libc.PollFd { fd = _socket, events = Libc.POLLIN };
        pfd[1] = new Libc.PollFd { fd = _wakeFd, events = Libc.POLLIN };
        int r = Libc.poll(pfd, _wakeFd >= 0 ? 2u : 1u, timeoutMs);
        if (r <= 0)
            return; // timeout or EINTR: the caller re-checks and recomputes the remaining time
        if (_wakeFd >= 0 && pfd[1].revents != 0)
        {
            _peerClosed = true; // Shutdown
            return;
        }
        if ((pfd[0].revents & Libc.POLLNVAL) != 0)
        {
            _peerClosed = true;
            return;
        }
        if (_peerClosed && _channel == Channel.HostVmSession)
            return; // the session is over: what follows on the channel belongs to the next one
        DrainDoorbells();
    }

    private nint ReadChannel(byte* buffer, int count) =>
        _channel == Channel.OwnedSocket ? Libc.recv(_socket, buffer, (nuint)count, Libc.MSG_DONTWAIT) : Libc.read(_socket, buffer, (nuint)count);

    private void DrainDoorbells()
    {
        byte* buffer = stackalloc byte[64];
        while (true)
        {
            nint n = ReadChannel(buffer, 64);
            if (n > 0 && _channel == Channel.HostVmSession && EndsSession(new ReadOnlySpan<byte>(buffer, (int)n)))
                return;
            if (n == 64)
                continue;
            if (n > 0)
                return; // fewer than asked: the socket is empty now
            if (n == 0)
            {
                _peerClosed = true; // orderly EOF: the peer closed or died
                return;
            }
            int errno = Libc.Errno;
            if (errno == Libc.EINTR)
                continue;
            if (errno != Libc.EAGAIN)
                _peerClosed = true;
            return;
        }
    }

    /// <summary>Host VM session: anything but doorbells ends the session. A goodbye (0x00) is the guest's
    /// orderly end; any other byte (normally the 'G' of the next preamble, from a guest process that died
    /// without goodbye) is kept, with everything after it, for the listener.</summary>
    private bool EndsSession(ReadOnlySpan<byte> bytes)
    {
        int i = bytes.IndexOfAnyExcept(VmDoorbell);
        if (i < 0)
            return false;
        _leftover = bytes[i] == VmGoodbye ? bytes[(i + 1)..].ToArray() : bytes[i..].ToArray();
        _peerClosed = true;
        return true;
    }

    private void RingDoorbell(bool throwIfClosed)
    {
        byte bell = VmDoorbell;
        while (true)
        {
            // Non-blocking: if the socket buffer is full the peer has unread doorbells already and will wake.
            nint n = _channel == Channel.OwnedSocket
                ? Libc.send(_socket, &bell, 1, Libc.MSG_DONTWAIT | Libc.MSG_NOSIGNAL)
                : Libc.write(_socket, &bell, 1);
            if (n == 1)
                return;
            int errno = Libc.Errno;
            if (errno == Libc.EINTR)
                continue;
            if (errno == Libc.EAGAIN)
                return;
            _peerClosed = true;
            if (throwIfClosed)
                throw Closed();
            return;
        }
    }

    // ================================================================== lifetime

    /// <summary>Ends the connection without releasing memory: the peer sees EOF, and this side's blocked or
    /// later Write/Flush/ReadExactly calls throw <see cref="TransportClosedException"/> (reads still get
    /// data that had already arrived). Safe to call from any thread; call <see cref="Dispose"/> after the
    /// other threads have left.</summary>
    public void Shutdown()
    {
        if (Volatile.Read(ref _disposed) != 0)
            return;
        _shutDown = true;
        _peerClosed = true;
        if (_futex)
        {
            // Our own futex sleepers: lower their flags (they return at once or are woken) and wake them.
            _rx.EndConsumerSleep();
            _tx.EndProducerWait();
            Interlocked.MemoryBarrier();
            Futex.WakeAll(_rx.ConsumerSleepingWord);
            Futex.WakeAll(_tx.ProducerWaitingWord);
        }
        switch (_channel)
        {
            case Channel.OwnedSocket:
                // Unlike close(), shutdown() wakes our own threads blocked in poll() on this socket.
                Libc.shutdown(_socket, Libc.SHUT_RDWR);
                break;
            case Channel.HostVmSession:
            {
                // The socket outlives this session: wake our pollers through the eventfd instead.
                ulong one = 1;
                Libc.write(_wakeFd, &one, sizeof(ulong));
                break;
            }
            default:
                // A char device has no shutdown; blocked polls end at their timeout or the next doorbell.
                break;
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        _shutDown = true;
        switch (_channel)
        {
            case Channel.OwnedSocket:
                Libc.shutdown(_socket, Libc.SHUT_RDWR);
                Libc.close(_socket);
                break;
            case Channel.GuestCharDevice:
                SendGoodbye();
                Libc.close(_socket);
                break;
            case Channel.HostVmSession:
                Libc.close(_wakeFd);
                break;
        }
        if (_memfd >= 0)
            Libc.close(_memfd);
        if (ReleaseRegion is { } release)
            release();
        else
            Libc.munmap(_region, _regionSize);
        _onSessionEnd?.Invoke(_leftover);
    }

    /// <summary>Guest: tells the host this session is over (the port stays open on the host side, so it
    /// would otherwise not know). Waits up to a second for room; a host that reads nothing gets nothing.</summary>
    private void SendGoodbye()
    {
        byte bye = VmGoodbye;
        long deadline = Libc.Deadline(1000);
        while (true)
        {
            nint n = Libc.write(_socket, &bye, 1);
            if (n == 1)
                return;
            int errno = Libc.Errno;
            if (errno == Libc.EINTR)
                continue;
            if (errno != Libc.EAGAIN || Libc.RemainingMs(deadline) == 0)
                return;
            var pfd = new Libc.PollFd { fd = _socket, events = Libc.POLLOUT };
            Libc.poll(&pfd, 1, Libc.RemainingMs(deadline));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ThrowIfDisposed()
    {
        if (_disposed != 0)
            ThrowDisposed();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ThrowIfUnusable()
    {
        if (_disposed != 0)
            ThrowDisposed();
        if (_peerClosed)
            throw Closed();
    }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowDisposed() => throw new ObjectDisposedException(Description);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private TransportClosedException Closed() =>
        new(_shutDown ? $"{Description}: transport was shut down" : $"{Description}: peer closed the connection");
}
