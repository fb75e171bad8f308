using System.Text.RegularExpressions;

namespace GuestIcd.Tests;

/// <summary>Guest state belongs to its instance and device, and many threads use one device at once: the
/// two-instance client (native-shim/clients/multi_instance.c) and the stress client (stress.c) through the
/// loader, the ICD and a real hostsim, each compared line for line with the same client on lavapipe directly.</summary>
public class MultiInstanceTests
{
    static readonly Lazy<(string Dir, string Spv)> Built = new(() =>
    {
        var dir = Directory.CreateTempSubdirectory("guesticd-multi").FullName;
        var spv = Path.Combine(dir, "multiply.spv");
        var glslc = Repo.Run("glslc", $"-o {spv} native-shim/shaders/multiply.comp");
        Assert.True(glslc.ExitCode == 0, glslc.Stderr);
        foreach (var name in new[] { "multi_instance", "stress" })
        {
            var cc = Repo.Run("cc", $"-std=c11 -O1 -Wall -Werror -pthread -o {Path.Combine(dir, name)} native-shim/clients/{name}.c -lvulkan");
            Assert.True(cc.ExitCode == 0, cc.Stderr);
        }
        return (dir, spv);
    });

    static string Exe(string name) => Path.Combine(Built.Value.Dir, name);

    static Dictionary<string, string> Lavapipe(bool validation = false)
    {
        var env = new Dictionary<string, string> { ["VK_DRIVER_FILES"] = HostSim.LavapipeManifest };
        if (validation) env["VK_INSTANCE_LAYERS"] = "VK_LAYER_KHRONOS_validation";
        return env;
    }

    /// <param name="sharedHeap">Mapped memory as ranges of the shared heap, or (GUESTICD_HEAP_MB=0) as local
    /// copies that travel by changed pages: both kept by each device.</param>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void TwoInstancesWithTwoDevicesEachComputeCorrectlyAtOnce(bool sharedHeap)
    {
        var args = $"{Built.Value.Spv} 6 {(sharedHeap ? 65536 : 8192)}";
        var native = Repo.Run(Exe("multi_instance"), args, Lavapipe(), timeoutMs: 60_000);
        Assert.True(native.ExitCode == 0, native.Stdout + native.Stderr);

        using var host = new HostSim();
        var env = host.ClientEnv();
        env["GUESTICD_LOG"] = "debug";
        if (!sharedHeap) env["GUESTICD_HEAP_MB"] = "0";
        var via = Repo.Run(Exe("multi_instance"), args, env, timeoutMs: 120_000);
        Assert.True(via.ExitCode == 0, via.Stdout + via.Stderr + host.Log);
        Assert.Equal(native.Stdout, via.Stdout);
        Assert.Equal(4, Regex.Count(via.Stdout, @"6 rounds of \d+ elements verified"));
        // The run really is the hard case: through the ICD both instances' templates and fences carry the same
        // handle values (ids are per connection), each device's template lays pData out differently, and one
        // instance's fences are signaled while the other's, unsignaled, are asked for their status.
        Assert.Contains("coincide across the two instances: 2 of 2", via.Stderr);
        // Each device released what was under it when destroyed (its queue, and any command buffer the generic
        // free path left), so each instance had only its physical device left to release.
        Assert.Equal(4, Regex.Count(via.Stderr, @"vkDestroyDevice: released [1-9]\d* dispatchable objects under the device"));
        Assert.Equal(2, Regex.Count(via.Stderr, @"vkDestroyInstance: releasing 1 dispatchable objects with the instance"));
        Assert.DoesNotContain("still live", via.Stderr);

        host.WaitForLog("guest disconnected", 2, 10_000); // the two instances (the first keeps the loader's probe)
        Assert.DoesNotContain("protocol error", host.Log);
        Assert.Equal(2, Regex.Count(host.Log, @"ended \(guest disconnected\): [1-9]\d+ commands.* 0 errors, 0 guest objects left"));
    }

    [Fact]
    public void ManyThreadsOnOneDeviceAreCleanUnderValidationOnBothSidesAndAgreeWithLavapipe()
    {
        // Bounded so that the run stays well under 30 s on a loaded two-core machine.
        var args = $"{Built.Value.Spv} 24 4096";
        var native = Repo.Run(Exe("stress"), args, Lavapipe(validation: true), timeoutMs: 60_000);
        Assert.True(native.ExitCode == 0, native.Stdout + native.Stderr);
        Assert.Contains("validation errors: 0", native.Stderr);

        using var host = new HostSim("--validation");
        var env = host.ClientEnv();
        env.Remove("VK_LOADER_LAYERS_DISABLE");
        env["VK_INSTANCE_LAYERS"] = "VK_LAYER_KHRONOS_validation";
        var via = Repo.Run(Exe("stress"), args, env, timeoutMs: 120_000);
        Assert.True(via.ExitCode == 0, via.Stdout + via.Stderr + host.Log);
        Assert.Equal(native.Stdout, via.Stdout);
        Assert.Equal(4, Regex.Count(via.Stdout, @"24 cycles of 4096 elements verified"));
        Assert.Contains("churn: 48 buffers and images", via.Stdout);
        Assert.Contains("validation errors: 0", via.Stderr);
        host.WaitForLog(" validation: ", 1, 10_000);
        Assert.Matches(@"session \d+ validation: 0 errors", host.Log);
        host.WaitForLog("guest disconnected", 1, 10_000);
        Assert.Matches(@"ended \(guest disconnected\): [1-9]\d* commands.* 0 errors, 0 guest objects left", host.Log);

        // The canary: the application-side messenger does count an error that passes through the ICD.
        var provoked = Repo.Run(Exe("stress"), $"{Built.Value.Spv} 1 64 --provoke-validation", env, timeoutMs: 60_000);
        Assert.NotEqual(0, provoked.ExitCode);
        Assert.Contains("VUID-VkFenceCreateInfo-flags-parameter", provoked.Stderr);
    }
}
