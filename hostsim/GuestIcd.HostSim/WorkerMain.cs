using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text.Json;
using GuestIcd.Transport;
using Microsoft.Extensions.Logging;
using GuestIcd.Transport.Native;

namespace GuestIcd.HostSim;

/// <summary>
/// <c>guesticd-hostsim worker</c>: one guest session in a process of its own (see <see cref="Supervisor"/>).
/// Hardens itself, connects back to its parent, warms up, waits for its session, applies the session's
/// resource limits and runs the command loop; its log lines go to the parent's stdout.
/// </summary>
internal static unsafe class WorkerMain
{
    /// <summary>A virtio-gpu assignment lists its context's guest page runs: a 128 MiB heap on scattered pages is
    /// tens of thousands of them.</summary>
    const int MaxAssignmentBytes = 16 << 20;

    public static int Run(ILoggerFactory logs)
    {
        var log = logs.CreateLogger("hostsim");
        if (!int.TryParse(Environment.GetEnvironmentVariable("GUESTICD_WORKER_PARENT"), out int parent)
            || Environment.GetEnvironmentVariable("GUESTICD_WORKER_CONTROL") is not { Length: > 0 } control
            || Environment.GetEnvironmentVariable("GUESTICD_WORKER_TOKEN") is not { Length: > 0 } token)
        {
            log.LogError("worker: started without its supervisor (this subcommand is hostsim's own)");
            return 2;
        }
        // Die with the parent; then check it is not already gone (it could have died before the prctl).
        WorkerNative.prctl(WorkerNative.PR_SET_PDEATHSIG, WorkerNative.SIGKILL, 0, 0, 0);
        if (WorkerNative.getppid() != parent) return 3;
        Harden();
        WorkerPriority.AllowReturn();

        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint("\0" + control));
        WorkerNative.SendExactly((int)socket.Handle, System.Text.Encoding.ASCII.GetBytes(token));
        Environment.SetEnvironmentVariable("GUESTICD_WORKER_TOKEN", null);

        if (Environment.GetEnvironmentVariable("GUESTICD_WORKER_CRASH_ON_SIGUSR2") == "1") ArmCrashSignal();

        // The warm-up runs beside the wait for a session and stops when one arrives.
        bool assigned = false;
        // Held while the warm-up writes to the control socket, so that it never writes to the number of a
        // descriptor closed (and maybe reused for the guest's) once the session has arrived.
        var controlLock = new object();
        var warmUp = new WarmUpThread();
        var warm = new Thread(() => WarmUp(log, socket, controlLock, () => Volatile.Read(ref assigned), warmUp)) { IsBackground = true, Name = "warm-up" };
        warm.Start();
        var fds = new List<int>();
        byte[]? body;
        try { body = WorkerNative.ReceiveMessage((int)socket.Handle, MaxAssignmentBytes, fds); }
        catch (Exception e) when (e is IOException or EndOfStreamException)
        {
            log.LogError("worker: no session from the supervisor ({Error})", e.Message);
            return 4;
        }
        finally
        {
            lock (controlLock) Volatile.Write(ref assigned, true);
        }
        warmUp.Restore(log);
        // Not joined: a warm-up cut short ends its replayed session at its next command and tears it down
        // beside the guest's session, back at the session's priority (WarmUpThread: at nice 19 the locks it
        // held kept the session waiting). It shares nothing with the guest's session but the process.
        // The control socket's only job was the assignment.
        socket.Dispose();
        if (body is null) return 0; // the supervisor stopped while we were warm
        var assignment = JsonSerializer.Deserialize(body, WorkerJson.Default.WorkerAssignment) ?? throw new InvalidDataException("empty assignment");
        int expected = assignment.Kind switch
        {
            "ring" or "vm" => 3,
            "virtio-gpu" => 3 + (assignment.VirtioGpu?.MemoryFds ?? throw new InvalidDataException("virtio-gpu assignment without its pages")),
            _ => 2,
        };
        if (fds.Count != expected) throw new InvalidDataException($"assignment {assignment.Kind} came with {fds.Count} fds, not {expected}");

        ApplyLimits(WorkerLimits.For(assignment.Options), log, assignment.Session);
        using var status = WorkerStatus.Open(fds[^1]);
        ITransport transport = assignment.Kind switch
        {
            "ring" => UnixRingTransport.Resume(assignment.Ring ?? throw new InvalidDataException("ring assignment without ring state"), fds[0], fds[1]),
            // The doorbells come relayed over a socketpair; the rings and heap are the vm's shared file.
            "vm" => UnixRingTransport.Resume(assignment.Ring ?? throw new InvalidDataException("vm assignment without ring state"), fds[0], fds[1], sealedMemfd: false),
            // The context's guest pages, mapped here from guest RAM's memfds; the doorbells come from the device.
            "virtio-gpu" => GuestIcd.VirtioGpu.VirtioGpuWorkerSession.Resume(assignment.VirtioGpu!, fds[0], fds[1], fds.GetRange(2, fds.Count - 3).ToArray()),
            _ => PipeTransport.OverSocket(fds[0], assignment.Description),
        };
        var session = new Session(assignment.Session, transport, assignment.Options, log) { Progress = status.Page, Counters = status.Counters };
        using (session) session.Run();
        // A warm-up cut short by a short session may still be tearing its replay down, in the driver. The
        // process's exit handlers (the driver's among them) must not run under it: they can wait for its
        // threads. Everything the guest made is destroyed already; the kernel frees the rest.
        if (warm.IsAlive && !warm.Join(500))
        {
            logs.Dispose();
            WorkerNative._exit(0);
        }
        return 0;
    }

    /// <summary>No privilege gain through exec, no core files of guest-controlled memory, and no fd it
    /// did not ask for: everything the runtime opens is close-on-exec, so a descriptor without that flag
    /// was inherited from whoever started hostsim.</summary>
    static void Harden()
    {
        WorkerNative.prctl(WorkerNative.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        var core = new WorkerNative.RLimit { Current = 0, Max = 0 };
        WorkerNative.setrlimit(WorkerNative.RLIMIT_CORE, &core);
        fixed (byte* devNull = "/dev/null\0"u8)
        {
            int fd = Libc.open(devNull, Libc.O_RDWR | Libc.O_CLOEXEC, 0);
            if (fd >= 0)
            {
                WorkerNative.dup2(fd, 0); // stdin is nobody's business here
                Libc.close(fd);
            }
        }
        foreach (var entry in Directory.GetFiles("/proc/self/fd"))
        {
            if (!int.TryParse(Path.GetFileName(entry), out int fd) || fd <= 2) continue;
            int flags = Libc.fcntl(fd, Libc.F_GETFD, 0);
            if (flags >= 0 && (flags & Libc.FD_CLOEXEC) == 0) Libc.close(fd);
        }
    }

    /// <summary>What every session needs before its first command: the loader, the driver, the code that
    /// decodes and executes; done while the worker waits in the pool, not while a guest waits.</summary>
    static void WarmUp(ILogger log, Socket control, object controlLock, Func<bool> stop, WarmUpThread self)
    {
        var sw = Stopwatch.StartNew();
        // Lowest priority, this thread only: the warm-up must not take CPU from the supervisor's handshakes
        // and running sessions (measured: a hello past its 2 s deadline on a busy 2-core host otherwise).
        self.Lower();
        try
        {
            // The assignment's own decoding, first.
            var sample = new WorkerAssignment(0, "ring", default(UnixRingTransport.Handoff), "", new ServerOptions("", 0, 0, Quotas: Quotas.Default));
            JsonSerializer.Deserialize(JsonSerializer.SerializeToUtf8Bytes(sample, WorkerJson.Default.WorkerAssignment), WorkerJson.Default.WorkerAssignment);
            HostVulkan.InstanceVersion();
            HostVulkan.InstanceExtensions();
            WorkerWarmUp.PinDriver();
            int replayed = Environment.GetEnvironmentVariable("GUESTICD_WORKER_NO_REPLAY") == "1" ? 0 : WorkerWarmUp.ReplaySessions(log, stop);
            if (stop()) return;
            // What the replays allocated is garbage now: an idle worker should not hold it.
            GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
            log.LogDebug("worker: warmed up in {Ms:F0} ms ({Replayed} recorded sessions replayed)", sw.Elapsed.TotalMilliseconds, replayed);
            // Tells the supervisor this worker is ready: it prefers ready workers over ones still warming.
            lock (controlLock)
                if (!stop()) WorkerNative.SendExactly((int)control.Handle, "R"u8);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            // The session arrived and the supervisor closed its end: the warm-up was cut short, nothing more.
        }
        finally
        {
            if (stop()) log.LogDebug("worker: warm-up cut short after {Ms:F0} ms by a session", sw.Elapsed.TotalMilliseconds);
        }
    }

    /// <summary>The warm-up thread's nice value: 19 while the worker waits in the pool, so that it takes no CPU
    /// from the sessions running meanwhile. Once a session has come every thread returns to the session's
    /// priority (WorkerPriority.RestoreAll), the threads the warm-up started included:
    /// a warm-up cut short still finishes the command it is in and tears its replay down, and while it does it
    /// holds what the session's thread needs next (the JIT's and type loader's locks, the dynamic linker's, a
    /// garbage collection it started). At nice 19 on a busy 2-core host it got the CPU for milliseconds a
    /// second, and the session's thread waited behind it for seconds (gdb: the session thread in a runtime
    /// lock wait or dlsym, the warm-up in the JIT; the watchdog then killed workers as hung in
    /// vkDestroyInstance 5 s after their guests had left).</summary>
    sealed class WarmUpThread
    {
        int _tid;
        readonly object _lock = new();

        /// <summary>Called on the warm-up thread itself.</summary>
        public void Lower()
        {
            lock (_lock)
            {
                if (_tid != 0) return;
                _tid = Libc.gettid();
                WorkerNative.setpriority(0, (uint)_tid, 19);
            }
        }

        /// <summary>Called once the session has come (on the worker's main thread).</summary>
        public void Restore(ILogger log)
        {
            lock (_lock)
            {
                if (_tid == 0) _tid = -1; // not started yet: Lower will see _tid and stay as it is
                WorkerPriority.RestoreAll(log);
            }
        }
    }

    /// <summary><c>serve --debug-crash-on-sigusr2</c>: SIGUSR2 makes the worker fault for real inside
    /// native code, as a driver bug would (like Chrome's chrome://gpucrash). A signal sent with kill
    /// cannot stand in for that: the .NET runtime catches SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT and
    /// ignores the ones that did not come from a fault.</summary>
    static void ArmCrashSignal()
    {
        bool hang = Environment.GetEnvironmentVariable("GUESTICD_WORKER_HANG_ON_FAULT") == "1";
        var registration = System.Runtime.InteropServices.PosixSignalRegistration.Create((System.Runtime.InteropServices.PosixSignal)12, _ =>
        {
            if (hang) HangOnFault();
            WorkerNative.memset((void*)16, 0, 16);
        });
        GC.KeepAlive(registration);
        s_crashSignal = registration;
    }

    static IDisposable? s_crashSignal;

    /// <summary><c>serve --debug-hang-on-fault</c>: the fault that follows is handled by a handler that never
    /// returns (libc's pause(), with only SIGSEGV blocked, as the kernel does for any handler), like the
    /// runtime's crash handling when it deadlocks on a corrupted heap: the worker neither dies nor recovers.
    /// Installed only at the trigger: the runtime needs its own SIGSEGV handler for managed null references.</summary>
    static void HangOnFault()
    {
        var action = new WorkerNative.SigAction
        {
            Handler = System.Runtime.InteropServices.NativeLibrary.GetExport(System.Runtime.InteropServices.NativeLibrary.Load("libc.so.6"), "pause"),
        };
        WorkerNative.sigaction(11 /* SIGSEGV */, &action, null);
    }

    static void ApplyLimits(WorkerLimits limits, ILogger log, int session)
    {
        var data = new WorkerNative.RLimit { Current = limits.DataBytes, Max = limits.DataBytes };
        var files = new WorkerNative.RLimit { Current = limits.OpenFiles, Max = limits.OpenFiles };
        if (WorkerNative.setrlimit(WorkerNative.RLIMIT_DATA, &data) != 0 || WorkerNative.setrlimit(WorkerNative.RLIMIT_NOFILE, &files) != 0)
            log.LogWarning("session {Session}: worker limits not applied ({Error})", session, Libc.Describe(Libc.Errno));
    }
}
