namespace GuestIcd.Tests;

public class GeneratedCodeTests
{
    /// <summary>Generated/ is checked in; this proves it is what the generator writes from the pinned registry today.</summary>
    [Fact]
    public void CheckedInGeneratedCodeIsUpToDate()
    {
        var tmp = Directory.CreateTempSubdirectory("guesticd-gen").FullName;
        try
        {
            var r = Repo.Run("dotnet", $"run --project src/GuestIcd.Generator -c Release -- --out {tmp}", timeoutMs: 300_000);
            Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
            var written = Directory.GetFiles(tmp, "*", SearchOption.AllDirectories);
            Assert.True(written.Length >= 10, "the generator wrote too few files");
            foreach (var f in written)
            {
                var rel = Path.GetRelativePath(tmp, f);
                var mine = Repo.PathOf(rel);
                Assert.True(File.Exists(mine), $"{rel} is generated but not checked in");
                Assert.True(File.ReadAllText(f) == File.ReadAllText(mine), $"{rel} differs from what the generator writes: run the generator and commit");
            }
            // Nothing stale: every checked-in Generated/ file is one the generator still writes.
            foreach (var dir in new[] { "src", "hostsim", "tests", "native-shim" })
                foreach (var f in Directory.GetFiles(Repo.PathOf(dir), "*", SearchOption.AllDirectories)
                             .Where(f => f.Contains("/Generated/") && !f.Contains("/bin/") && !f.Contains("/obj/")))
                    Assert.True(File.Exists(Path.Combine(tmp, Path.GetRelativePath(Repo.Root, f))), $"{f} is no longer generated");
        }
        finally { Directory.Delete(tmp, true); }
    }

    [Fact]
    public void TheGeneratorRefusesAnotherRegistryVersionUnlessTold()
    {
        var tmp = Directory.CreateTempSubdirectory("guesticd-reg").FullName;
        try
        {
            var xml = File.ReadAllText("/usr/share/vulkan/registry/vk.xml").Replace("#define <name>VK_HEADER_VERSION</name> 239", "#define <name>VK_HEADER_VERSION</name> 240");
            Assert.Contains("VK_HEADER_VERSION</name> 240", xml);
            File.WriteAllText(Path.Combine(tmp, "vk.xml"), xml);
            var r = Repo.Run("dotnet", $"run --project src/GuestIcd.Generator -c Release -- --registry {tmp}/vk.xml --out {tmp}/out", timeoutMs: 300_000);
            Assert.Equal(3, r.ExitCode);
            Assert.Contains("pinned to 1.3.239", r.Stderr);
        }
        finally { Directory.Delete(tmp, true); }
    }
}
