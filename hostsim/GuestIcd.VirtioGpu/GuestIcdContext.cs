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
public sealed unsafe partial class GuestIcdContext : IGpuContext
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
    private byte* _rings;
    private ulong _ringsLength;
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
        ulong rings = (ulong)UnixRingTransport.SharedSize((int)ringBytes) + heapBytes;
        var control = _resources.MapBacking(resource, 0, ControlBytes, out failure);
        if (control is null)
            return SubmitOutcome.Failed;
        var rest = _resources.MapBacking(resource, ControlBytes, rings, out failure);
        if (rest is null)
        {
            control.Dispose();
            return SubmitOutcome.Failed;
        }
        int* sv = stackalloc int[2];
        if (socketpair(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC | Libc.SOCK_NONBLOCK, 0, sv) != 0)
        {
            failure = $"socketpair failed ({Libc.Describe(Libc.Errno)})";
            control.Dispose();
            rest.Dispose();
            return SubmitOutcome.Failed;
        }
        _control = control;
        _resource = resource;
        _ringsLength = rest.Length;
        _ringBytesShared = (ulong)UnixRingTransport.SharedSize((int)ringBytes);
        _rings = rest.Release();
        _bell = sv[1];
        _mapping = _rings;
        var transport = new UnixRingTransport(sv[0], _rings, (nuint)_ringsLength, (int)ringBytes, isHost: true,
            $"virtio-gpu context {_info.ContextId} ({_info.DebugName}; ring {ringBytes} B, heap {heapBytes >> 20} MiB)", (long)heapBytes)
        {
            // The mapping is this context's: it is unmapped when both the session and the context are done,
            // and never swapped after the session let go of it.
            ReleaseRegion = () => Release(session: true),
        };
        Volatile.Write(ref *(uint*)_control.Pointer, ControlRunning);
        _log.LogInformation("virtio-gpu: context {Context} ({Name}) starts a session on resource {Resource}", _info.ContextId, _info.DebugName, resource);
        _offer(transport);
        return SubmitOutcome.Done;
    }

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

    /// <summary>Swaps the session's view of the guest pages for private memory, so a host still finishing
    /// its work can no longer touch pages the guest frees once this returns (its kernel frees a resource's
    /// pages when the unref is answered). The rings are copied first and moved in whole (mremap), so the
    /// session still reads what the guest wrote before it went (its last destroys); the heap becomes zeros.</summary>
    private void Detach()
    {
        lock (_mapLock)
            DetachLocked();
    }

    private readonly object _mapLock = new();
    private byte* _mapping;
    private bool _sessionDone, _contextDone;

    /// <summary>One of the two users of the mapping (the session, this context) is done with it; the last unmaps.</summary>
    private void Release(bool session)
    {
        lock (_mapLock)
        {
            if (session) _sessionDone = true;
            else _contextDone = true;
            if (_sessionDone && _contextDone && _mapping != null)
            {
                Libc.munmap(_mapping, (nuint)_ringsLength);
                _mapping = null;
                _rings = null;
            }
        }
    }

    private void DetachLocked()
    {
        if (_rings == null || _sessionDone)
            return;
        nuint ringPart = (nuint)_ringBytesShared, heapPart = (nuint)(_ringsLength - _ringBytesShared);
        void* copy = Libc.mmap(null, ringPart, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS, -1, 0);
        if (copy != Libc.MAP_FAILED)
        {
            Buffer.MemoryCopy(_rings, copy, ringPart, ringPart);
            if (mremap(copy, ringPart, ringPart, 3 /* MREMAP_MAYMOVE | MREMAP_FIXED */, _rings) == Libc.MAP_FAILED)
            {
                Libc.munmap(copy, ringPart);
                heapPart += ringPart;
                ringPart = 0;
            }
        }
        else
        {
            heapPart += ringPart;
            ringPart = 0;
        }
        if (heapPart > 0)
            Libc.mmap(_rings + ringPart, heapPart, Libc.PROT_READ | Libc.PROT_WRITE,
                Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS | Libc.MAP_FIXED | Libc.MAP_NORESERVE, -1, 0);
        _rings = null; // unmapped by Release once the session is done too
    }

    private ulong _ringBytesShared;

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "mremap", SetLastError = true)]
    private static partial void* mremap(void* oldAddress, nuint oldSize, nuint newSize, int flags, void* newAddress);

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

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "socketpair", SetLastError = true)]
    private static partial int socketpair(int domain, int type, int protocol, int* sv);
}
