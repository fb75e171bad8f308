using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;

namespace GuestIcd.Tests;

/// <summary>Each guest session runs in a worker process of its own: a worker that dies (a real fault in
/// native code, or SIGKILL) ends only its guest's session with VK_ERROR_DEVICE_LOST while another guest's
/// checked compute work goes on; silent connections cannot keep real guests out; a worker holds only the
/// descriptors it needs and runs under the session's limits.</summary>
public class IsolationTests
{
    static readonly Lazy<(string Loop, string Spv)> Built = new(() =>
    {
        var dir = Directory.CreateTempSubdirectory("guesticd-isolation").FullName;
        var spv = Path.Combine(dir, "multiply.spv");
        var glslc = Repo.Run("glslc", $"-o {spv} native-shim/shaders/multiply.comp");
        Assert.True(glslc.ExitCode == 0, glslc.Stderr);
        var exe = Path.Combine(dir, "compute_loop");
        var cc = Repo.Run("cc", $"-std=c11 -O1 -Wall -Werror -o {exe} native-shim/clients/compute_loop.c -lvulkan");
        Assert.True(cc.ExitCode == 0, cc.Stderr);
        return (exe, spv);
    });

    /// <summary>A client running in the background, its output collected as it comes.</summary>
    sealed class Guest : IDisposable
    {
        readonly Process _p;
        readonly StringBuilder _out = new();
        public Guest(string exe, string args, IDictionary<string, string> env)
        {
            var psi = new ProcessStartInfo(exe, args) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var (k, v) in env) psi.Environment[k] = v;
            _p = Process.Start(psi)!;
            _p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_out) _out.AppendLine(e.Data); };
            _p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_out) _out.AppendLine(e.Data); };
            _p.BeginOutputReadLine();
            _p.BeginErrorReadLine();
        }
        public int Pid => _p.Id;
        public string Output { get { lock (_out) return _out.ToString(); } }
        public int Rounds => Regex.Count(Output, @"round \d+: verified");
        public void WaitFor(Func<bool> condition, int timeoutMs, string what)
        {
            var sw = Stopwatch.StartNew();
            while (!condition())
            {
                if (sw.ElapsedMilliseconds > timeoutMs) throw new TimeoutException($"guest {Pid}: {what} not within {timeoutMs} ms:\n{Output}");
                Thread.Sleep(20);
            }
        }
        public int Exit(int timeoutMs)
        {
            if (!_p.WaitForExit(timeoutMs)) throw new TimeoutException($"guest {Pid} still running after {timeoutMs} ms:\n{Output}");
            _p.WaitForExit();
            return _p.ExitCode;
        }
        public void Dispose()
        {
            if (!_p.HasExited) _p.Kill();
            _p.Dispose();
        }
    }

    /// <summary>The worker serving <paramref name="guestPid"/>'s application session (its last session;
    /// the loader's probe opens it or comes first).</summary>
    static int WorkerOf(HostSim host, int guestPid)
    {
        var log = host.Log;
        var sessions = Regex.Matches(log, $@"session (\d+) connected via \S+ guest pid {guestPid} ").Select(m => int.Parse(m.Groups[1].Value)).ToList();
        Assert.True(sessions.Count > 0, $"no session of guest pid {guestPid}:\n{log}");
        var worker = Regex.Match(log, $@"session {sessions.Max()}: worker pid (\d+)");
        Assert.True(worker.Success, $"no worker logged for session {sessions.Max()}:\n{log}");
        return int.Parse(worker.Groups[1].Value);
    }

    /// <summary>What an entry of /proc/PID/fd points at, as the kernel writes it ("socket:[123]", a path).</summary>
    static string Target(string fdLink) { try { return new FileInfo(fdLink).LinkTarget ?? ""; } catch (IOException) { return ""; } }

    static void Signal(int pid, string signal) => Assert.Equal(0, Repo.Run("kill", $"-{signal} {pid}").ExitCode);

    [Fact]
    public void AWorkerThatDiesEndsOnlyItsOwnGuestsSession()
    {
        using var host = new HostSim("--debug-crash-on-sigusr2");
        var (loop, spv) = Built.Value;
        // Runs until told to stop: a fixed run could end before the crash path and the rounds after it are done.
        using var survivor = new Guest(loop, $"{spv} 300", host.ClientEnv());
        using var victim = new Guest(loop, $"{spv} 60", host.ClientEnv());
        survivor.WaitFor(() => survivor.Rounds >= 3, 30_000, "three rounds");
        victim.WaitFor(() => victim.Rounds >= 3, 30_000, "three rounds");

        // A real fault inside native code, as a driver bug would cause (SIGUSR2 is only the trigger).
        int worker = WorkerOf(host, victim.Pid);
        Signal(worker, "USR2");
        Assert.Equal(3, victim.Exit(5_000)); // promptly, not at a timeout
        Assert.Matches(@"FAILED vk\w+\(.*\) = -4", victim.Output); // VK_ERROR_DEVICE_LOST
        host.WaitForLog($"worker pid {worker} died of SIGSEGV; last command started: vk", 5_000);
        // The session's end is logged just after the death (another line, another moment).
        var endedLine = $@"session \d+ ended \(worker pid {worker} died of SIGSEGV\)";
        for (var sw = System.Diagnostics.Stopwatch.StartNew(); !Regex.IsMatch(host.Log, endedLine) && sw.ElapsedMilliseconds < 5_000;) Thread.Sleep(20);
        Assert.Matches(endedLine, host.Log);

        // The other guest kept working, and every element of every round was right.
        int roundsAtCrash = survivor.Rounds;
        survivor.WaitFor(() => survivor.Rounds > roundsAtCrash + 20, 10_000, "rounds after the crash");

        // Any signal, and hostsim still takes new guests: a second victim dies of SIGKILL.
        using (var second = new Guest(loop, $"{spv} 60", host.ClientEnv()))
        {
            second.WaitFor(() => second.Rounds >= 2, 30_000, "two rounds");
            int w2 = WorkerOf(host, second.Pid);
            Signal(w2, "KILL");
            Assert.Equal(3, second.Exit(5_000));
            Assert.Contains("= -4", second.Output);
            host.WaitForLog($"worker pid {w2} died of SIGKILL", 5_000);
        }

        Signal(survivor.Pid, "TERM");
        Assert.Equal(0, survivor.Exit(30_000));
        Assert.Matches(@"done: \d+ rounds verified", survivor.Output);
        Assert.DoesNotContain("elements wrong", survivor.Output);

        using var after = new Guest(loop, $"{spv} 1", host.ClientEnv());
        Assert.Equal(0, after.Exit(30_000));
        Assert.Contains("rounds verified", after.Output);
    }

    [Fact]
    public void TwoHundredSilentConnectionsDoNotKeepRealGuestsOut()
    {
        using var host = new HostSim();
        var silent = new List<Socket>();
        try
        {
            for (int i = 0; i < 200; i++)
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                s.Connect(new UnixDomainSocketEndPoint(host.SocketPath));
                silent.Add(s);
            }
            var env = host.ClientEnv();
            env["GUESTICD_CONNECT_TIMEOUT_MS"] = "10000"; // far below 200 silent peers handled one after another (2 s each)
            var results = Enumerable.Range(0, 5).AsParallel().WithDegreeOfParallelism(5)
                .Select(_ => Repo.Run("vulkaninfo", "--summary", env, timeoutMs: 60_000)).ToList();
            foreach (var r in results)
            {
                Assert.True(r.ExitCode == 0, r.Stderr + host.Log);
                Assert.Contains("deviceName         = GuestIcd: llvmpipe", r.Stdout);
            }
            // The silent ones were dropped with a reason, not left to pile up.
            host.WaitForLog($"dropped guest pid {Environment.ProcessId}: it was evicted", 10_000);
            host.WaitForLog($"dropped guest pid {Environment.ProcessId}: it sent no complete preamble within 2000 ms", 10_000);
        }
        finally
        {
            foreach (var s in silent) s.Dispose();
        }
    }

    [Fact]
    public void TwoHundredSilentTcpConnectionsDoNotKeepRealGuestsOut()
    {
        var secretFile = Path.Combine(Directory.CreateTempSubdirectory("guesticd-secret").FullName, "secret");
        File.WriteAllText(secretFile, Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)));
        int port;
        using (var l = new TcpListener(IPAddress.Loopback, 0)) { l.Start(); port = ((IPEndPoint)l.LocalEndpoint).Port; }
        using var host = new HostSim("--listen", $"tcp:127.0.0.1:{port}", "--secret-file", secretFile);
        host.WaitForLog($"listening on tcp:127.0.0.1:{port}", 10_000);
        var silent = new List<Socket>();
        try
        {
            for (int i = 0; i < 200; i++)
            {
                var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                s.Connect(IPAddress.Loopback, port);
                silent.Add(s);
            }
            var env = new Dictionary<string, string>
            {
                ["VK_DRIVER_FILES"] = HostSim.Manifest, ["GUESTICD_TRANSPORT"] = $"tcp:127.0.0.1:{port}",
                ["GUESTICD_SECRET_FILE"] = secretFile, ["VK_LOADER_LAYERS_DISABLE"] = "*", ["GUESTICD_CONNECT_TIMEOUT_MS"] = "10000",
            };
            var results = Enumerable.Range(0, 5).AsParallel().WithDegreeOfParallelism(5)
                .Select(_ => Repo.Run("vulkaninfo", "--summary", env, timeoutMs: 60_000)).ToList();
            foreach (var r in results)
            {
                Assert.True(r.ExitCode == 0, r.Stderr + host.Log);
                Assert.Contains("deviceName         = GuestIcd: llvmpipe", r.Stdout);
            }
            host.WaitForLog("it was evicted: its address has 16 unfinished handshakes", 10_000);
        }
        finally
        {
            foreach (var s in silent) s.Dispose();
        }
    }

    [Fact]
    public void AWorkerHoldsOnlyItsOwnDescriptorsAndRunsUnderItsLimits()
    {
        using var host = new HostSim();
        var (loop, spv) = Built.Value;
        // Both run until told to stop: under load one guest's first round can come after the other's whole run.
        using var other = new Guest(loop, $"{spv} 300", host.ClientEnv());
        using var guest = new Guest(loop, $"{spv} 300", host.ClientEnv());
        other.WaitFor(() => other.Rounds >= 1, 60_000, "a round");
        guest.WaitFor(() => guest.Rounds >= 1, 60_000, "a round");
        int worker = WorkerOf(host, guest.Pid);
        int otherWorker = WorkerOf(host, other.Pid);
        Assert.NotEqual(worker, otherWorker);

        var links = Directory.GetFiles($"/proc/{worker}/fd").Select(Target).ToList();
        var sockets = links.Where(l => l.StartsWith("socket:[")).ToList();
        // Its guest's connection and nothing else: not the listener, not the supervisor, not another guest.
        Assert.True(sockets.Count == 1, string.Join("\n", links));
        Assert.DoesNotContain(links, l => l.Contains("guesticd-ring")); // mapped, fd closed
        Assert.DoesNotContain(links, l => l.Contains(Path.GetDirectoryName(host.SocketPath)!));
        // The listening socket is in hostsim's own table (so the check above could have found it), not the worker's.
        string listenInode = File.ReadAllLines("/proc/net/unix").Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .First(f => f.Length >= 8 && f[^1] == host.SocketPath && f[3] == "00010000" /* listening; accepted sockets show the path too */)[6];
        Assert.DoesNotContain($"socket:[{listenInode}]", sockets);
        var otherLinks = Directory.GetFiles($"/proc/{otherWorker}/fd").Select(Target);
        Assert.Empty(sockets.Intersect(otherLinks));

        var limits = File.ReadAllText($"/proc/{worker}/limits");
        Assert.Matches(@"Max open files\s+1024\s+1024", limits);
        Assert.Matches(@"Max core file size\s+0\s+0", limits);
        var data = Regex.Match(limits, @"Max data size\s+(\S+)\s+(\S+)");
        Assert.True(data.Success && data.Groups[1].Value != "unlimited" && ulong.Parse(data.Groups[1].Value) < 64UL << 30, limits);
        Assert.Matches(@"NoNewPrivs:\s+1", File.ReadAllText($"/proc/{worker}/status"));

        Signal(guest.Pid, "TERM");
        Signal(other.Pid, "TERM");
        Assert.Equal(0, guest.Exit(60_000));
        Assert.Equal(0, other.Exit(60_000));
        Assert.Contains("done: ", guest.Output);
    }

    static bool Alive(int pid) => Directory.Exists($"/proc/{pid}") && !File.ReadAllText($"/proc/{pid}/stat").Contains(") Z ");

    /// <summary>A worker that faults and whose crash handling then never finishes (as the runtime's can on a
    /// corrupted heap) would hold its guest for good: the supervisor sees a thread stuck in SIGSEGV handling,
    /// SIGKILLs the worker, says so, and the guest gets VK_ERROR_DEVICE_LOST; the other guest goes on.</summary>
    [Fact]
    public void AWorkerThatHangsInsteadOfDyingIsKilledAndOnlyItsGuestLosesItsDevice()
    {
        using var host = new HostSim("--debug-crash-on-sigusr2", "--debug-hang-on-fault");
        var (loop, spv) = Built.Value;
        // Runs until told to stop: a fixed run could end before the crash path and the rounds after it are done.
        using var survivor = new Guest(loop, $"{spv} 300", host.ClientEnv());
        using var victim = new Guest(loop, $"{spv} 60", host.ClientEnv());
        survivor.WaitFor(() => survivor.Rounds >= 3, 30_000, "three rounds");
        victim.WaitFor(() => victim.Rounds >= 3, 30_000, "three rounds");

        int worker = WorkerOf(host, victim.Pid);
        Signal(worker, "USR2");
        // Stuck for a second, then killed: well before the victim's own 10 s fence timeout.
        Assert.Equal(3, victim.Exit(8_000));
        Assert.Contains("= -4", victim.Output); // VK_ERROR_DEVICE_LOST
        host.WaitForLog($"worker pid {worker} hung (thread ", 5_000);
        Assert.Matches($@"session \d+: worker pid {worker} hung \(thread \d+ has been handling SIGSEGV for \d+\.\d s without dying\); last command started: .+; killed", host.Log);
        host.WaitForLog($"ended (worker pid {worker} hung; killed)", 5_000);
        Assert.False(Alive(worker), $"worker {worker} still there");

        int roundsAtKill = survivor.Rounds;
        survivor.WaitFor(() => survivor.Rounds > roundsAtKill + 10, 10_000, "rounds after the kill");
        Signal(survivor.Pid, "TERM");
        Assert.Equal(0, survivor.Exit(30_000));
        Assert.DoesNotContain("elements wrong", survivor.Output);
        Assert.DoesNotContain($"worker pid {WorkerOf(host, survivor.Pid)} hung", host.Log);
    }

    /// <summary>What "hung" is not: a worker making no progress while its guest is still connected (here
    /// stopped with SIGSTOP, as good as an endless driver call) is left alone, however long. Once its guest
    /// has gone, a worker that does not exit within the grace is killed.</summary>
    [Fact]
    public void AStalledWorkerIsKilledOnlyOnceItsGuestHasGone()
    {
        using var host = new HostSim();
        var (loop, spv) = Built.Value;
        using var guest = new Guest(loop, $"{spv} 60", host.ClientEnv());
        guest.WaitFor(() => guest.Rounds >= 3, 30_000, "three rounds");
        int worker = WorkerOf(host, guest.Pid);

        Signal(worker, "STOP");
        Thread.Sleep(6_000); // past the 5 s grace and the watchdog's checks, under the guest's 10 s fence timeout
        Assert.True(Alive(worker), $"worker {worker} killed while its guest was connected:\n{host.Log}");
        Assert.DoesNotContain($"worker pid {worker} hung", host.Log);
        Signal(worker, "CONT");
        int rounds = guest.Rounds;
        guest.WaitFor(() => guest.Rounds > rounds + 3, 10_000, "rounds after the stall");

        Signal(worker, "STOP");
        Signal(guest.Pid, "KILL");
        host.WaitForLog($"worker pid {worker} hung (its guest left ", 15_000);
        Assert.Matches($@"worker pid {worker} hung \(its guest left \d+\.\d s ago and it has not exited\); last command started: .+; killed", host.Log);
        host.WaitForLog($"ended (worker pid {worker} hung; killed)", 5_000);
        Assert.False(Alive(worker), $"worker {worker} still there");

        using var after = new Guest(loop, $"{spv} 1", host.ClientEnv());
        Assert.Equal(0, after.Exit(30_000));
        Assert.Contains("rounds verified", after.Output);
    }
}
