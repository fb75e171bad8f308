using System.Text.RegularExpressions;

namespace GuestIcd.Tests;

/// <summary>vkDestroyInstance keeps its host session for the process's next vkCreateInstance (SessionReuse.cs in
/// the ICD): a real client (native-shim/clients/recreate.c) creates and destroys instance + device several times
/// through the loader, the ICD and a real hostsim, each round using its new device; the host log counts the
/// sessions it took.</summary>
public class SessionReuseTests
{
    static readonly Lazy<string> Built = new(() =>
    {
        var exe = Path.Combine(Directory.CreateTempSubdirectory("guesticd-recreate").FullName, "recreate");
        var cc = Repo.Run("cc", $"-std=c11 -O1 -Wall -Werror -o {exe} native-shim/clients/recreate.c -lvulkan");
        Assert.True(cc.ExitCode == 0, cc.Stderr);
        return exe;
    });

    static int Sessions(string log) => Regex.Matches(log, @"session \d+: guest features").Count;

    [Theory]
    [InlineData("", 1)]      // the rounds after the first take the kept session
    [InlineData("default", 1)] // the same without GUESTICD_SESSION_KEEP_MS: keeping is the default
    [InlineData("leak", 3)]  // a device left alive (invalid usage): nothing is kept, each round its own session
    [InlineData("off", 3)]   // GUESTICD_SESSION_KEEP_MS=0
    public void RoundsShareOneSessionOnlyWhenTheApplicationCleanedUp(string mode, int sessions)
    {
        using var host = new HostSim();
        var env = host.ClientEnv();
        env["GUESTICD_SESSION_KEEP_MS"] = mode == "off" ? "0" : "2000";
        if (mode == "default") env.Remove("GUESTICD_SESSION_KEEP_MS");
        var r = Repo.Run(Built.Value, mode == "leak" ? "3 leak" : "3", env, timeoutMs: 120_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        for (int i = 0; i < 3; i++) Assert.Contains($"round {i}: ok", r.Stdout);
        host.WaitForLog("ended (guest disconnected)", sessions, 30_000);
        Assert.Equal(sessions, Sessions(host.Log));
        Assert.DoesNotContain("protocol error", host.Log);
    }

    /// <summary>The driver's instance waits for the guest's next vkCreateInstance (ParkedInstance.cs), and only one
    /// with the same create info takes it back; each round's device still works (recreate.c submits on it).</summary>
    [Theory]
    [InlineData("", 2)]     // rounds 1 and 2 take the driver instance round 0 left
    [InlineData("vary", 0)] // another application version each round: a new driver instance each time
    public void TheDriverInstanceIsTakenBackOnlyForTheSameCreateInfo(string mode, int taken)
    {
        using var host = new HostSim("--log-level", "Debug");
        var r = Repo.Run(Built.Value, $"3 {mode}".Trim(), host.ClientEnv(), timeoutMs: 120_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        for (int i = 0; i < 3; i++) Assert.Contains($"round {i}: ok", r.Stdout);
        host.WaitForLog("ended (guest disconnected)", 1, 30_000);
        Assert.Equal(1, Sessions(host.Log));
        Assert.Equal(taken, Regex.Matches(host.Log, "vkCreateInstance takes the driver instance the guest's last one left").Count);
        Assert.DoesNotContain("protocol error", host.Log);
    }

    /// <summary>A kept session that no instance takes ends on its own, so a process that stops using Vulkan does
    /// not hold a host worker for the rest of its life.</summary>
    [Fact]
    public async Task AKeptSessionEndsWhenNoInstanceComes()
    {
        using var host = new HostSim();
        var env = host.ClientEnv();
        env["GUESTICD_SESSION_KEEP_MS"] = "300";
        // One round, then the process lives on without Vulkan: its session must end while it still runs.
        var run = Task.Run(() => Repo.Run("bash", $"-c \"{Built.Value} 1 && sleep 30\"", env, timeoutMs: 120_000));
        host.WaitForLog("ended (guest disconnected)", 1, 25_000);
        Assert.False(run.IsCompleted, "the client exited before its session ended: " + host.Log);
        var r = await run;
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        Assert.Contains("round 0: ok", r.Stdout);
    }
}
