using System.Text.RegularExpressions;

namespace GuestIcd.Tests;

/// <summary>An independent C# application (tests/GuestIcd.SilkClient) on Silk.NET.Vulkan's own bindings and the
/// system loader: a compute dispatch checked element by element, and an offscreen triangle render whose pixels
/// are summarised by a checksum. It runs once on lavapipe directly and once through the loader, the ICD and
/// hostsim (which executes on the same lavapipe), and the two renders must be the same pixels.</summary>
public partial class SilkClientTests
{
    const int Elements = 100_003; // not a multiple of the shader's 64-wide workgroup: the bounds check is exercised

    static readonly Lazy<string> Built = new(() =>
    {
        var dir = Directory.CreateTempSubdirectory("guesticd-silk").FullName;
        // No build servers: one left running would hold the redirected output open and outlive the test.
        var r = Repo.Run("dotnet", $"build tests/GuestIcd.SilkClient -c Release -o {dir} --disable-build-servers -nodeReuse:false", timeoutMs: 300_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        var dll = Path.Combine(dir, "GuestIcd.SilkClient.dll");
        Assert.True(File.Exists(dll), $"{dll} was not built:\n{r.Stdout}");
        foreach (var spv in new[] { "multiply.comp.spv", "triangle.vert.spv", "triangle.frag.spv" })
            Assert.True(File.Exists(Path.Combine(dir, "shaders", spv)), $"{spv} was not compiled by glslc:\n{r.Stdout}");
        return dll;
    });

    static readonly Lazy<Repo.Result> Native = new(() =>
        Repo.Run("dotnet", $"{Built.Value} {Elements}",
            new Dictionary<string, string> { ["VK_DRIVER_FILES"] = HostSim.LavapipeManifest, ["VK_LOADER_LAYERS_DISABLE"] = "*" },
            timeoutMs: 120_000));

    [GeneratedRegex(@"^render: checksum ([0-9a-f]{16}) nonblack (\d+)$", RegexOptions.Multiline)]
    private static partial Regex RenderLine();

    static (string Checksum, int NonBlack) Rendered(string stdout)
    {
        var m = RenderLine().Match(stdout);
        Assert.True(m.Success, "no render line in:\n" + stdout);
        return (m.Groups[1].Value, int.Parse(m.Groups[2].Value));
    }

    [Fact]
    public void TheClientComputesAndRendersOnLavapipeDirectly()
    {
        var r = Native.Value;
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Contains("device: llvmpipe", r.Stdout);
        Assert.Contains($"compute: verified {Elements} elements", r.Stdout);
        var (_, nonBlack) = Rendered(r.Stdout);
        Assert.InRange(nonBlack, 1, 64 * 64 - 1);
        Assert.Contains("done", r.Stdout);
    }

    [Fact]
    public void ThroughTheIcdTheClientComputesTheSameAndRendersTheSamePixels()
    {
        using var host = new HostSim();
        var r = Repo.Run("dotnet", $"{Built.Value} {Elements}", host.ClientEnv(), timeoutMs: 120_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        var device = r.Stdout.Split('\n').FirstOrDefault(l => l.StartsWith("device: "));
        Assert.True(device is not null && device["device: ".Length..].StartsWith("GuestIcd: "), r.Stdout);
        Assert.Contains($"compute: verified {Elements} elements", r.Stdout);
        Assert.Contains("done", r.Stdout);

        var native = Native.Value;
        Assert.True(native.ExitCode == 0, native.Stdout + native.Stderr);
        Assert.Equal(Rendered(native.Stdout), Rendered(r.Stdout));

        host.WaitForLog("guest disconnected", 10_000);
        Assert.DoesNotContain("protocol error", host.Log);
    }

    [Fact]
    public void TheValidationLayerSeesNoErrorInTheClientThroughTheIcd()
    {
        using var host = new HostSim();
        var env = host.ClientEnv();
        env.Remove("VK_LOADER_LAYERS_DISABLE");
        env["VK_INSTANCE_LAYERS"] = "VK_LAYER_KHRONOS_validation";
        var r = Repo.Run("dotnet", $"{Built.Value} 4096", env, timeoutMs: 120_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        Assert.DoesNotContain("Validation Error", r.Stdout + r.Stderr);
        Assert.Contains("compute: verified 4096 elements", r.Stdout);
        // The canary: the same layer, one deliberate misuse, reported.
        var provoked = Repo.Run("dotnet", $"{Built.Value} 4096 --provoke-validation", env, timeoutMs: 120_000);
        Assert.Contains("Validation Error", provoked.Stdout + provoked.Stderr);
    }
}
