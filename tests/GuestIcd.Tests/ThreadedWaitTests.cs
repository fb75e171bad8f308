using System.Globalization;
using System.Text.RegularExpressions;
using Xunit.Abstractions;

namespace GuestIcd.Tests;

/// <summary>No wait holds the connection (issue 8 point 3): native-shim/clients/threads_wait.c waits on one
/// thread while another signals the timeline it waits for, or runs short jobs next to a long one, through the
/// real loader, ICD and hostsim. Every deterministic line reads as on lavapipe directly; the functional bound
/// is that the other thread's work finishes while the wait is still pending (on a connection held by the
/// wait it could not even start). Over the unix ring the fence and timeline reads come from feedback slots,
/// over TCP from the host; an ICD speaking protocol 1.0 (replies in order, no slots) still synchronises right.</summary>
public class ThreadedWaitTests(ITestOutputHelper output)
{
    static readonly Lazy<string> Built = new(() =>
    {
        var exe = Path.Combine(Directory.CreateTempSubdirectory("guesticd-threads-wait").FullName, "threads_wait");
        var cc = Repo.Run("cc", $"-std=c11 -Wall -Werror -O1 -pthread -o {exe} native-shim/clients/threads_wait.c -lvulkan");
        Assert.True(cc.ExitCode == 0, cc.Stderr);
        return exe;
    });

    static string Deterministic(string stdout) => string.Join("\n", stdout.Split('\n').Where(l => l.Length > 0 && !l.Contains(" ms")));

    static double Ms(string stdout, string pattern) =>
        double.Parse(Regex.Match(stdout, pattern).Groups[1].Value, CultureInfo.InvariantCulture);

    (string Native, string Via) Run(string mode, HostSim host, Dictionary<string, string> env)
    {
        var native = Repo.Run(Built.Value, mode, new Dictionary<string, string> { ["VK_DRIVER_FILES"] = HostSim.LavapipeManifest }, timeoutMs: 60_000);
        Assert.True(native.ExitCode == 0, native.Stdout + native.Stderr);
        var via = Repo.Run(Built.Value, mode, env, timeoutMs: 60_000);
        output.WriteLine(via.Stdout);
        Assert.True(via.ExitCode == 0, via.Stdout + via.Stderr + host.Log);
        Assert.Equal(Deterministic(native.Stdout), Deterministic(via.Stdout));
        return (native.Stdout, via.Stdout);
    }

    [Fact]
    public void ATimelineWaitedOnOneThreadCompletesWhenAnotherThreadSignalsIt()
    {
        using var host = new HostSim();
        var (_, via) = Run("signal", host, host.ClientEnv());
        Assert.Contains("waiter still waiting before the signal = 1", via);
        Assert.Contains("counter right after the signal = 5", via);
        Assert.Contains("waiter result = 0", via);
        // Answered once the signal arrived, not at the wait's 10 s timeout.
        Assert.True(Ms(via, @"waiter returned (-?[\d.]+) ms after the signal") < 3_000, via);
        host.WaitForLog("guest disconnected", 10_000);
        Assert.DoesNotContain("protocol error", host.Log);
    }

    [Fact]
    public void AThreadBlockedOnALongJobDoesNotHoldUpAnotherThreadsShortJobs()
    {
        using var host = new HostSim();
        var (_, via) = Run("busy", host, host.ClientEnv());
        AssertBusy(via);
        host.WaitForLog("guest disconnected", 10_000);
        Assert.DoesNotContain("protocol error", host.Log);
    }

    static void AssertBusy(string via)
    {
        Assert.Contains("short jobs right = 20 of 20", via);
        Assert.Contains("polled short fence = 0", via);
        Assert.Contains("long wait still pending after the short jobs = 1", via);
        Assert.Contains("long fence status meanwhile = 1", via); // VK_NOT_READY
        Assert.Contains("long wait result = 0", via);
        Assert.Contains("counter after the long job = 2", via);
        Assert.True(Ms(via, @"long wait returned (-?[\d.]+) ms after the signal") < 3_000, via);
    }

    [Fact]
    public void OverTcpWithoutFeedbackSlotsTheWaitsStillLetOthersRun()
    {
        var secretFile = Path.Combine(Directory.CreateTempSubdirectory("guesticd-secret").FullName, "secret");
        File.WriteAllText(secretFile, Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)));
        int port;
        using (var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0)) { l.Start(); port = ((System.Net.IPEndPoint)l.LocalEndpoint).Port; }
        using var host = new HostSim("--listen", $"tcp:127.0.0.1:{port}", "--secret-file", secretFile);
        host.WaitForLog($"listening on tcp:127.0.0.1:{port}", 10_000);
        var env = new Dictionary<string, string>
        {
            ["VK_DRIVER_FILES"] = HostSim.Manifest, ["GUESTICD_TRANSPORT"] = $"tcp:127.0.0.1:{port}",
            ["GUESTICD_SECRET_FILE"] = secretFile, ["VK_LOADER_LAYERS_DISABLE"] = "*",
        };
        var (_, signal) = Run("signal", host, env);
        Assert.Contains("waiter result = 0", signal);
        var (_, busy) = Run("busy", host, env);
        AssertBusy(busy);
        Assert.DoesNotContain("protocol error", host.Log);
    }

    /// <summary>An ICD that speaks 1.0 gets replies in order and no slots, and synchronises as before
    /// (sync.c's output still matches lavapipe's); a 1.1 ICD and a 1.0 host agree on 1.0 the same way.</summary>
    [Fact]
    public void Protocol1_0OnEitherSideStillSynchronisesRight()
    {
        var exe = Path.Combine(Directory.CreateTempSubdirectory("guesticd-sync10").FullName, "sync");
        var cc = Repo.Run("cc", $"-std=c11 -Wall -Werror -o {exe} native-shim/clients/sync.c -lvulkan");
        Assert.True(cc.ExitCode == 0, cc.Stderr);
        var native = Repo.Run(exe, "", new Dictionary<string, string> { ["VK_DRIVER_FILES"] = HostSim.LavapipeManifest });
        Assert.Equal(0, native.ExitCode);
        using (var host = new HostSim())
        {
            var env = host.ClientEnv();
            env["GUESTICD_PROTOCOL_VERSION"] = "1.0";
            var old = Repo.Run(exe, "", env, timeoutMs: 60_000);
            Assert.True(old.ExitCode == 0, old.Stdout + old.Stderr + host.Log);
            Assert.Equal(native.Stdout, old.Stdout);
            Assert.Contains("protocol 1.0 agreed", host.Log);
        }
        using (var oldHost = new HostSim("--protocol-version", "1.0"))
        {
            var r = Repo.Run(exe, "", oldHost.ClientEnv(), timeoutMs: 60_000);
            Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + oldHost.Log);
            Assert.Equal(native.Stdout, r.Stdout);
            Assert.Contains("protocol 1.0 agreed", oldHost.Log);
            Assert.DoesNotContain("guest features", oldHost.Log);
        }
    }
}
