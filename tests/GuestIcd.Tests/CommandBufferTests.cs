using System.Text.RegularExpressions;

namespace GuestIcd.Tests;

/// <summary>Command buffers record guest-side and travel at submit (issue 8 points 2 and 5), through the real
/// loader, ICD and hostsim: allocate-record-submit-free churn leaves the ICD's memory flat and hostsim's live
/// objects where they started, and either side speaking protocol 1.0 still gets the old per-command path.</summary>
public class CommandBufferTests
{
    static readonly Lazy<string> s_churn = new(() =>
    {
        var exe = Path.Combine(Path.GetTempPath(), $"guesticd-cmdbuf-churn-{Environment.ProcessId}");
        var cc = Repo.Run("cc", $"-std=c11 -O1 -Wall -Werror -o {exe} native-shim/clients/cmdbuf_churn.c -lvulkan");
        Assert.True(cc.ExitCode == 0, cc.Stderr);
        return exe;
    });

    /// <summary>The issue's 100,000 cycles (about 55 s on 2 loaded cores); GUESTICD_CHURN_CYCLES overrides.</summary>
    static int Cycles => int.TryParse(Environment.GetEnvironmentVariable("GUESTICD_CHURN_CYCLES"), out var n) && n > 0 ? n : 100_000;

    [Fact]
    public void AllocateRecordSubmitFreeChurnKeepsTheIcdFlatAndHostsimsObjectsBackToTheirStart()
    {
        using var host = new HostSim("--log-level", "Debug");
        var r = Repo.Run(s_churn.Value, Cycles.ToString(), host.ClientEnv(), timeoutMs: 600_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        Assert.Contains($"churn: {Cycles} cycles, last value {Cycles}", r.Stdout);
        var rss = Regex.Match(r.Stdout, @"rss-kib warm=(\d+) end=(\d+)");
        Assert.True(rss.Success, r.Stdout);
        long warm = long.Parse(rss.Groups[1].Value), end = long.Parse(rss.Groups[2].Value);
        // Private resident memory over the last nine tenths of the cycles: a leak of 16 bytes a cycle would show.
        Assert.True(end - warm < 1024, $"the ICD's private resident memory grew from {warm} to {end} KiB over {Cycles * 9 / 10} cycles");
        host.WaitForLog("guest objects live", 2, 10_000);
        var live = Regex.Matches(host.Log, @"vkDeviceWaitIdle with (\d+) guest objects live").Select(m => int.Parse(m.Groups[1].Value)).ToList();
        Assert.True(live.Count >= 2, host.Log);
        Assert.Equal(live[^2], live[^1]);
        Assert.DoesNotContain("protocol error", host.Log);
    }

    /// <summary>Begin, end and reset travel in the recording and are never answered: per cycle the churn client waits
    /// for two replies fewer on protocol 1.1 than on 1.0 (the same hostsim, the same 1,000 cycles).</summary>
    [Fact]
    public void BeginAndEndNeverWaitForTheHost()
    {
        using var host = new HostSim();
        var env = host.ClientEnv();
        var r = Repo.Run(s_churn.Value, "1000", env, timeoutMs: 300_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        env["GUESTICD_PROTOCOL_VERSION"] = "1.0";
        r = Repo.Run(s_churn.Value, "1000", env, timeoutMs: 300_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        // The loader's probes are sessions too; the churn sessions are the ones with thousands of commands.
        List<(long Commands, long Replies)> Ends() => Regex.Matches(host.Log, @"ended \(guest disconnected\): (\d+) commands, \d+ bytes in, (\d+) replies")
            .Select(m => (Commands: long.Parse(m.Groups[1].Value), Replies: long.Parse(m.Groups[2].Value))).Where(e => e.Commands > 5000).ToList();
        var ends = Ends();
        for (var sw = System.Diagnostics.Stopwatch.StartNew(); ends.Count < 2 && sw.ElapsedMilliseconds < 10_000; ends = Ends()) Thread.Sleep(50);
        Assert.True(ends.Count == 2, host.Log);
        var (recorded, old) = (ends[0].Replies, ends[1].Replies);
        Assert.True(recorded <= old - 2 * 1000, $"replies: {recorded} on protocol 1.1, {old} on 1.0");
    }

    /// <summary>Protocol 1.2 (AsyncResults): vkQueueSubmit and vkResetFences are answered VK_SUCCESS by the ICD and
    /// travel without a reply wanted: the churn client's 1,000 cycles make none of their round trips (1,000 each
    /// on 1.1, counted by GUESTICD_STATS), and every cycle's result is still right.</summary>
    [Fact]
    public void SubmitsAndFenceResetsDoNotWaitForTheHost()
    {
        using var host = new HostSim();
        var env = host.ClientEnv();
        env["GUESTICD_STATS"] = "1";
        Dictionary<string, long> RoundTrips(Repo.Result r)
        {
            Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
            Assert.Contains("churn: 1000 cycles, last value 1000", r.Stdout);
            var line = r.Stderr.Split('\n').Last(l => l.StartsWith("GuestIcd stats: round trips by command:"));
            return Regex.Matches(line, @" (\w+) ([\d,]+)").ToDictionary(m => m.Groups[1].Value, m => long.Parse(m.Groups[2].Value.Replace(",", "")));
        }
        var now = RoundTrips(Repo.Run(s_churn.Value, "1000", env, timeoutMs: 300_000));
        env["GUESTICD_PROTOCOL_VERSION"] = "1.1";
        var before = RoundTrips(Repo.Run(s_churn.Value, "1000", env, timeoutMs: 300_000));
        Assert.False(now.ContainsKey("vkQueueSubmit") || now.ContainsKey("vkResetFences"), string.Join(" ", now));
        Assert.True(before.GetValueOrDefault("vkQueueSubmit") >= 1000 && before.GetValueOrDefault("vkResetFences") >= 1000, string.Join(" ", before));
        Assert.Contains("protocol 1.2 agreed", host.Log);
        Assert.Contains("protocol 1.1 agreed", host.Log);
        Assert.DoesNotContain("protocol error", host.Log);
    }

    [Theory]
    [InlineData("guest")]
    [InlineData("host")]
    public void AProtocol10PeerGetsEveryCommandAsItsOwnMessage(string older)
    {
        using var host = older == "host" ? new HostSim("--protocol-version", "1.0") : new HostSim();
        var env = host.ClientEnv();
        if (older == "guest") env["GUESTICD_PROTOCOL_VERSION"] = "1.0";
        var r = Repo.Run(s_churn.Value, "1000", env, timeoutMs: 300_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        Assert.Contains("churn: 1000 cycles, last value 1000", r.Stdout);
        Assert.Contains("protocol 1.0 agreed", host.Log);
        Assert.DoesNotContain("protocol error", host.Log);
    }
}
