namespace GuestIcd.Tests;

/// <summary>Fences, timeline semaphores, events, queries and idle waits read the same through the ICD as
/// on lavapipe directly (native-shim/clients/sync.c prints every result), timeouts included.</summary>
public class SyncClientTests
{
    [Fact]
    public void SynchronisationBehavesAsOnTheDriverItself()
    {
        var exe = Path.Combine(Directory.CreateTempSubdirectory("guesticd-sync").FullName, "sync");
        var cc = Repo.Run("cc", $"-std=c11 -Wall -Werror -o {exe} native-shim/clients/sync.c -lvulkan");
        Assert.True(cc.ExitCode == 0, cc.Stderr);
        var native = Repo.Run(exe, "", new Dictionary<string, string> { ["VK_DRIVER_FILES"] = HostSim.LavapipeManifest });
        Assert.Equal(0, native.ExitCode);

        using var host = new HostSim();
        var via = Repo.Run(exe, "", host.ClientEnv(), timeoutMs: 60_000);
        Assert.True(via.ExitCode == 0, via.Stdout + via.Stderr + host.Log);
        Assert.Equal(native.Stdout, via.Stdout);
        // The output really covers what it claims to (VK_TIMEOUT = 2, VK_NOT_READY = 1, VK_EVENT_SET = 3).
        Assert.Contains("wait new fence, timeout 1 ms = 2", via.Stdout);
        Assert.Contains("fence status, after reset = 1", via.Stdout);
        Assert.Contains("wait 11, timeout 1 ms = 2", via.Stdout);
        Assert.Contains("timeline after submit = 12", via.Stdout);
        Assert.Contains("event, after device idle = 3", via.Stdout);
        Assert.Contains("timestamps ordered = 1", via.Stdout);
        Assert.Contains("5000 polls agree = 1", via.Stdout);
        // 10,000 status polls of fences whose state cannot change cost no round trip.
        host.WaitForLog("guest disconnected", 1, 10_000);
        var commands = System.Text.RegularExpressions.Regex.Matches(host.Log, @"ended \(guest disconnected\): (\d+) commands").Select(m => int.Parse(m.Groups[1].Value)).Max();
        Assert.InRange(commands, 20, 200);
        Directory.Delete(Path.GetDirectoryName(exe)!, true);
    }
}
