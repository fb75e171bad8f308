using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using GuestIcd.Protocol;

namespace GuestIcd.Tests;

/// <summary>Operating a running hostsim (README "Operating hostsim"): <c>status</c> over its owner-only control
/// socket and <c>serve --metrics</c>, both asked while a real guest (the lifetime client, through the real
/// loader and ICD) holds its session open; refused handshakes counted; the session gone from both once the
/// guest has left.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class OperationsTests
{
    static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    static string ControlPath() => Path.Combine(Directory.CreateTempSubdirectory("guesticd-ops").FullName, "run", "hostsim.ctl");

    static JsonElement Status(string control)
    {
        var r = Repo.Run(HostSim.Executable, $"status --socket {control} --json", timeoutMs: 30_000);
        Assert.True(r.ExitCode == 0, $"status failed ({r.ExitCode}): {r.Stderr}{r.Stdout}");
        return JsonDocument.Parse(r.Stdout).RootElement;
    }

    static string Scrape(int port)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(15) };
        return http.GetStringAsync($"http://127.0.0.1:{port}/metrics").GetAwaiter().GetResult();
    }

    /// <summary>The value of one series (name and labels exactly as exposed); null when absent.</summary>
    static double? Series(string scrape, string series)
    {
        var m = Regex.Match(scrape, "^" + Regex.Escape(series) + @" (\S+)$", RegexOptions.Multiline);
        return m.Success ? double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : null;
    }

    static void Eventually(Func<bool> condition, string what, Func<string> log, int timeoutMs = 20_000)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.ElapsedMilliseconds > timeoutMs) Assert.Fail($"{what} within {timeoutMs} ms:\n{log()}");
            Thread.Sleep(100);
        }
    }

    static Process StartHolder(Dictionary<string, string> env)
    {
        var psi = new ProcessStartInfo(LifetimeGuests.Client, "hold 16")
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var (k, v) in env) psi.Environment[k] = v;
        var p = Process.Start(psi)!;
        p.ErrorDataReceived += (_, _) => { };
        p.BeginErrorReadLine();
        var ready = p.StandardOutput.ReadLineAsync();
        if (!ready.Wait(60_000) || ready.Result != "ready")
        {
            p.Kill();
            throw new InvalidOperationException($"the guest said '{(ready.IsCompleted ? ready.Result : "nothing")}' instead of ready");
        }
        return p;
    }

    [Fact]
    public void StatusAndMetricsShowALiveGuestsSessionCountRefusalsAndForgetTheSessionWhenItEnds()
    {
        var control = ControlPath();
        int metricsPort = FreePort();
        using var host = new LifetimeGuests.Host(LifetimeGuests.Via.Tcp, null, "--control", control, "--metrics", $"127.0.0.1:{metricsPort}");
        host.Sim.WaitForLog("metrics at", 10_000);

        // Owner-only: the socket 0600, in a directory hostsim made 0700.
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(control));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(Path.GetDirectoryName(control)!));

        // A unix guest that holds 16 MiB of device memory and waits on stdin.
        var env = host.Sim.ClientEnv();
        using var guest = StartHolder(env);

        var report = Status(control);
        Assert.Equal(host.Sim.Pid, report.GetProperty("pid").GetInt32());
        var mine = report.GetProperty("sessions").EnumerateArray()
            .Where(s => s.GetProperty("peer_pid").ValueKind == JsonValueKind.Number && s.GetProperty("peer_pid").GetInt32() == guest.Id).ToList();
        Assert.True(mine.Count == 1, $"status lists no single session of guest pid {guest.Id}:\n{report}");
        var session = mine[0];
        int id = session.GetProperty("id").GetInt32();
        Assert.Equal("unix", session.GetProperty("transport").GetString());
        Assert.Equal($"pid {guest.Id}", session.GetProperty("peer").GetString());
        Assert.Equal($"{Handshake.ProtocolMajor}.{Handshake.ProtocolMinor}", session.GetProperty("protocol").GetString());
        Assert.True(session.GetProperty("worker_pid").GetInt32() is int worker && worker != host.Sim.Pid && worker > 0, "the session runs in a worker process");
        foreach (var field in new[] { "commands", "bytes_in", "bytes_out", "round_trips", "live_objects" })
            Assert.True(session.GetProperty(field).GetInt64() > 0, $"{field} is 0:\n{session}");
        Assert.True(session.GetProperty("memory_bytes").GetInt64() >= 16L << 20, $"the guest holds 16 MiB:\n{session}");
        Assert.Equal(0, session.GetProperty("errors").GetInt64());
        Assert.True(report.GetProperty("sessions_active").GetInt32() >= 1);

        // The same figures, labelled by session and transport, in the Prometheus text format.
        string key = $"{{session=\"{id}\",transport=\"unix\"}}";
        var scrape = Scrape(metricsPort);
        Assert.Contains("# TYPE guesticd_session_commands_total counter", scrape);
        Assert.True(Series(scrape, "guesticd_session_commands_total" + key) >= session.GetProperty("commands").GetInt64(), scrape);
        Assert.True(Series(scrape, "guesticd_session_bytes_in_total" + key) > 0, scrape);
        Assert.True(Series(scrape, "guesticd_session_round_trips_total" + key) > 0, scrape);
        Assert.True(Series(scrape, "guesticd_session_memory_bytes" + key) >= 16 << 20, scrape);
        Assert.Contains($"guesticd_session_info{{session=\"{id}\",transport=\"unix\",peer=\"pid {guest.Id}\"", scrape);
        Assert.True(Series(scrape, "guesticd_sessions_active") >= 1, scrape);
        Assert.True(Series(scrape, "guesticd_sessions_total") >= 1, scrape);
        Assert.Equal(0, Series(scrape, "guesticd_refused_handshakes_total{reason=\"wrong_secret\"}"));

        // A TCP guest (authenticated, relayed to its worker) is listed by its address.
        using (var tcpGuest = StartHolder(host.Env()))
        {
            var tcp = Status(control).GetProperty("sessions").EnumerateArray().Where(s => s.GetProperty("transport").GetString() == "tcp").ToList();
            Assert.True(tcp.Count == 1, $"status lists no single tcp session:\n{Status(control)}");
            Assert.StartsWith("127.0.0.1:", tcp[0].GetProperty("peer").GetString());
            Assert.Equal(JsonValueKind.Null, tcp[0].GetProperty("peer_pid").ValueKind);
            Assert.True(tcp[0].GetProperty("commands").GetInt64() > 0 && tcp[0].GetProperty("round_trips").GetInt64() > 0, tcp[0].ToString());
            tcpGuest.StandardInput.Close();
            Assert.True(tcpGuest.WaitForExit(30_000), "the tcp guest did not exit");
        }

        // A TCP guest with the wrong secret is refused and counted, in both.
        var wrong = Path.Combine(Path.GetDirectoryName(control)!, "..", "wrong-secret");
        File.WriteAllText(wrong, "definitely-not-the-shared-secret-0123456789");
        var tcpEnv = host.Env();
        tcpEnv["GUESTICD_SECRET_FILE"] = wrong;
        var refused = Repo.Run(LifetimeGuests.Client, "hold 1", tcpEnv, 30_000);
        Assert.NotEqual(0, refused.ExitCode);
        // (The loader's probe and the instance each try: one or two refusals.)
        Eventually(() =>
        {
            int logged = Regex.Count(host.Sim.Log, "presented the wrong shared secret");
            return logged >= 1 && Status(control).GetProperty("refused").GetProperty("wrong_secret").GetInt64() == logged
                && Series(Scrape(metricsPort), "guesticd_refused_handshakes_total{reason=\"wrong_secret\"}") == logged;
        }, "status and metrics did not count each wrong secret the log reports", () => host.Sim.Log);

        // --watch without a terminal: one plain table a refresh.
        var watch = Repo.Run("timeout", $"-s INT 3 {HostSim.Executable} status --socket {control} --watch --interval-ms 300", timeoutMs: 30_000);
        Assert.True(Regex.Count(watch.Stdout, @"^hostsim pid \d+", RegexOptions.Multiline) >= 2, $"--watch refreshed fewer than twice:\n{watch.Stdout}{watch.Stderr}");
        Assert.Matches($@"(?m)^{id}\s+unix\s+pid {guest.Id}\s", watch.Stdout);

        // The guest leaves: its session goes from status and from the metrics.
        guest.StandardInput.Close();
        Assert.True(guest.WaitForExit(30_000), "the guest did not exit");
        Eventually(() => !Status(control).GetProperty("sessions").EnumerateArray().Any(s => s.GetProperty("id").GetInt32() == id),
            $"session {id} still listed after its guest exited", () => host.Sim.Log);
        Eventually(() => !Scrape(metricsPort).Contains($"session=\"{id}\""), $"session {id}'s series still exposed", () => host.Sim.Log);
        scrape = Scrape(metricsPort);
        Assert.True(Series(scrape, "guesticd_sessions_ended_total{reason=\"disconnected\"}") >= 1, scrape);
        host.Sim.WaitForLog($"session {id} ended (guest disconnected)", 10_000);
    }

    [Fact]
    public void AHelloOfAnotherMajorVersionIsCountedAsRefusedAndTheControlSocketIsTheOwners()
    {
        var control = ControlPath();
        int metricsPort = FreePort();
        using var host = new HostSim("--protocol-version", $"{Handshake.ProtocolMajor + 1}.0", "--warm-workers", "0", "--control", control, "--metrics", $"127.0.0.1:{metricsPort}");
        host.WaitForLog("metrics at", 10_000);
        var r = Repo.Run(LifetimeGuests.Client, "hold 1", host.ClientEnv(), 30_000);
        Assert.NotEqual(0, r.ExitCode);
        host.WaitForLog("no common major version", 10_000);
        Eventually(() => Series(Scrape(metricsPort), "guesticd_refused_handshakes_total{reason=\"protocol_version\"}") >= 1, "the refused hello was not counted", () => host.Log);
        var report = Status(control);
        Assert.True(report.GetProperty("refused").GetProperty("protocol_version").GetInt64() >= 1, report.ToString());
        Assert.Equal(0, report.GetProperty("sessions_active").GetInt32());
        Assert.Equal(0, report.GetProperty("sessions_total").GetInt64());

        // Another user is turned away (as root, setpriv drops to nobody, where nobody can run the build at all).
        const string nobody = "--reuid=65534 --regid=65534 --clear-groups";
        if (Environment.UserName == "root" && Repo.Run("setpriv", $"{nobody} test -x {HostSim.Executable}").ExitCode == 0)
        {
            var other = Repo.Run("setpriv", $"{nobody} {HostSim.Executable} status --socket {control} --json", timeoutMs: 30_000);
            Assert.Equal(1, other.ExitCode);
            Assert.Contains("permission denied", other.Stderr);
            Assert.DoesNotContain("\"sessions\"", other.Stdout);
        }

        // Stopped (SIGTERM, as systemd stops it), it takes its socket with it.
        Assert.Equal(0, Repo.Run("kill", $"-TERM {host.Pid}").ExitCode);
        Eventually(() => host.HasExited, "hostsim did not stop on SIGTERM", () => host.Log);
        Assert.False(File.Exists(control), "the control socket outlived its hostsim");
        var gone = Repo.Run(HostSim.Executable, $"status --socket {control}", timeoutMs: 30_000);
        Assert.Equal(1, gone.ExitCode);
        Assert.Contains("no hostsim answers", gone.Stderr);
    }

    [Fact]
    public void AWorkerThatCrashesIsCountedAndItsSessionLeavesTheStatus()
    {
        var control = ControlPath();
        int metricsPort = FreePort();
        using var host = new HostSim("--debug-crash-on-sigusr2", "--warm-workers", "1", "--control", control, "--metrics", $"127.0.0.1:{metricsPort}");
        host.WaitForLog("metrics at", 10_000);
        using var guest = StartHolder(host.ClientEnv());
        var session = Status(control).GetProperty("sessions").EnumerateArray().Single(s => s.GetProperty("peer_pid").GetInt32() == guest.Id);
        int id = session.GetProperty("id").GetInt32(), worker = session.GetProperty("worker_pid").GetInt32();
        // The worker faults inside native code, as a driver bug would.
        Assert.Equal(0, Repo.Run("kill", $"-USR2 {worker}").ExitCode);
        host.WaitForLog($"worker pid {worker} died of SIGSEGV", 30_000);
        Eventually(() =>
        {
            var r = Status(control);
            return r.GetProperty("worker_crashes").GetInt64() == 1 && r.GetProperty("session_ends").GetProperty("worker_crash").GetInt64() == 1
                && !r.GetProperty("sessions").EnumerateArray().Any(s => s.GetProperty("id").GetInt32() == id);
        }, "status did not count the crash and drop its session", () => host.Log);
        var scrape = Scrape(metricsPort);
        Assert.Equal(1, Series(scrape, "guesticd_worker_crashes_total"));
        Assert.Equal(1, Series(scrape, "guesticd_sessions_ended_total{reason=\"worker_crash\"}"));
        Assert.DoesNotContain($"session=\"{id}\"", scrape);
        guest.Kill();
    }
}
