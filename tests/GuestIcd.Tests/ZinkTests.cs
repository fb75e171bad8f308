namespace GuestIcd.Tests;

/// <summary>A fact that needs Xvfb and mesa-utils (glxinfo, glxgears): skipped with the reason otherwise.</summary>
public sealed class ZinkFactAttribute : FactAttribute
{
    public ZinkFactAttribute()
    {
        if (!File.Exists("/usr/bin/Xvfb")) Skip = "Xvfb is not installed (scripts/setup.sh installs xvfb)";
        else if (!File.Exists("/usr/bin/glxinfo")) Skip = "glxinfo is not installed (scripts/setup.sh installs mesa-utils)";
        else if (!File.Exists("/usr/lib/x86_64-linux-gnu/dri/zink_dri.so")) Skip = "Mesa's zink_dri.so is not installed";
    }
}

/// <summary>OpenGL through Zink (Mesa's OpenGL on Vulkan) on the ICD (issue 9 point 4), under Xvfb. Zink picks a CPU
/// device only with LIBGL_ALWAYS_SOFTWARE=1 and the ICD's is a virtual GPU, so the runs through the ICD leave it
/// unset and the native runs on lavapipe set it. MESA_LOADER_DRIVER_OVERRIDE=zink makes GLX load zink_dri.so,
/// whose kopper presents through a VkSwapchain on an xcb surface, the ICD's presentation path.</summary>
public class ZinkTests(Xvfb x) : IClassFixture<Xvfb>
{
    static readonly Lazy<string> Client = new(() =>
    {
        var exe = Path.Combine(Directory.CreateTempSubdirectory("guesticd-gl").FullName, "gl");
        var cc = Repo.Run("cc", $"-std=c11 -O1 -Wall -Werror -o {exe} native-shim/clients/gl.c -lGL -lX11");
        Assert.True(cc.ExitCode == 0, cc.Stderr);
        return exe;
    });

    Dictionary<string, string> ThroughIcd(HostSim host)
    {
        var env = host.ClientEnv();
        env["DISPLAY"] = x.Display;
        env["MESA_LOADER_DRIVER_OVERRIDE"] = "zink";
        env["GUESTICD_LOG"] = "info";
        return env;
    }

    Dictionary<string, string> Native() => new()
    {
        ["VK_DRIVER_FILES"] = HostSim.LavapipeManifest, ["DISPLAY"] = x.Display, ["VK_LOADER_LAYERS_DISABLE"] = "*",
        ["MESA_LOADER_DRIVER_OVERRIDE"] = "zink", ["LIBGL_ALWAYS_SOFTWARE"] = "1",
    };

    [ZinkFact]
    public void GlxinfoReportsZinkOnTheIcdsDeviceWithOpenGl4Core()
    {
        using var host = new HostSim();
        var r = Repo.Run("glxinfo", "-B", ThroughIcd(host), timeoutMs: 120_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        Assert.Contains("OpenGL renderer string: zink (GuestIcd: llvmpipe", r.Stdout);
        Assert.Matches(@"OpenGL core profile version string: 4\.\d", r.Stdout);
        Assert.DoesNotContain("protocol error", host.Log);
    }

    [ZinkFact]
    public void GlxgearsRunsThroughZinkAndTheIcdsSwapchain()
    {
        using var host = new HostSim();
        // glxgears runs until stopped and prints its frame rate every 5 s (after a start-up of seconds on a busy machine).
        var r = Repo.Run("timeout", "-s INT 14 glxgears", ThroughIcd(host), timeoutMs: 60_000);
        Assert.True(r.ExitCode is 0 or 124, r.Stdout + r.Stderr + host.Log);
        Assert.Matches(@"\d+ frames in [\d.]+ seconds", r.Stdout);
        Assert.Contains("images on a xcb surface", r.Stderr);
        Assert.DoesNotContain("protocol error", host.Log);
    }

    [ZinkFact]
    public void TheGlClientRendersWhatZinkOnLavapipeRenders()
    {
        var dir = Directory.CreateTempSubdirectory("guesticd-gl-out").FullName;
        var n = Repo.Run(Client.Value, Path.Combine(dir, "native"), Native(), timeoutMs: 120_000);
        Assert.True(n.ExitCode == 0, n.Stdout + n.Stderr);
        Assert.Contains("renderer: zink (llvmpipe", n.Stdout);
        using var host = new HostSim();
        var r = Repo.Run(Client.Value, Path.Combine(dir, "icd"), ThroughIcd(host), timeoutMs: 120_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        Assert.Contains("renderer: zink (GuestIcd: llvmpipe", r.Stdout);
        Assert.Contains("fbo: 5 colours, window: 5 colours", r.Stdout);
        foreach (var which in new[] { "fbo", "window" })
        {
            var (w1, h1, a) = PresentationTests.ReadPpm(Path.Combine(dir, $"native-{which}.ppm"));
            var (w2, h2, b) = PresentationTests.ReadPpm(Path.Combine(dir, $"icd-{which}.ppm"));
            Assert.Equal((w1, h1), (w2, h2));
            int differ = 0;
            for (int i = 0; i < a.Length; i += 3) if (a[i] != b[i] || a[i + 1] != b[i + 1] || a[i + 2] != b[i + 2]) differ++;
            Assert.True(differ == 0, $"{which}: {differ} of {w1 * h1} pixels differ from Zink on lavapipe");
        }
    }
}
