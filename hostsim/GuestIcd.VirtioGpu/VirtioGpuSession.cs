using GuestIcd.Transport.Native;
using GuestIcd.Transport;

namespace GuestIcd.VirtioGpu;

/// <summary>What a worker process needs to serve a virtio-gpu context's session (beside its fds: the doorbell
/// socket, the let-go socket, then <see cref="MemoryFds"/> guest RAM memfds).</summary>
/// <param name="Runs">The session's guest pages, in order; each <see cref="FileRun.Fd"/> is an index into the memfds.</param>
public sealed record VirtioGpuHandoff(UnixRingTransport.Handoff Ring, FileRun[] Runs, int MemoryFds);

/// <summary>
/// The host end of one virtio-gpu context's session (<see cref="GuestIcdContext"/>): its rings and heap are the
/// guest's own pages, mapped in the backend process. Served in the backend (<c>--in-process</c>) or handed to a
/// worker process with <see cref="HandOff"/>.
/// </summary>
/// <remarks>
/// The worker maps the same guest pages itself from the guest RAM memfds (sent with SCM_RIGHTS), so the rings
/// and HOST_VISIBLE heap stay zero-copy in the worker too: relaying the command stream through a socketpair
/// would copy every message and could not give the host driver the guest's heap pages at all. It closes the
/// memfds once the pages are mapped, before it decodes any guest command. The doorbell socketpair carries
/// wake-ups only, as in-process; a second socketpair carries "let go": when the guest frees the pages (its
/// context or resource goes), the backend asks the worker to swap them for private memory before it answers
/// the guest, and kills the worker if no answer comes.
/// </remarks>
public sealed unsafe class VirtioGpuSession : ITransport, ISharedHeap
{
    /// <summary>The let-go request and its answer on the worker's second socket.</summary>
    internal const byte LetGo = (byte)'D', LetGoDone = (byte)'A';

    /// <summary>Most guest RAM memfds a hand-off carries (vhost-user has at most 8 regions; QEMU uses one or two).</summary>
    public const int MaxMemoryFds = 5;

    private readonly UnixRingTransport _ring;
    private readonly GuestIcdContext _context;

    internal VirtioGpuSession(UnixRingTransport ring, GuestIcdContext context)
    {
        _ring = ring;
        _context = context;
    }

    public string Description => _ring.Description;
    public bool PeerClosed => _ring.PeerClosed;
    public byte* HeapBase => _ring.HeapBase;
    public long HeapBytes => _ring.HeapBytes;

    public void Write(ReadOnlySpan<byte> data) => _ring.Write(data);
    public void Flush() => _ring.Flush();
    public bool ReadExactly(Span<byte> buffer, int timeoutMs) => _ring.ReadExactly(buffer, timeoutMs);

    /// <summary>Stops serving the session here and returns what a worker needs (<see cref="VirtioGpuWorkerSession.Resume"/>):
    /// <paramref name="fds"/> are the doorbell socket, the let-go socket and the memfds, all the caller's to send and
    /// close. <paramref name="killWorker"/> ends the worker when it does not let go of the guest's pages in time.
    /// Throws <see cref="TransportClosedException"/> when the context has gone meanwhile (its pages are no longer
    /// the session's).</summary>
    public VirtioGpuHandoff HandOff(Action killWorker, out int[] fds) => _context.HandOff(_ring, killWorker, out fds);

    public void Dispose() => _ring.Dispose();
}

/// <summary>The worker's end of a handed-off virtio-gpu session (<see cref="VirtioGpuSession.HandOff"/>).</summary>
public static unsafe class VirtioGpuWorkerSession
{
    /// <summary>Maps the session's guest pages, closes the memfds and continues the session on them.
    /// Takes every fd, including on failure.</summary>
    public static UnixRingTransport Resume(VirtioGpuHandoff handoff, int doorbellFd, int letGoFd, ReadOnlySpan<int> memfds)
    {
        ContiguousMapping? mapping = null;
        string? error = null;
        try
        {
            if (memfds.Length != handoff.MemoryFds || handoff.Runs.Length == 0)
                error = $"{handoff.Runs.Length} runs over {memfds.Length} memfds (expected {handoff.MemoryFds})";
            else
            {
                var runs = new FileRun[handoff.Runs.Length];
                for (int i = 0; i < runs.Length && error is null; i++)
                {
                    var r = handoff.Runs[i];
                    if ((uint)r.Fd >= (uint)memfds.Length || r.Length <= 0 || r.Offset < 0 || ((r.Offset | r.Length) & 4095) != 0)
                        error = $"run {i} ({r.Fd}: {r.Offset}+{r.Length}) is not whole pages of a handed-off memfd";
                    else
                        runs[i] = r with { Fd = memfds[r.Fd] };
                }
                if (error is null)
                    mapping = GuestMemory.MapFileRuns(runs, out error);
            }
        }
        finally
        {
            // From here on the worker holds only its own pages of guest RAM, not the VM's whole memory.
            foreach (int fd in memfds)
                Libc.close(fd);
        }
        if (mapping is null)
        {
            Libc.close(doorbellFd);
            Libc.close(letGoFd);
            throw new TransportClosedException($"{handoff.Ring.Description}: cannot map the handed-off guest pages ({error})");
        }
        ulong ringPart = (ulong)UnixRingTransport.SharedSize(handoff.Ring.RingBytes);
        var pages = new SessionPages(mapping.Release(), mapping.Length, ringPart);
        UnixRingTransport ring;
        try
        {
            ring = UnixRingTransport.ResumeShared(handoff.Ring, doorbellFd, pages.Base, (nuint)pages.Length, pages.Unmap);
        }
        catch
        {
            pages.Unmap();
            Libc.close(letGoFd);
            throw;
        }
        new Thread(() => AnswerLetGo(letGoFd, pages)) { IsBackground = true, Name = "virtio-gpu let-go" }.Start();
        return ring;
    }

    /// <summary>Runs beside the session (which may be busy in the driver): the backend's request to let go of the
    /// guest's pages is answered at once, whatever the session is doing.</summary>
    private static void AnswerLetGo(int fd, SessionPages pages)
    {
        byte b;
        while (true)
        {
            nint n = Libc.recv(fd, &b, 1, 0);
            if (n < 0 && Libc.Errno == Libc.EINTR)
                continue;
            if (n <= 0)
                break;
            if (b != VirtioGpuSession.LetGo)
                continue;
            pages.Privatise();
            byte done = VirtioGpuSession.LetGoDone;
            Libc.send(fd, &done, 1, Libc.MSG_NOSIGNAL);
        }
        Libc.close(fd);
    }
}

/// <summary>A session's view of the guest pages (rings, then heap), used by two parties: the session, and whoever
/// must take the pages away from it when the guest frees them (<see cref="Privatise"/>). The last one unmaps.</summary>
internal sealed unsafe partial class SessionPages(byte* pages, ulong length, ulong ringPart)
{
    private readonly object _lock = new();
    private byte* _base = pages;
    private bool _private;

    public byte* Base => _base;
    public ulong Length { get; } = length;

    /// <summary>Swaps the view of the guest pages for private memory, so a host still finishing its work can no
    /// longer touch pages the guest frees once this returns (its kernel frees a resource's pages when the unref is
    /// answered). The rings are copied first and moved in whole (mremap), so the session still reads what the
    /// guest wrote before it went (its last destroys); the heap becomes zeros.</summary>
    public void Privatise()
    {
        lock (_lock)
        {
            if (_base == null || _private)
                return;
            _private = true;
            nuint ringBytes = (nuint)ringPart, heapBytes = (nuint)(Length - ringPart);
            void* copy = Libc.mmap(null, ringBytes, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS, -1, 0);
            if (copy != Libc.MAP_FAILED)
            {
                Buffer.MemoryCopy(_base, copy, ringBytes, ringBytes);
                if (Mremap(copy, ringBytes, ringBytes, 3 /* MREMAP_MAYMOVE | MREMAP_FIXED */, _base) == Libc.MAP_FAILED)
                {
                    Libc.munmap(copy, ringBytes);
                    heapBytes += ringBytes;
                    ringBytes = 0;
                }
            }
            else
            {
                heapBytes += ringBytes;
                ringBytes = 0;
            }
            if (heapBytes > 0)
                Libc.mmap(_base + ringBytes, heapBytes, Libc.PROT_READ | Libc.PROT_WRITE,
                    Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS | Libc.MAP_FIXED | Libc.MAP_NORESERVE, -1, 0);
        }
    }

    public void Unmap()
    {
        lock (_lock)
        {
            if (_base == null)
                return;
            Libc.munmap(_base, (nuint)Length);
            _base = null;
        }
    }

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "mremap", SetLastError = true)]
    private static partial void* Mremap(void* oldAddress, nuint oldSize, nuint newSize, int flags, void* newAddress);
}
