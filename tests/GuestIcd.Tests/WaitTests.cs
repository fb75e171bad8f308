using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Xunit.Abstractions;

namespace GuestIcd.Tests;

/// <summary>Waits (issue 7 point 4): a guest killed inside an endless wait has its session ended and its
/// objects released at once, next to a guest that keeps working; a wait's timeout holds to its time on the
/// guest even while the host is stopped, and the connection works again once the host runs.
/// native-shim/clients/wait.c blocks its queue on a timeline value nobody signals, so its waits really
/// reach the host.</summary>
public class WaitTests(ITestOutputHelper output)
{
    static string Client()
    {
        var exe = Path.Combine(Path.GetTempPath(), $"guesticd-wait-{Environment.ProcessId}");
        lock (typeof(WaitTests))
            if (!File.Exists(exe))
            {
                var cc = Repo.Run("cc", $"-std=c11 -Wall -Werror -O1 -o {exe} native-shim/clients/wait.c -lvulkan");
                Assert.True(cc.ExitCode == 0, cc.Stderr);
            }
        return exe;
    }

    /// <summary>A client that runs while the test watches its output line by line and talks to its stdin.</summary>
    sealed class Running : IDisposable
    {
        readonly Process _p;
        readonly StringBuilder _out = new();
        public Running(string args, Dictionary<string, string> env)
        {
            var psi = new ProcessStartInfo(Client(), args)
            {
                RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false, WorkingDirectory = Repo.Root,
            };
            foreach (var (k, v) in env) psi.Environment[k] = v;
            _p = Process.Start(psi)!;
            _p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_out) _out.AppendLine(e.Data); };
            _p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_out) _out.AppendLine(e.Data); };
            _p.BeginOutputReadLine();
            _p.BeginErrorReadLine();
        }

        public string Output { get { lock (_out) return _out.ToString(); } }
        public int Pid => _p.Id;

        public void WaitForLine(string text, int timeoutMs)
        {
            var sw = Stopwatch.StartNew();
            while (!Output.Contains(text))
            {
                if (_p.HasExited) { _p.WaitForExit(); if (Output.Contains(text)) return; throw new InvalidOperationException($"client exited ({_p.ExitCode}) before '{text}':\n{Output}"); }
                if (sw.ElapsedMilliseconds > timeoutMs) throw new TimeoutException($"client never printed '{text}':\n{Output}");
                Thread.Sleep(10);
            }
        }

        public void Send(string line) { _p.StandardInput.WriteLine(line); _p.StandardInput.Flush(); }

        public int Exit(int timeoutMs)
        {
            if (!_p.WaitForExit(timeoutMs)) throw new TimeoutException($"client still running after {timeoutMs} ms:\n{Output}");
            _p.WaitForExit();
            return _p.ExitCode;
        }

        public void Kill() { _p.Kill(); _p.WaitForExit(); }

        public void Dispose() { if (!_p.HasExited) Kill(); _p.Dispose(); }
    }

    static int Threads(int pid) =>
        int.Parse(File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("Threads:"))["Threads:".Length..].Trim(), CultureInfo.InvariantCulture);

    /// <summary>hostsim and every process under it (session workers, when sessions run in their own processes).</summary>
    static List<int> ProcessTree(int root)
    {
        var parents = new Dictionary<int, int>();
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid)) continue;
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                parents[pid] = int.Parse(fields[1], CultureInfo.InvariantCulture);
            }
            catch (IOException) { }
        }
        var tree = new List<int> { root };
        for (int i = 0; i < tree.Count; i++)
            foreach (var (pid, ppid) in parents) if (ppid == tree[i] && !tree.Contains(pid)) tree.Add(pid);
        return tree;
    }

    static void Signal(string signal, IEnumerable<int> pids)
    {
        var r = Repo.Run("kill", $"-{signal} {string.Join(' ', pids)}");
        // A worker of the tree may have exited in between (the loader's probe session ends at once); every
        // other failure is real.
        var errors = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !l.Contains("No such process")).ToList();
        Assert.True(errors.Count == 0, r.Stderr);
    }

    static int SessionsEnded(HostSim host) => Regex.Count(host.Log, @"session \d+ ended \(");

    /// <summary>Waits until hostsim's thread count is back within <paramref name="slack"/> of <paramref name="baseline"/>; returns the last count.</summary>
    static int SettledThreads(HostSim host, int baseline, int slack, int timeoutMs)
    {
        var sw = Stopwatch.StartNew();
        int n;
        while ((n = Threads(host.Pid)) > baseline + slack && sw.ElapsedMilliseconds < timeoutMs) Thread.Sleep(50);
        return n;
    }

    [Theory]
    [InlineData("fence", "vkWaitForFences")]
    [InlineData("semaphore", "vkWaitSemaphores")]
    [InlineData("queue-idle", "vkQueueWaitIdle")]
    [InlineData("device-idle", "vkDeviceWaitIdle")]
    [InlineData("query", "vkGetQueryPoolResults")]
    public void AGuestKilledInsideAnEndlessWaitIsReleasedAtOnceAndItsNeighbourCarriesOn(string mode, string command)
    {
        using var host = new HostSim();
        int baseline = Threads(host.Pid);
        var env = host.ClientEnv();

        // The neighbour: submit + wait + idle for 4 s, across the bad guest's death.
        using var neighbour = new Running("steady 4000", env);
        using var bad = new Running(mode, env);
        bad.WaitForLine("waiting", 30_000);
        Thread.Sleep(2_000); // the wait reaches the host and the host is inside it, on a loaded machine too
        int ended = SessionsEnded(host);
        Assert.DoesNotContain("guest left during", host.Log);
        var sw = Stopwatch.StartNew();
        bad.Kill();
        // The line comes after the drain and the driver's teardown; a session left in the endless wait never ends.
        host.WaitForLog($"guest left during {command}", 15_000);
        long endedMs = sw.ElapsedMilliseconds;
        output.WriteLine($"{mode}: session ended {endedMs} ms after SIGKILL");
        Assert.True(endedMs < 10_000, $"the session ended {endedMs} ms after the guest was killed\n{host.Log}");
        // Its device was drained (the semaphore it waited on signalled by the host) and destroyed, not left busy.
        host.WaitForLog("timeline signals)", 5_000);
        Assert.DoesNotContain("still busy", host.Log);
        Assert.Matches(@"session \d+: the device drained in \d+ ms after the guest left \([1-9]\d* timeline signals\)", host.Log);

        Assert.Equal(0, neighbour.Exit(60_000));
        Assert.Contains("rounds ok", neighbour.Output);
        host.WaitForLog("guest disconnected", 10_000);
        Assert.True(SessionsEnded(host) > ended);
        Assert.DoesNotContain("protocol error", host.Log);
        Assert.DoesNotContain("internal error", host.Log);

        int after = SettledThreads(host, baseline, slack: 2, timeoutMs: 5_000);
        output.WriteLine($"{mode}: hostsim threads {baseline} before, {after} after");
        Assert.True(after <= baseline + 2, $"hostsim has {after} threads, {baseline} before the guests came\n{host.Log}");
    }

    /// <summary>The host end of TCP (System.IO.Pipelines over the socket) notices the guest leaving too.</summary>
    [Fact]
    public void OverTcpAGuestKilledInsideAnEndlessWaitIsReleasedAtOnce()
    {
        var secretFile = Path.Combine(Directory.CreateTempSubdirectory("guesticd-secret").FullName, "secret");
        File.WriteAllText(secretFile, Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)));
        int port;
        using (var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0)) { probe.Start(); port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port; }
        using var host = new HostSim("--listen", $"tcp:127.0.0.1:{port}", "--secret-file", secretFile);
        host.WaitForLog($"listening on tcp:127.0.0.1:{port}", 10_000);
        var env = new Dictionary<string, string>
        {
            ["VK_DRIVER_FILES"] = HostSim.Manifest, ["GUESTICD_TRANSPORT"] = $"tcp:127.0.0.1:{port}",
            ["GUESTICD_SECRET_FILE"] = secretFile, ["VK_LOADER_LAYERS_DISABLE"] = "*",
        };
        using var bad = new Running("fence", env);
        bad.WaitForLine("waiting", 30_000);
        Thread.Sleep(2_000);
        var sw = Stopwatch.StartNew();
        bad.Kill();
        host.WaitForLog("guest left during vkWaitForFences", 15_000);
        output.WriteLine($"tcp: session ended {sw.ElapsedMilliseconds} ms after SIGKILL");
        Assert.True(sw.ElapsedMilliseconds < 10_000, host.Log);
        host.WaitForLog("timeline signals)", 5_000);
        Assert.DoesNotContain("still busy", host.Log);
        Directory.Delete(Path.GetDirectoryName(secretFile)!, true);
    }

    static readonly Regex Timed = new(@"(fence|semaphore) wait (\d+) ms = (-?\d+) in ([\d.]+) ms");

    /// <summary>Each wait's result and how long it took, as the client measured it.</summary>
    static List<(string What, int Result, double Ms)> TimedWaits(string stdout) =>
        Timed.Matches(stdout).Select(m => (m.Groups[1].Value, int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture), double.Parse(m.Groups[4].Value, CultureInfo.InvariantCulture))).ToList();

    [Fact]
    public void AWaitOnWorkThatCannotFinishTimesOutAtItsTimeoutAndNotBefore()
    {
        using var host = new HostSim();
        var r = Repo.Run(Client(), "timeout 200", host.ClientEnv(), timeoutMs: 60_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        var waits = TimedWaits(r.Stdout);
        Assert.Equal(2, waits.Count);
        foreach (var (what, result, ms) in waits)
        {
            output.WriteLine($"{what}: 200 ms timeout returned {result} after {ms} ms");
            Assert.Equal(2, result); // VK_TIMEOUT
            Assert.True(ms >= 200, $"{what} wait returned after {ms} ms, before its 200 ms timeout");
            Assert.True(ms < 3_000, $"{what} wait took {ms} ms for a 200 ms timeout");
        }
    }

    [Fact]
    public void WithTheHostStoppedAWaitStillReturnsAtItsTimeoutAndTheConnectionRecovers()
    {
        using var host = new HostSim();
        using var client = new Running("stopped 1000", host.ClientEnv());
        client.WaitForLine("ready", 30_000);
        var stopped = ProcessTree(host.Pid);
        Signal("STOP", stopped);
        try
        {
            client.Send("go");
            client.WaitForLine("waited", 15_000);
        }
        finally
        {
            Signal("CONT", ProcessTree(host.Pid).Union(stopped));
        }
        var waits = TimedWaits(client.Output);
        Assert.Equal(2, waits.Count);
        foreach (var (what, result, ms) in waits)
        {
            output.WriteLine($"{what}: 1000 ms timeout with the host stopped returned {result} after {ms} ms");
            Assert.Equal(2, result);
            Assert.True(ms >= 1_000, $"{what} wait returned after {ms} ms, before its timeout");
            Assert.True(ms < 3_000, $"{what} wait took {ms} ms for a 1000 ms timeout while the host was stopped\n{client.Output}");
        }
        // The host answers both waits late; the guest skips those answers and the next calls get their own.
        client.Send("go");
        Assert.Equal(0, client.Exit(30_000));
        var o = client.Output;
        Assert.Contains("counter = 0 value 0", o);
        Assert.Contains("signal 1 = 0", o);
        Assert.Contains("fence wait after signal = 0", o);
        Assert.Contains("semaphore wait after signal = 0", o);
        Assert.Contains("device wait idle = 0", o);
        Assert.Contains("final value 2", o);
        host.WaitForLog("guest disconnected", 10_000);
        Assert.DoesNotContain("protocol error", host.Log);
    }
}
