namespace GuestIcd.Tests;

/// <summary>The C compute client (native-shim/clients/compute.c) through the loader, the ICD and hostsim:
/// buffers in mapped HOST_VISIBLE memory, a pipeline from SPIR-V compiled by glslc, push constants,
/// descriptor sets, dispatch, fence, and every element checked through the mapping.</summary>
public class ComputeClientTests
{
    static readonly Lazy<(string Exe, string Spv)> Built = new(() =>
    {
        var dir = Directory.CreateTempSubdirectory("guesticd-compute").FullName;
        var spv = Path.Combine(dir, "multiply.spv");
        var glslc = Repo.Run("glslc", $"-o {spv} native-shim/shaders/multiply.comp");
        Assert.True(glslc.ExitCode == 0, glslc.Stderr);
        var exe = Path.Combine(dir, "compute");
        var cc = Repo.Run("cc", $"-std=c11 -O1 -Wall -Werror -o {exe} native-shim/clients/compute.c -lvulkan");
        Assert.True(cc.ExitCode == 0, cc.Stderr);
        return (exe, spv);
    });

    [Fact]
    public void ComputeResultsThroughTheIcdMatchEveryElement()
    {
        using var host = new HostSim();
        var (exe, spv) = Built.Value;
        var r = Repo.Run(exe, $"{spv} 1000000", host.ClientEnv(), timeoutMs: 120_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        Assert.Contains("device: GuestIcd: llvmpipe", r.Stdout);
        Assert.Contains("round 0: verified 1000000 elements", r.Stdout);
        Assert.Contains("round 1: verified 1000000 elements", r.Stdout);
        Assert.Contains("done", r.Stdout);
        host.WaitForLog("guest disconnected", 10_000);
        Assert.DoesNotContain("protocol error", host.Log);
        // The buffers were HOST_VISIBLE shared memory: the guest read the host driver's writes through its own mapping.
        Assert.Contains("heap 1024 MiB", host.Log);
    }

    [Fact]
    public void DescriptorUpdateTemplatesWorkThroughTheIcd()
    {
        using var host = new HostSim();
        var (exe, spv) = Built.Value;
        var r = Repo.Run(exe, $"{spv} 4096 --template", host.ClientEnv(), timeoutMs: 120_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        Assert.Contains("descriptors written through a template", r.Stdout);
        Assert.Contains("round 1: verified 4096 elements", r.Stdout);
    }

    [Fact]
    public void TheSameClientOnLavapipeDirectlyAgrees()
    {
        var (exe, spv) = Built.Value;
        var r = Repo.Run(exe, $"{spv} 1000000", new Dictionary<string, string> { ["VK_DRIVER_FILES"] = HostSim.LavapipeManifest }, timeoutMs: 120_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Contains("round 1: verified 1000000 elements", r.Stdout);
    }

    [Fact]
    public void TheValidationLayerSeesNoErrorInTheApplicationsUseOfTheIcd()
    {
        using var host = new HostSim();
        var (exe, spv) = Built.Value;
        var env = host.ClientEnv();
        env.Remove("VK_LOADER_LAYERS_DISABLE");
        env["VK_INSTANCE_LAYERS"] = "VK_LAYER_KHRONOS_validation";
        var clean = Repo.Run(exe, $"{spv} 4096", env, timeoutMs: 120_000);
        Assert.True(clean.ExitCode == 0, clean.Stdout + clean.Stderr + host.Log);
        Assert.DoesNotContain("Validation Error", clean.Stdout + clean.Stderr);
        // The canary: the same layer, one deliberate misuse, reported.
        var provoked = Repo.Run(exe, $"{spv} 4096 --provoke-validation", env, timeoutMs: 120_000);
        Assert.Contains("Validation Error", provoked.Stdout + provoked.Stderr);
    }
}

public class HostValidationTests
{
    [Fact]
    public void TheStreamOurIcdProducesIsValidOnTheHostToo()
    {
        using var host = new HostSim("--validation");
        var dir = Directory.CreateTempSubdirectory("guesticd-hv").FullName;
        var spv = Path.Combine(dir, "multiply.spv");
        Assert.Equal(0, Repo.Run("glslc", $"-o {spv} native-shim/shaders/multiply.comp").ExitCode);
        var exe = Path.Combine(dir, "compute");
        Assert.Equal(0, Repo.Run("cc", $"-std=c11 -O1 -o {exe} native-shim/clients/compute.c -lvulkan").ExitCode);

        var r = Repo.Run(exe, $"{spv} 4096", host.ClientEnv(), timeoutMs: 120_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        // The session logs its validation count, then the line that ends it: wait for the last of the two.
        host.WaitForLog(" guest objects left", 1, 10_000);
        Assert.Matches(@"session \d+ validation: 0 errors", host.Log);
        Assert.Matches(@"ended \(guest disconnected\): [1-9]\d* commands.* 0 guest objects left", host.Log);

        // The canary: the host-side layer does report a misuse that reaches it.
        r = Repo.Run(exe, $"{spv} 4096 --provoke-validation", host.ClientEnv(), timeoutMs: 120_000);
        host.WaitForLog(" guest objects left", 2, 10_000);
        Assert.Matches(@"session \d+ validation: [1-9]\d* errors", host.Log);
        Directory.Delete(dir, true);
    }
}
