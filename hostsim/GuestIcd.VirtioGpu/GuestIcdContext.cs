using GuestIcd.Transport.Native;
using System.Buffers.Binary;
using GuestIcd.Transport;
using Microsoft.Extensions.Logging;

namespace GuestIcd.VirtioGpu;

/// <summary>Turns each context of our capset into a guest session (<see cref="GuestIcdContext"/>).</summary>
/// <param name="offer">Where a session goes once its rings are mapped (the listener's Accept).</param>
public sealed class GuestIcdContextHost(Action<ITransport> offer, ILogger log, long maxHeapBytes = 256L << 20) : IGpuContextHost
{
    public IGpuContext? Open(GpuContextInfo info, GpuContextResources resources, out string? refusal)
    {
        refusal = null;
        return new GuestIcdContext(info, resources, offer, log, maxHeapBytes);
    }
}

/// <summary>
/// The host side of one guest process on the virtio-gpu transport (guest: VirtioGpuTransport). INIT names a
/// resource of the context holding a control page, the two rings and the heap; its guest pages are mapped
/// here contiguously and become a <see cref="UnixRingTransport"/> whose doorbells go through a socketpair:
/// DOORBELL writes a byte for the session, and a byte from the session answers the guest's held WAIT.
/// When the context goes (destroyed, the process died, its resource released) the mapping is swapped for
/// anonymous memory before the guest can reuse the pages, and the session sees its peer gone.
/// </summary>
public sealed unsafe class GuestIcdContext : IGpuContext
{
    /// <summary>NOP {u32 0}: nothing, at any time (a fence to wait on, a probe of the device).</summary>
    public const uint OpNop = 0, OpInit = 1, OpDoorbell = 2, OpWait = 3;
    public const uint ControlRunning = 1, ControlEnded = 2;
    private const int ControlBytes = 4096;

    private readonly GpuContextInfo _info;
    private readonly GpuContextResources _resources;
    private readonly Action<ITransport> _offer;
    private readonly ILogger _log;
    private readonly long _maxHeapBytes;
    private ContiguousMapping? _control;
    private SessionPages? _pages;
    private uint _resource;
    private int _bell = -1;
    private bool _pending;
    private bool _ended;

    internal GuestIcdContext(GpuContextInfo info, GpuContextResources resources, Action<ITransport> offer, ILogger log, long maxHeapBytes)
    {
        _info = info;
        _resources = resources;
        _offer = offer;
        _log = log;
        _maxHeapBytes = maxHeapBytes;
    }

    /// <summary>After the end has been reported once, the (shut down) socket is not polled again.</summary>
    public int WakeFd => _endReported ? -1 : _bell;

    private bool _endReported;

    public SubmitOutcome Submit(ReadOnlySpan<byte> commands, out string? failure)
    {
        failure = null;
        if (commands.Length < 4)
        {
            failure = $"a {commands.Length}-byte command";
            return SubmitOutcome.Failed;
        }
        uint op = BinaryPrimitives.ReadUInt32LittleEndian(commands);
        switch (op)
        {
            case OpNop:
                return SubmitOutcome.Done;
            case OpInit:
                return Init(commands, out failure);
            case OpDoorbell:
                if (_bell < 0)
                    break;
                if (!_ended)
                {
                    byte one = 1;
                    // Non-blocking: a full socketpair already holds a doorbell the session has not read.
                    Libc.send(_bell, &one, 1, Libc.MSG_DONTWAIT | Libc.MSG_NOSIGNAL);
                }
                return SubmitOutcome.Done;
            case OpWait:
                if (_bell < 0)
                    break;
                if (_pending || _ended)
                {
                    _pending = false;
                    return SubmitOutcome.Done;
                }
                return SubmitOutcome.Hold;
        }
        failure = _bell < 0 && op is OpDoorbell or OpWait ? $"command {op} before INIT" : $"unknown command {op}";
        return SubmitOutcome.Failed;
    }

    private SubmitOutcome Init(ReadOnlySpan<byte> c, out string? failure)
    {
        failure = null;
        if (_bell >= 0 || _ended)
            failure = "INIT twice";
        else if (c.Length < 24)
            failure = $"a {c.Length}-byte INIT";
        if (failure is not null)
            return SubmitOutcome.Failed;
        uint resource = BinaryPrimitives.ReadUInt32LittleEndian(c[4..]);
        uint ringBytes = BinaryPrimitives.ReadUInt32LittleEndian(c[8..]);
        ulong heapBytes = BinaryPrimitives.ReadUInt64LittleEndian(c[16..]);
        if (ringBytes < UnixRingTransport.MinRingBytes || ringBytes > 16u << 20 || !SharedRing.IsValidCapacity((int)ringBytes))
            failure = $"a {ringBytes}-byte ring (a power of two from {UnixRingTransport.MinRingBytes} to 16 MiB)";
        else if (heapBytes % 4096 != 0 || heapBytes > (ulong)_maxHeapBytes)
            failure = $"a {heapBytes}-byte heap (whole pages, at most {_maxHeapBytes >> 20} MiB)";
        if (failure is not null)
            return SubmitOutcome.Failed;
        ulong ringPart = (ulong)UnixRingTransport.SharedSize((int)ringBytes), rings = ringPart + heapBytes;
        // Where the pages lie in guest RAM's memfds, with copies of those fds: what a worker needs to map them too.
        var runs = _resources.BackingFileRuns(resource, ControlBytes, rings, out failure);
        if (runs is null)
            return SubmitOutcome.Failed;
        var fds = new List<int>();
        var sources = new List<int>();
        for (int i = 0; i < runs.Length; i++)
        {
            int at = sources.IndexOf(runs[i].Fd);
            if (at < 0)
            {
                int dup = Libc.fcntl(runs[i].Fd, 1030 /* F_DUPFD_CLOEXEC */, 0);
                if (dup < 0 || fds.Count == VirtioGpuSession.MaxMemoryFds)
                {
                    failure = dup < 0 ? $"dup of a guest RAM memfd failed ({Libc.Describe(Libc.Errno)})" : $"the pages lie in more than {VirtioGpuSession.MaxMemoryFds} guest RAM regions";
                    if (dup >= 0) Libc.close(dup);
                    foreach (int fd in fds) Libc.close(fd);
                    return SubmitOutcome.Failed;
                }
                sources.Add(runs[i].Fd);
                fds.Add(dup);
                at = fds.Count - 1;
            }
            runs[i] = runs[i] with { Fd = at };
        }
        var control = _resources.MapBacking(resource, 0, ControlBytes, out failure);
        var rest = control is null ? null : _resources.MapBacking(resource, ControlBytes, rings, out failure);
        int* sv = stackalloc int[2];
        if (rest is not null && Libc.socketpair(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC | Libc.SOCK_NONBLOCK, 0, sv) != 0)
        {
            failure = $"socketpair failed ({Libc.Describe(Libc.Errno)})";
            rest.Dispose();
            rest = null;
        }
        if (rest is null)
        {
            control?.Dispose();
            foreach (int fd in fds) Libc.close(fd);
            return SubmitOutcome.Failed;
        }
        _control = control;
        _resource = resource;
        _runs = runs;
        _runFds = fds.ToArray();
        _pages = new SessionPages(rest.Release(), rest.Length, ringPart);
        _bell = sv[1];
        var transport = new UnixRingTransport(sv[0], _pages.Base, (nuint)_pages.Length, (int)ringBytes, isHost: true,
            $"virtio-gpu context {_info.ContextId} ({_info.DebugName}; ring {ringBytes} B, heap {heapBytes >> 20} MiB)", (long)heapBytes)
        {
            // The mapping is this context's: it is unmapped when both the session and the context are done,
            // and never swapped after the session let go of it.
            ReleaseRegion = () => Release(session: true),
        };
        Volatile.Write(ref *(uint*)_control!.Pointer, ControlRunning);
        _log.LogInformation("virtio-gpu: context {Context} ({Name}) starts a session on resource {Resource}", _info.ContextId, _info.DebugName, resource);
        _offer(new VirtioGpuSession(transport, this));
        return SubmitOutcome.Done;
    }

    private FileRun[] _runs = [];
    private int[] _runFds = [];

    public bool OnWake(bool holding)
    {
        if (_ended)
        {
            _endReported = true;
            return true;
        }
        byte* buffer = stackalloc byte[64];
        nint n = Libc.recv(_bell, buffer, 64, Libc.MSG_DONTWAIT);
        if (n == 0 || (n < 0 && Libc.Errno is not (Libc.EINTR or Libc.EAGAIN)))
        {
            // The session ended (or its worker died): the guest learns it at its next wake-up.
            End("the session ended");
            _endReported = true;
            return true;
        }
        if (n < 0)
            return false;
        if (!holding)
            _pending = true;
        return holding;
    }

    public void OnResourceReleased(uint resourceId)
    {
        if (resourceId == _resource && _bell >= 0 && !_ended)
        {
            _log.LogWarning("virtio-gpu: context {Context} ({Name}) released its shared resource {Resource}; its session ends", _info.ContextId, _info.DebugName, resourceId);
            Detach();
            End("its shared resource was released");
        }
    }

    /// <summary>Takes the guest's pages away from the session (<see cref="SessionPages.Privatise"/>) before the
    /// guest may reuse them: here, or in the worker serving it, which is killed if it does not answer in time.</summary>
    private void Detach()
    {
        lock (_mapLock)
        {
            if (_letGoFd >= 0)
                AskWorkerToLetGo();
            else if (!_sessionDone)
                _pages?.Privatise();
        }
    }

    private readonly object _mapLock = new();
    private bool _sessionDone, _contextDone;
    /// <summary>Once handed to a worker: the socket that asks it to let go of the pages, and how to kill it.</summary>
    private int _letGoFd = -1;
    private Action? _killWorker;
    private const int LetGoTimeoutMs = 2000;

    /// <summary>One of the two users of the mapping (the session, this context) is done with it; the last unmaps.</summary>
    private void Release(bool session)
    {
        lock (_mapLock)
        {
            if (session) _sessionDone = true;
            else _contextDone = true;
            if (_sessionDone && _contextDone)
                _pages?.Unmap();
        }
    }

    /// <summary><see cref="VirtioGpuSession.HandOff"/>: the pages, the doorbell and the memfds go to a worker.</summary>
    internal VirtioGpuHandoff HandOff(UnixRingTransport ring, Action killWorker, out int[] fds)
    {
        lock (_mapLock)
        {
            if (_ended || _pages is null || _runFds.Length == 0)
                throw new TransportClosedException($"{ring.Description}: the context ended before its session could be handed to a worker");
            int* lp = stackalloc int[2];
            if (Libc.socketpair(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC, 0, lp) != 0)
                throw new IOException($"socketpair failed ({Libc.Describe(Libc.Errno)})");
            var state = ring.DetachShared(out int doorbell);
            // This process never reads the rings again; the worker maps the pages itself.
            _pages.Unmap();
            _letGoFd = lp[1];
            _killWorker = killWorker;
            fds = [doorbell, lp[0], .. _runFds];
            _runFds = [];
            return new VirtioGpuHandoff(state, _runs, fds.Length - 2);
        }
    }

    private void AskWorkerToLetGo()
    {
        int fd = _letGoFd;
        _letGoFd = -1;
        byte b = VirtioGpuSession.LetGo;
        if (Libc.send(fd, &b, 1, Libc.MSG_NOSIGNAL | Libc.MSG_DONTWAIT) == 1)
        {
            // EOF means every copy of the worker's end is closed: it has exited, and its memory went first.
            if (WaitByte(fd, LetGoTimeoutMs, out bool eof))
            {
                Libc.close(fd);
                return;
            }
            _log.LogWarning("virtio-gpu: context {Context} ({Name}): its worker did not let go of the guest's pages within {Ms} ms; killed",
                _info.ContextId, _info.DebugName, LetGoTimeoutMs);
            _killWorker?.Invoke();
            long deadline = Environment.TickCount64 + 10_000;
            while (Environment.TickCount64 < deadline && !(WaitByte(fd, 1000, out eof) && eof)) { }
        }
        Libc.close(fd);
    }

    /// <summary>Waits for one byte or EOF on <paramref name="fd"/>; false on timeout.</summary>
    private static bool WaitByte(int fd, int timeoutMs, out bool eof)
    {
        eof = false;
        var pfd = new Libc.PollFd { fd = fd, events = Libc.POLLIN };
        long deadline = Environment.TickCount64 + timeoutMs;
        while (true)
        {
            int r = Libc.poll(&pfd, 1, (int)Math.Max(0, deadline - Environment.TickCount64));
            if (r < 0 && Libc.Errno == Libc.EINTR)
                continue;
            if (r <= 0)
                return false;
            byte got;
            nint n = Libc.recv(fd, &got, 1, Libc.MSG_DONTWAIT);
            if (n < 0 && Libc.Errno is Libc.EINTR or Libc.EAGAIN)
                continue;
            eof = n <= 0;
            return true;
        }
    }

    private void End(string why)
    {
        if (_ended)
            return;
        _ended = true;
        // A last doorbell first: a guest process that exited right after queueing its last messages (its
        // relay thread died before it could ring) still has them read from the rings; then the session sees
        // its peer gone, and the device sees the socket readable and answers a held WAIT.
        if (_bell >= 0)
        {
            byte one = 1;
            Libc.send(_bell, &one, 1, Libc.MSG_DONTWAIT | Libc.MSG_NOSIGNAL);
            Libc.shutdown(_bell, 1 /* SHUT_WR: the session reads the doorbell, then EOF */);
        }
        if (_control is not null)
        {
            Volatile.Write(ref *(uint*)_control.Pointer, ControlEnded);
            _control.Dispose();
            _control = null;
        }
        _log.LogInformation("virtio-gpu: context {Context} ({Name}): {Why}", _info.ContextId, _info.DebugName, why);
    }

    public void Dispose()
    {
        Detach();
        Release(session: false);
        foreach (int fd in _runFds)
            Libc.close(fd);
        _runFds = [];
        if (_bell >= 0)
            End("the context was destroyed");
        _ended = true;
        _control?.Dispose();
        _control = null;
        if (_bell >= 0)
        {
            Libc.shutdown(_bell, 2);
            Libc.close(_bell);
            _bell = -1;
        }
    }
}
