using System.Text.RegularExpressions;

namespace GuestIcd.Tests;

/// <summary>GUESTICD_STATS=1 (src/GuestIcd.Icd/Stats.cs): each connection prints what it cost when it closes,
/// from counters at the places the ICD really sends, waits and answers from its cache.</summary>
public class StatsTests
{
    static Dictionary<string, long> Counts(string line) =>
        Regex.Matches(line, @" (\w+) ([\d,]+)").ToDictionary(m => m.Groups[1].Value, m => long.Parse(m.Groups[2].Value.Replace(",", "")));

    [Fact]
    public void VulkaninfoPrintsItsRoundTripsByCommandAndTheLoadersRepeatedEnumerationsComeFromTheCache()
    {
        using var host = new HostSim();
        var env = host.ClientEnv();
        env["GUESTICD_STATS"] = "1";
        var r = Repo.Run("vulkaninfo", "--summary", env, timeoutMs: 120_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        // The instance's connection is the one that created a device (the loader's probes only say hello).
        var lines = r.Stderr.Split('\n').Where(l => l.StartsWith("GuestIcd stats: ")).ToList();
        int summary = lines.FindLastIndex(l => l.Contains(" round trips (the hello included)"));
        Assert.True(summary >= 0 && summary + 2 < lines.Count, r.Stderr);
        var head = lines[summary];
        var trips = Counts(lines[summary + 1]["GuestIcd stats: round trips by command:".Length..]);
        long total = long.Parse(Regex.Match(head, @"; ([\d,]+) round trips").Groups[1].Value.Replace(",", ""));
        Assert.Equal(total, trips.Values.Sum());
        Assert.Equal(1, trips["hello"]);
        Assert.Equal(1, trips["vkCreateInstance"]);
        Assert.Equal(1, trips["vkCreateDevice"]);
        // The loader enumerates again for each of vulkaninfo's calls: the count and the list cross once each.
        Assert.True(trips["vkEnumeratePhysicalDevices"] <= 2, lines[summary + 1]);
        var cached = lines.Skip(summary + 2).First(l => l.StartsWith("GuestIcd stats: answered from the query cache:"));
        Assert.True(Counts(cached["GuestIcd stats: answered from the query cache:".Length..])["vkEnumeratePhysicalDevices"] > 0, cached);
        Assert.Matches(@"[\d.,]+ KiB sent, [\d.,]+ KiB received; [\d.,]+ ms waiting for replies", head);
        Assert.DoesNotContain("KiB sent, 0.0 KiB received", head);

        env.Remove("GUESTICD_STATS");
        var quiet = Repo.Run("vulkaninfo", "--summary", env, timeoutMs: 120_000);
        Assert.True(quiet.ExitCode == 0, quiet.Stderr);
        Assert.DoesNotContain("GuestIcd stats", quiet.Stderr);
    }
}
