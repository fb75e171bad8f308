using System.Diagnostics;
using System.Text.RegularExpressions;

namespace GuestIcd.Tests;

/// <summary>A fact that needs an X server (Xvfb) and, where named, vkcube: skipped with the reason when they
/// are not installed (scripts/setup.sh installs both).</summary>
public sealed class X11FactAttribute : FactAttribute
{
    public X11FactAttribute(bool vkcube = false)
    {
        if (!File.Exists("/usr/bin/Xvfb")) Skip = "Xvfb is not installed (scripts/setup.sh installs xvfb)";
        else if (vkcube && !File.Exists("/usr/bin/vkcube")) Skip = "vkcube is not installed (scripts/setup.sh installs vulkan-tools)";
    }
}

public sealed class X11TheoryAttribute : TheoryAttribute
{
    public X11TheoryAttribute()
    {
        if (!File.Exists("/usr/bin/Xvfb")) Skip = "Xvfb is not installed (scripts/setup.sh installs xvfb)";
    }
}

/// <summary>One Xvfb for the class, on a display number it picks itself (-displayfd).</summary>
public sealed class Xvfb : IDisposable
{
    readonly Process? _p;
    public string Display { get; } = "";

    public Xvfb()
    {
        if (!File.Exists("/usr/bin/Xvfb")) return;
        var psi = new ProcessStartInfo("/usr/bin/Xvfb", "-displayfd 1 -screen 0 1024x768x24 -nolisten tcp")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        _p = Process.Start(psi)!;
        _p.ErrorDataReceived += (_, _) => { };
        _p.BeginErrorReadLine();
        var line = _p.StandardOutput.ReadLineAsync();
        if (!line.Wait(20_000) || line.Result is null) throw new TimeoutException("Xvfb did not say which display it took");
        Display = ":" + line.Result.Trim();
    }

    public void Dispose()
    {
        if (_p is { HasExited: false }) { _p.Kill(); _p.WaitForExit(); }
    }
}

/// <summary>Presentation on the guest's own X server (issue 9 points 2 and 3): vkcube and a C client
/// (native-shim/clients/window.c) through the real loader, the ICD and hostsim under Xvfb, with xcb and with
/// Xlib, MIT-SHM and xcb_put_image; the window's contents after a fixed number of frames must equal, pixel for
/// pixel, the same program's on lavapipe directly. vkcube's window is read back at its xcb_destroy_window by an
/// LD_PRELOAD helper (native-shim/clients/xshot_preload.c), after the server ran every earlier request.</summary>
public class X11PresentationTests(Xvfb x) : IClassFixture<Xvfb>
{
    static readonly Lazy<(string Window, string Shot)> Built = new(() =>
    {
        var dir = Directory.CreateTempSubdirectory("guesticd-x11").FullName;
        var window = Path.Combine(dir, "window");
        var cc = Repo.Run("cc", $"-std=c11 -O1 -Wall -Werror -o {window} native-shim/clients/window.c -lvulkan -lX11 -lX11-xcb -lxcb");
        Assert.True(cc.ExitCode == 0, cc.Stderr);
        var shot = Path.Combine(dir, "xshot.so");
        cc = Repo.Run("cc", $"-shared -fPIC -O1 -Wall -Werror -o {shot} native-shim/clients/xshot_preload.c -ldl -lxcb");
        Assert.True(cc.ExitCode == 0, cc.Stderr);
        return (window, shot);
    });

    Dictionary<string, string> Native() => new()
    {
        ["VK_DRIVER_FILES"] = HostSim.LavapipeManifest, ["DISPLAY"] = x.Display, ["VK_LOADER_LAYERS_DISABLE"] = "*",
    };

    Dictionary<string, string> ThroughIcd(HostSim host)
    {
        var env = host.ClientEnv();
        env["DISPLAY"] = x.Display;
        env["GUESTICD_LOG"] = "info";
        return env;
    }

    static string Shot() => Path.Combine(Directory.CreateTempSubdirectory("guesticd-shot").FullName, "shot.ppm");

    static void AssertSamePicture(string expected, string actual)
    {
        var (w1, h1, a) = PresentationTests.ReadPpm(expected);
        var (w2, h2, b) = PresentationTests.ReadPpm(actual);
        Assert.Equal((w1, h1), (w2, h2));
        int differ = 0;
        for (int i = 0; i < a.Length; i += 3) if (a[i] != b[i] || a[i + 1] != b[i + 1] || a[i + 2] != b[i + 2]) differ++;
        Assert.True(differ == 0, $"{differ} of {w1 * h1} pixels differ");
        // Not a blank window on both sides: the picture has the cube (or the client's pattern) in it.
        var colours = new HashSet<int>();
        for (int i = 0; i < a.Length; i += 3) colours.Add(a[i] << 16 | a[i + 1] << 8 | a[i + 2]);
        Assert.True(colours.Count >= 3, $"only {colours.Count} colours: a blank window");
    }

    Repo.Result Vkcube(Dictionary<string, string> env, string shot, int frames)
    {
        env["LD_PRELOAD"] = Built.Value.Shot;
        env["GUESTICD_SHOT"] = shot;
        var r = Repo.Run("vkcube", $"--c {frames}", env, timeoutMs: 180_000);
        Assert.True(r.ExitCode == 0 && File.Exists(shot), r.Stdout + r.Stderr);
        return r;
    }

    [X11Fact(vkcube: true)]
    public void VkcubeThroughTheIcdShowsWhatItShowsOnLavapipe()
    {
        var native = Shot();
        Vkcube(Native(), native, 30);
        using var host = new HostSim();
        var shot = Shot();
        var r = Vkcube(ThroughIcd(host), shot, 30);
        Assert.Contains("Selected GPU 0: GuestIcd: llvmpipe", r.Stdout + r.Stderr);
        Assert.Contains("by MIT-SHM", r.Stderr);
        Assert.Contains("500x500 VK_FORMAT_B8G8R8A8_UNORM images on a xcb surface", r.Stderr);
        Assert.Matches("destroyed: 30 presents", r.Stderr);
        AssertSamePicture(native, shot);
        // Without MIT-SHM the frames travel in xcb_put_image requests (500x500x4 bytes: split in bands).
        var put = Shot();
        var env = ThroughIcd(host);
        env["GUESTICD_X11_NO_SHM"] = "1";
        r = Vkcube(env, put, 30);
        Assert.Contains("by xcb_put_image", r.Stderr);
        AssertSamePicture(native, put);
    }

    [X11Theory]
    [InlineData("xcb")]
    [InlineData("xlib")]
    public void TheWindowClientMatchesLavapipe(string wsi)
    {
        var native = Shot();
        var n = Repo.Run(Built.Value.Window, $"{wsi} 12 {native}", Native(), timeoutMs: 60_000);
        Assert.True(n.ExitCode == 0, n.Stdout + n.Stderr);
        using var host = new HostSim();
        var shot = Shot();
        var r = Repo.Run(Built.Value.Window, $"{wsi} 12 {shot}", ThroughIcd(host), timeoutMs: 60_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        Assert.Contains($"on a {wsi} surface", r.Stderr);
        Assert.Contains("frames: 12, out of date: 0, suboptimal: 0, size 200x150", r.Stdout);
        AssertSamePicture(native, shot);
    }

    [X11Theory]
    [InlineData("xcb")]
    [InlineData("xlib")]
    public void AResizedWindowGetsOutOfDateAndThenFramesOfItsNewSize(string wsi)
    {
        using var host = new HostSim();
        var shot = Shot();
        var r = Repo.Run(Built.Value.Window, $"{wsi} 20 {shot} --resize", ThroughIcd(host), timeoutMs: 60_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        var m = Regex.Match(r.Stdout, @"frames: 20, out of date: (\d+), suboptimal: (\d+), size 240x120");
        Assert.True(m.Success, r.Stdout);
        Assert.Equal(1, int.Parse(m.Groups[1].Value));
        // The client made a second swapchain, of the window's new size, from the surface's current extent.
        Assert.Contains("240x120 VK_FORMAT_B8G8R8A8_UNORM images", r.Stderr);
        // The last frame (19) at the new size: its clear colour, and the gradient at (10 + 19 % 20, 10).
        var (w, h, rgb) = PresentationTests.ReadPpm(shot);
        Assert.Equal((240, 120), (w, h));
        int wrong = 0;
        for (int y = 0; y < h; y++)
            for (int xx = 0; xx < w; xx++)
            {
                int gx = 10 + 19 % 20, gy = 10;
                bool inRect = xx >= gx && xx < gx + 16 && y >= gy && y < gy + 8;
                var want = inRect ? (200, 32 * (y - gy), 16 * (xx - gx)) : (20 + 19 * 7 % 200, 250 - 19 * 5 % 200, 102);
                int i = (y * w + xx) * 3;
                if ((rgb[i], rgb[i + 1], rgb[i + 2]) != want) wrong++;
            }
        Assert.True(wrong == 0, $"{wrong} of {w * h} pixels differ from the last frame");
    }

    [X11Fact]
    public void AHeadlessApplicationNeverLoadsTheXLibraries()
    {
        using var host = new HostSim();
        var env = host.ClientEnv();
        env["LD_DEBUG"] = "libs";
        var r = Repo.Run(PresentationTests.Client.Value, "2", env, timeoutMs: 60_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Contains("libguesticd.so", r.Stderr); // LD_DEBUG did report what was loaded
        Assert.DoesNotContain("libxcb", r.Stderr);
        Assert.DoesNotContain("libX11", r.Stderr);
    }
}
