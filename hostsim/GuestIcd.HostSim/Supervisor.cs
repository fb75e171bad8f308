using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using GuestIcd.Transport;
using Microsoft.Extensions.Logging;
using GuestIcd.Transport.Native;

namespace GuestIcd.HostSim;

/// <summary>What a worker is told about its session: sent as JSON with the fds over the control socket.</summary>
/// <param name="Kind">"ring": fds are the guest's socket, its shared memory, the status page. "vm": the
/// worker's end of the doorbell relay socketpair, the vm's shared file, the status page.
/// "stream": fds are the worker's end of the relay socketpair and the status page. "virtio-gpu": the context's
/// doorbell socket, its let-go socket, the guest RAM memfds its pages lie in (<see cref="VirtioGpuHandoff"/>), the status page.</param>
internal sealed record WorkerAssignment(int Session, string Kind, UnixRingTransport.Handoff? Ring, string Description, ServerOptions Options,
    GuestIcd.VirtioGpu.VirtioGpuHandoff? VirtioGpu = null);

/// <summary>The assignment's JSON code, generated at build time: reflection-based serialisation cost a
/// worker about 150 ms on its first (only) assignment, the guest waiting.</summary>
[JsonSerializable(typeof(WorkerAssignment))]
internal sealed partial class WorkerJson : JsonSerializerContext;

/// <summary>Resource limits of one worker, derived from the session's quota.</summary>
internal readonly record struct WorkerLimits(ulong DataBytes, ulong OpenFiles, ulong GcHeapBytes)
{
    /// <summary>Managed heap of a worker: decode buffers and tables, never device memory.</summary>
    public const ulong DefaultGcHeapBytes = 1UL << 30;
    /// <summary>What the runtime, the loader and the driver need beside the guest's memory (measured: an
    /// idle worker commits about 60 MiB of private data, one that ran the compute client about 150 MiB).</summary>
    const ulong Overhead = 1UL << 30;
    /// <summary>The session's device-memory quota bounds what the driver allocates in private memory (the
    /// shared heap is a shared mapping and RLIMIT_DATA does not count it); the rest is the runtime's.</summary>
    public static WorkerLimits For(ServerOptions options) =>
        // Twice the quota: a backstop well above what the quota lets through (the driver's own copies and
        // bookkeeping come on top), so only a runaway worker ever meets it.
        new(DefaultGcHeapBytes + Overhead + 2 * (options.Quotas ?? Quotas.Default).DeviceMemoryBytes, 1024, DefaultGcHeapBytes);
}

/// <summary>
/// Runs each guest session in a worker process of its own (like virglrenderer's render server and Chrome's
/// GPU process), so a driver crash or heap corruption caused by one guest ends only that guest's session.
/// The parent keeps listening, authentication and the hello; it hands the connection to a worker and
/// watches it. One worker is kept started and waiting, so a session does not pay for process and runtime
/// start.
/// </summary>
/// <remarks>
/// <para>Workers are spawned from this same executable (<c>guesticd-hostsim worker</c>): .NET cannot fork
/// safely. A worker connects back to a private abstract unix socket and proves a random token from its
/// environment; its pid must be one we started. Its session then arrives as JSON plus fds (SCM_RIGHTS).</para>
/// <para>A unix ring guest's socket and shared memory go to the worker and the parent closes its copies,
/// so when the worker dies the kernel closes the guest's socket and the guest wakes to
/// VK_ERROR_DEVICE_LOST. TCP and vsock guests stay on the parent's (maybe TLS) connection and are relayed
/// as plaintext through a socketpair. A virtio-gpu context's session goes to a worker with the guest RAM
/// memfds its pages lie in and its doorbell socket; the device stays here (<see cref="GuestIcd.VirtioGpu.VirtioGpuSession"/>).</para>
/// <para>Workers are spawned from one long-lived thread: PR_SET_PDEATHSIG fires when the spawning
/// <em>thread</em> exits, not the process.</para>
/// </remarks>
internal sealed unsafe class Supervisor : IDisposable
{
    const int ConnectTimeoutMs = 30_000;

    readonly ServerOptions _options;
    readonly ILogger _log;
    readonly int _warmWanted;
    readonly Socket _control;
    readonly string _controlName;
    readonly string _token;
    readonly object _lock = new();
    readonly Dictionary<int, TaskCompletionSource<Socket>> _starting = new();
    readonly Dictionary<int, Socket> _arrived = new();
    readonly Queue<Worker> _warm = new();
    readonly BlockingCollection<TaskCompletionSource<(Process, Task<Socket>)>> _spawnRequests = new();
    readonly HashSet<Process> _live = new();
    int _refilling;
    long _lastTake;
    volatile bool _disposed;

    sealed record Worker(Process Process, Socket Control, double StartMs);

    /// <summary>Workers fault for real on SIGUSR2 (<c>serve --debug-crash-on-sigusr2</c>; tests).</summary>
    readonly bool _crashOnSigusr2;

    /// <summary>A worker's fault is handled by a handler that never returns (<c>serve --debug-hang-on-fault</c>; tests the watchdog).</summary>
    readonly bool _hangOnFault;

    public Supervisor(ServerOptions options, ILogger log, int warmWorkers, bool crashOnSigusr2 = false, bool hangOnFault = false)
    {
        _crashOnSigusr2 = crashOnSigusr2;
        _hangOnFault = hangOnFault;
        _options = options;
        _log = log;
        _warmWanted = warmWorkers;
        _token = Convert.ToHexString(RandomNumberGenerator.GetBytes(32));
        _controlName = $"guesticd-hostsim-{Environment.ProcessId}-{Convert.ToHexString(RandomNumberGenerator.GetBytes(8))}";
        _control = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _control.Bind(new UnixDomainSocketEndPoint("\0" + _controlName));
        _control.Listen(64);
        new Thread(AcceptWorkers) { IsBackground = true, Name = "worker control" }.Start();
        new Thread(SpawnLoop) { IsBackground = true, Name = "worker spawner" }.Start();
        Refill();
    }

    /// <summary>Hands a guest whose hello is done to a worker and watches it; returns at once.</summary>
    /// <param name="live">Where <c>status</c> finds the session (its figures are in the worker's status page).</param>
    public void Serve(int id, ITransport transport, LiveSession? live = null)
    {
        Worker worker;
        WorkerStatus status;
        var sw = Stopwatch.StartNew();
        try
        {
            worker = Take(out bool warm);
            bool ready = IsReady(worker);
            status = WorkerStatus.Create();
            live?.Attach(status.Counters, worker.Process.Id);
            _log.LogInformation("session {Session}: worker pid {Pid} ({How}, started in {Start:F0} ms, handed over after {Wait:F1} ms)",
                id, worker.Process.Id, ready ? "warm" : warm ? "still warming up" : "cold", worker.StartMs, sw.Elapsed.TotalMilliseconds);
        }
        catch (Exception e)
        {
            _log.LogError("session {Session} ended (no worker: {Error})", id, e.Message);
            if (live is not null) LiveStatus.End(live, "no_worker");
            transport.Dispose();
            return;
        }
        Task relay = Task.CompletedTask;
        // A unix ring guest's socket, kept only to see the guest leave (WorkerWatchdog); closed the moment
        // the worker is gone, so the guest still sees its socket close when the worker dies.
        int guestFd = -1;
        try
        {
            int controlFd = (int)worker.Control.Handle;
            switch (transport)
            {
                case UnixRingTransport { IsVmSession: true } vm:
                {
                    // The vm channel carries every session of its VM: the parent keeps it and relays doorbells.
                    int* pair = stackalloc int[2];
                    if (Libc.socketpair(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC, 0, pair) != 0)
                        throw new IOException($"socketpair failed ({Libc.Describe(Libc.Errno)})");
                    int local = pair[0], remote = pair[1];
                    var handedOver = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    var thread = new Thread(() => RelayVm(id, vm, worker, controlFd, local, remote, status, handedOver)) { IsBackground = true, Name = "vm relay " + id };
                    thread.Start();
                    handedOver.Task.GetAwaiter().GetResult();
                    relay = Task.Run(thread.Join);
                    break;
                }
                case UnixRingTransport ring:
                {
                    var handoff = ring.Detach(out int socketFd, out int memfd);
                    guestFd = Libc.fcntl(socketFd, Libc.F_DUPFD_CLOEXEC, 0);
                    try
                    {
                        Send(controlFd, new WorkerAssignment(id, "ring", handoff, transport.Description, _options), [socketFd, memfd, status.Fd]);
                    }
                    finally
                    {
                        // The worker holds the only other copies: when it dies, the guest sees its socket close.
                        Libc.close(socketFd);
                        Libc.close(memfd);
                    }
                    break;
                }
                case GuestIcd.VirtioGpu.VirtioGpuSession gpu:
                {
                    // The backend keeps the device, its virtqueues and guest RAM; the worker maps only this
                    // context's pages (zero copy) and gets its doorbells. When it dies, the device sees the
                    // doorbell socket close and the guest gets VK_ERROR_DEVICE_LOST.
                    var process = worker.Process;
                    var handoff = gpu.HandOff(() => Kill(process), out int[] fds);
                    guestFd = Libc.fcntl(fds[0], Libc.F_DUPFD_CLOEXEC, 0);
                    try
                    {
                        Send(controlFd, new WorkerAssignment(id, "virtio-gpu", handoff.Ring, transport.Description, _options, handoff), [.. fds, status.Fd]);
                    }
                    finally
                    {
                        foreach (int fd in fds) Libc.close(fd);
                    }
                    break;
                }
                case PipeTransport pipe:
                {
                    int* pair = stackalloc int[2];
                    if (Libc.socketpair(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC, 0, pair) != 0)
                        throw new IOException($"socketpair failed ({Libc.Describe(Libc.Errno)})");
                    var local = new Socket(new SafeSocketHandle(pair[0], ownsHandle: true));
                    try
                    {
                        Send(controlFd, new WorkerAssignment(id, "stream", null, transport.Description, _options), [pair[1], status.Fd]);
                    }
                    catch
                    {
                        local.Dispose();
                        throw;
                    }
                    finally
                    {
                        Libc.close(pair[1]);
                    }
                    relay = pipe.RelayAsync(local);
                    break;
                }
                default:
                    throw new NotSupportedException($"{transport.GetType().Name} cannot be handed to a worker");
            }
        }
        catch (Exception e)
        {
            _log.LogError("session {Session} ended (hand-off to worker pid {Pid} failed: {Error})", id, worker.Process.Id, e.Message);
            if (guestFd >= 0) Libc.close(guestFd);
            transport.Dispose();
            Kill(worker.Process);
            if (live is not null) LiveStatus.End(live, "no_worker");
            status.Dispose();
            worker.Control.Dispose();
            return;
        }
        status.CloseFd();
        // The control socket's only job was the hand-off; the worker's exit is what we watch.
        worker.Control.Dispose();
        new Thread(() => Watch(id, worker.Process, status, relay, guestFd, live)) { IsBackground = true, Name = "watch session " + id }.Start();
    }

    /// <summary>Runs the vm session's doorbell relay; when it ends, makes sure the worker is gone (it
    /// maps the vm's memory, which the next session reuses) before the listener may read on.</summary>
    void RelayVm(int id, UnixRingTransport vm, Worker worker, int controlFd, int local, int remote, WorkerStatus status, TaskCompletionSource handedOver)
    {
        try
        {
            vm.RelayVmSession(local, (handoff, shmFd) =>
            {
                try { Send(controlFd, new WorkerAssignment(id, "vm", handoff, vm.Description, _options), [remote, shmFd, status.Fd]); }
                finally
                {
                    Libc.close(shmFd);
                    Libc.close(remote);
                }
                handedOver.TrySetResult();
            });
        }
        catch (Exception e)
        {
            handedOver.TrySetException(e);
        }
        finally
        {
            Libc.close(local);
            if (!worker.Process.WaitForExit(5000))
            {
                _log.LogWarning("session {Session}: worker pid {Pid} still running 5 s after its vm session ended; killed", id, worker.Process.Id);
                Kill(worker.Process);
                worker.Process.WaitForExit();
            }
            vm.Dispose();
        }
    }

    /// <summary>Waits for the worker to exit, killing it if it hangs (<see cref="WorkerWatchdog"/>), and
    /// says how it ended.</summary>
    void Watch(int id, Process process, WorkerStatus status, Task relay, int guestFd, LiveSession? live)
    {
        var watchdog = new WorkerWatchdog(process.Id);
        var clock = Stopwatch.StartNew();
        string? hung = null;
        using var exit = new WorkerExit(process);
        while (!exit.Wait(WorkerWatchdog.PeriodMs))
        {
            bool gone = guestFd >= 0 ? WorkerWatchdog.PeerGone(guestFd) : relay.IsCompleted;
            hung = watchdog.Check(gone, clock.ElapsedMilliseconds);
            if (hung is null) continue;
            _log.LogError("session {Session}: worker pid {Pid} hung ({Why}); last command started: {Command}; killed",
                id, process.Id, hung, status.LastCommand());
            Kill(process);
            exit.Wait(-1);
            break;
        }
        // The guest first: it sees its socket close now, not once the worker is reaped.
        if (guestFd >= 0) Libc.close(guestFd);
        int code = exit.Code();
        lock (_lock) _live.Remove(process);
        // .NET reports a worker killed by signal N as exit code 128 + N.
        string? seen = hung is not null ? "worker_hang" : code > 128 && code < 128 + 65 ? "worker_crash" : null;
        if (hung is not null) LiveStatus.WorkerHung();
        else if (seen is not null) LiveStatus.WorkerCrashed();
        if (live is not null) LiveStatus.End(live, seen);
        if (hung is not null)
        {
            _log.LogInformation("session {Session} ended (worker pid {Pid} hung; killed)", id, process.Id);
        }
        else if (code > 128 && code < 128 + 65)
        {
            string signal = SignalName(code - 128);
            _log.LogError("session {Session}: worker pid {Pid} died of {Signal}; last command started: {Command}; only this guest's session is lost",
                id, process.Id, signal, status.LastCommand());
            _log.LogInformation("session {Session} ended (worker pid {Pid} died of {Signal})", id, process.Id, signal);
        }
        else if (code == -1)
        {
            _log.LogError("session {Session}: worker pid {Pid} exited and its status was lost; last command started: {Command}", id, process.Id, status.LastCommand());
        }
        else if (code != 0)
        {
            _log.LogError("session {Session}: worker pid {Pid} exited with code {Code}; last command started: {Command}", id, process.Id, code, status.LastCommand());
        }
        try { relay.Wait(TimeSpan.FromSeconds(10)); } catch (AggregateException) { }
        status.Dispose();
        process.Dispose();
    }

    static void Send(int controlFd, WorkerAssignment assignment, ReadOnlySpan<int> fds) =>
        WorkerNative.SendMessage(controlFd, JsonSerializer.SerializeToUtf8Bytes(assignment, WorkerJson.Default.WorkerAssignment), fds);

    Worker Take(out bool warm)
    {
        Worker? worker = null;
        lock (_lock)
        {
            // The dead go; then the first that has finished warming up (it sent its ready byte), else the
            // oldest, which is furthest along.
            foreach (var w in _warm.Where(w => w.Process.HasExited).ToList())
            {
                _log.LogWarning("warm worker pid {Pid} died while idle (exit code {Code})", w.Process.Id, w.Process.ExitCode);
                w.Control.Dispose();
            }
            var live = _warm.Where(w => !w.Process.HasExited).ToList();
            worker = live.FirstOrDefault(IsReady) ?? live.FirstOrDefault();
            _warm.Clear();
            foreach (var w in live) if (w != worker) _warm.Enqueue(w);
        }
        warm = worker != null;
        worker ??= Spawn();
        Volatile.Write(ref _lastTake, Environment.TickCount64);
        Refill();
        return worker;
    }

    /// <summary>A worker sends one byte on its control socket once warmed up; it is never read.</summary>
    static bool IsReady(Worker w)
    {
        try { return w.Control.Available > 0; }
        catch (Exception e) when (e is SocketException or ObjectDisposedException) { return false; }
    }

    /// <summary>How long after a session took a worker the pool waits before it starts a replacement, while it
    /// still has a warm one. A worker's start and warm-up cost about a second of CPU, and a session's first
    /// second (its instance, device and pipelines) is what its application waits for: on 2 cores the
    /// replacement beside it made `bench create`'s rounds 19–27 ms instead of 9–11. An empty pool refills at once.</summary>
    const int RefillDelayMs = 1000;

    /// <summary>Tops the warm pool up in the background.</summary>
    void Refill()
    {
        if (Interlocked.Exchange(ref _refilling, 1) != 0) return;
        ThreadPool.QueueUserWorkItem(_ =>
        {
            try
            {
                while (!_disposed)
                {
                    lock (_lock) if (_warm.Count >= _warmWanted) break;
                    while (!_disposed && Environment.TickCount64 - Volatile.Read(ref _lastTake) < RefillDelayMs)
                    {
                        lock (_lock) if (_warm.Count == 0) break;
                        Thread.Sleep(20);
                    }
                    if (_disposed) break;
                    var w = Spawn();
                    lock (_lock) _warm.Enqueue(w);
                }
            }
            catch (Exception e)
            {
                _log.LogError("cannot start a warm worker: {Error}", e.Message);
            }
            finally
            {
                Volatile.Write(ref _refilling, 0);
            }
        });
    }

    /// <summary>Starts a worker and waits until it has connected back (warmed up). Only the fork+exec
    /// happens on the spawner thread, so a burst of sessions starts its workers in parallel.</summary>
    Worker Spawn()
    {
        var sw = Stopwatch.StartNew();
        var request = new TaskCompletionSource<(Process, Task<Socket>)>(TaskCreationOptions.RunContinuationsAsynchronously);
        _spawnRequests.Add(request);
        var (process, connected) = request.Task.GetAwaiter().GetResult();
        if (!connected.Wait(ConnectTimeoutMs))
        {
            lock (_lock) _starting.Remove(process.Id);
            Kill(process);
            throw new TimeoutException($"worker pid {process.Id} did not connect within {ConnectTimeoutMs} ms");
        }
        return new Worker(process, connected.Result, sw.Elapsed.TotalMilliseconds);
    }

    void SpawnLoop()
    {
        foreach (var request in _spawnRequests.GetConsumingEnumerable())
        {
            try { request.SetResult(StartWorker()); }
            catch (Exception e) { request.SetException(e); }
        }
    }

    (Process, Task<Socket>) StartWorker()
    {
        var limits = WorkerLimits.For(_options);
        string exe = Environment.ProcessPath ?? throw new InvalidOperationException("cannot tell which executable hostsim runs from");
        var psi = new ProcessStartInfo(exe) { UseShellExecute = false };
        // Started as `dotnet guesticd-hostsim.dll`: the worker needs the dll too.
        if (Path.GetFileNameWithoutExtension(exe) == "dotnet") psi.ArgumentList.Add(typeof(Supervisor).Assembly.Location);
        psi.ArgumentList.Add("worker");
        psi.Environment["GUESTICD_WORKER_CONTROL"] = _controlName;
        psi.Environment["GUESTICD_WORKER_TOKEN"] = _token;
        psi.Environment["GUESTICD_WORKER_PARENT"] = Environment.ProcessId.ToString();
        if (_crashOnSigusr2) psi.Environment["GUESTICD_WORKER_CRASH_ON_SIGUSR2"] = "1";
        if (_hangOnFault) psi.Environment["GUESTICD_WORKER_HANG_ON_FAULT"] = "1";
        psi.Environment["GUESTICD_WORKER_LOG_LEVEL"] = Enum.GetValues<LogLevel>().FirstOrDefault(_log.IsEnabled, LogLevel.None).ToString();
        // No diagnostics IPC socket: it would let any local process of our uid attach to a worker.
        psi.Environment["DOTNET_EnableDiagnostics"] = "0";
        psi.Environment["DOTNET_GCHeapHardLimit"] = "0x" + limits.GcHeapBytes.ToString("X");
        // Drop what a worker must not have: the remote guests' secret.
        psi.Environment.Remove("GUESTICD_SECRET");
        psi.Environment.Remove("GUESTICD_SECRET_FILE");
        var tcs = new TaskCompletionSource<Socket>(TaskCreationOptions.RunContinuationsAsynchronously);
        Process process;
        lock (_lock)
        {
            process = Process.Start(psi) ?? throw new IOException($"cannot start {exe} worker");
            _live.Add(process);
            if (_arrived.Remove(process.Id, out var early)) tcs.SetResult(early);
            else _starting[process.Id] = tcs;
        }
        return (process, tcs.Task);
    }

    void AcceptWorkers()
    {
        while (!_disposed)
        {
            Socket s;
            try { s = _control.Accept(); }
            catch (Exception) when (_disposed) { return; }
            catch (SocketException) { continue; }
            try
            {
                // Anyone on this host may connect to an abstract socket: trust only our child with our token.
                s.ReceiveTimeout = 5000;
                var token = new byte[_token.Length];
                WorkerNative.ReceiveExactly((int)s.Handle, token);
                int pid = Libc.PeerCredentials((int)s.Handle).pid;
                if (!CryptographicOperations.FixedTimeEquals(token, System.Text.Encoding.ASCII.GetBytes(_token)))
                {
                    _log.LogWarning("worker control: pid {Pid} connected without the token; closed", pid);
                    s.Dispose();
                    continue;
                }
                lock (_lock)
                {
                    if (_starting.Remove(pid, out var tcs)) tcs.SetResult(s);
                    else _arrived[pid] = s;
                }
            }
            catch (Exception e)
            {
                _log.LogWarning("worker control: a connection failed ({Error})", e.Message);
                s.Dispose();
            }
        }
    }

    static void Kill(Process p)
    {
        try { if (!p.HasExited) p.Kill(); } catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception) { }
    }

    public static string SignalName(int signal) => signal switch
    {
        4 => "SIGILL", 6 => "SIGABRT", 7 => "SIGBUS", 8 => "SIGFPE", 9 => "SIGKILL", 11 => "SIGSEGV", 13 => "SIGPIPE", 15 => "SIGTERM",
        24 => "SIGXCPU", 25 => "SIGXFSZ", 31 => "SIGSYS",
        _ => $"signal {signal}",
    };

    public void Dispose()
    {
        _disposed = true;
        _spawnRequests.CompleteAdding();
        _control.Dispose();
        lock (_lock)
        {
            foreach (var w in _warm) { Kill(w.Process); w.Control.Dispose(); }
            _warm.Clear();
            foreach (var p in _live) Kill(p);
        }
    }
}
