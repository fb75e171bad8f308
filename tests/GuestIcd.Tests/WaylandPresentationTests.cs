using System.Diagnostics;
using System.Text.RegularExpressions;

namespace GuestIcd.Tests;

/// <summary>A fact that needs Weston (and, where named, vkcube-wayland): skipped with the reason when they are not
/// installed (scripts/setup.sh installs weston, libwayland-dev, wayland-protocols and vulkan-tools).</summary>
public sealed class WaylandFactAttribute : FactAttribute
{
    public WaylandFactAttribute(bool vkcube = false)
    {
        if (!File.Exists("/usr/bin/weston")) Skip = "weston is not installed (scripts/setup.sh installs it)";
        else if (!File.Exists("/usr/bin/wayland-scanner")) Skip = "wayland-scanner is not installed (scripts/setup.sh installs libwayland-bin)";
        else if (vkcube && !File.Exists("/usr/bin/vkcube-wayland")) Skip = "vkcube-wayland is not installed (scripts/setup.sh installs vulkan-tools)";
    }
}

public sealed class WaylandTheoryAttribute : TheoryAttribute
{
    public WaylandTheoryAttribute()
    {
        if (!File.Exists("/usr/bin/weston")) Skip = "weston is not installed (scripts/setup.sh installs it)";
        else if (!File.Exists("/usr/bin/wayland-scanner")) Skip = "wayland-scanner is not installed (scripts/setup.sh installs libwayland-bin)";
    }
}

/// <summary>One headless Weston for the class: a 320x240 output drawn by the pixman renderer (so the screenshooter
/// reads real pixels), desktop-shell without animations or panel (its frame callbacks come at the output's
/// repaint; kiosk-shell in Weston 10 sends none on the headless backend), --debug for weston_screenshooter, and a
/// private XDG_RUNTIME_DIR.</summary>
public sealed class Weston : IDisposable
{
    readonly Process? _p;
    readonly System.Text.StringBuilder _log = new();
    public string RuntimeDir { get; } = "";
    public const string Socket = "guesticd-wayland-0";
    public const int Width = 320, Height = 240;

    public Weston()
    {
        if (!File.Exists("/usr/bin/weston")) return;
        RuntimeDir = Directory.CreateTempSubdirectory("guesticd-xdg").FullName; // mkdtemp: 0700, as XDG_RUNTIME_DIR must be
        var ini = Path.Combine(RuntimeDir, "weston.ini");
        File.WriteAllText(ini, "[core]\nidle-time=0\n[shell]\nanimation=none\nstartup-animation=none\nclose-animation=none\nfocus-animation=none\npanel-position=none\n");
        var psi = new ProcessStartInfo("/usr/bin/weston",
            $"--config={ini} --backend=headless-backend.so --socket={Socket} --width={Width} --height={Height} --use-pixman --debug")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        psi.Environment["XDG_RUNTIME_DIR"] = RuntimeDir;
        psi.Environment.Remove("WAYLAND_DISPLAY");
        psi.Environment.Remove("DISPLAY");
        _p = Process.Start(psi)!;
        _p.OutputDataReceived += (_, e) => { lock (_log) _log.AppendLine(e.Data); };
        _p.ErrorDataReceived += (_, e) => { lock (_log) _log.AppendLine(e.Data); };
        _p.BeginOutputReadLine();
        _p.BeginErrorReadLine();
        // Ready when the socket exists and the shell has its client: a first connection then gets every global.
        var sw = Stopwatch.StartNew();
        while (!File.Exists(Path.Combine(RuntimeDir, Socket)) || !Log.Contains("weston-desktop-shell'"))
        {
            if (_p.HasExited) throw new InvalidOperationException("weston exited: " + Log);
            if (sw.ElapsedMilliseconds > 30_000) throw new TimeoutException("weston did not start: " + Log);
            Thread.Sleep(100);
        }
        Thread.Sleep(500);
    }

    public string Log { get { lock (_log) return _log.ToString(); } }

    public void AddTo(Dictionary<string, string> env)
    {
        env["XDG_RUNTIME_DIR"] = RuntimeDir;
        env["WAYLAND_DISPLAY"] = Socket;
    }

    public void Dispose()
    {
        if (_p is { HasExited: false }) { _p.Kill(entireProcessTree: true); _p.WaitForExit(); }
        if (RuntimeDir.Length > 0) try { Directory.Delete(RuntimeDir, true); } catch (IOException) { }
    }
}

/// <summary>VK_KHR_wayland_surface (issue 9 point 1) on a real compositor, headless Weston: the C client
/// native-shim/clients/wayland.c and vkcube-wayland through the real loader, the ICD and hostsim. The client's
/// fullscreen window, read back from the compositor by weston_screenshooter after a fixed number of frames, must
/// equal pixel for pixel the same program's on lavapipe directly (Mesa's own Wayland WSI), and be its last frame.
/// The ICD's protocol traffic, seen with WAYLAND_DEBUG on the application's connection, must honour wl_buffer.release
/// and, in FIFO, the frame callbacks.</summary>
public class WaylandPresentationTests(Weston weston) : IClassFixture<Weston>
{
    static readonly Lazy<string> Client = new(() =>
    {
        var dir = Directory.CreateTempSubdirectory("guesticd-wayland").FullName;
        const string xml = "/usr/share/wayland-protocols/stable/xdg-shell/xdg-shell.xml";
        foreach (var (kind, file) in new[] { ("client-header", "xdg-shell-client-protocol.h"), ("private-code", "xdg-shell-protocol.c") })
        {
            var s = Repo.Run("wayland-scanner", $"{kind} {xml} {Path.Combine(dir, file)}");
            Assert.True(s.ExitCode == 0, s.Stderr);
        }
        var exe = Path.Combine(dir, "wayland");
        var cc = Repo.Run("cc", $"-std=c11 -O1 -Wall -Werror -I{dir} -Inative-shim/clients -o {exe} native-shim/clients/wayland.c {Path.Combine(dir, "xdg-shell-protocol.c")} -lwayland-client -lvulkan");
        Assert.True(cc.ExitCode == 0, cc.Stderr);
        return exe;
    });

    Dictionary<string, string> Native()
    {
        var env = new Dictionary<string, string> { ["VK_DRIVER_FILES"] = HostSim.LavapipeManifest, ["VK_LOADER_LAYERS_DISABLE"] = "*" };
        weston.AddTo(env);
        return env;
    }

    Dictionary<string, string> ThroughIcd(HostSim host)
    {
        var env = host.ClientEnv();
        env["GUESTICD_LOG"] = "info";
        weston.AddTo(env);
        return env;
    }

    static string Shot() => Path.Combine(Directory.CreateTempSubdirectory("guesticd-wlshot").FullName, "shot.ppm");

    [WaylandTheory]
    [InlineData("fifo")]
    [InlineData("mailbox")]
    public void TheClientsFramesReachTheCompositorAsOnLavapipe(string mode)
    {
        const int frames = 12;
        var native = Shot();
        var n = Repo.Run(Client.Value, $"{frames} {native} {mode}", Native(), timeoutMs: 60_000);
        Assert.True(n.ExitCode == 0, n.Stdout + n.Stderr + weston.Log);
        using var host = new HostSim();
        var shot = Shot();
        var r = Repo.Run(Client.Value, $"{frames} {shot} {mode}", ThroughIcd(host), timeoutMs: 60_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        Assert.Contains($"frames: {frames}, size {Weston.Width}x{Weston.Height}, mode {mode}", r.Stdout);
        Assert.Contains($"images on a wayland surface, VK_PRESENT_MODE_{mode.ToUpperInvariant()}_KHR", r.Stderr);
        Assert.Contains(mode == "fifo" ? "FIFO by frame callbacks" : "MAILBOX", r.Stderr);
        Assert.Matches($"destroyed: {frames} presents", r.Stderr);

        var (w1, h1, a) = PresentationTests.ReadPpm(native);
        var (w2, h2, b) = PresentationTests.ReadPpm(shot);
        Assert.Equal((Weston.Width, Weston.Height), (w1, h1));
        Assert.Equal((w1, h1), (w2, h2));
        int differ = 0;
        for (int i = 0; i < a.Length; i += 3) if (a[i] != b[i] || a[i + 1] != b[i + 1] || a[i + 2] != b[i + 2]) differ++;
        Assert.True(differ == 0, $"{differ} of {w1 * h1} pixels differ from lavapipe's");
        // And it is the last frame (11): its clear colour with the gradient at (10 + 11 % 20, 10), over the whole output.
        int wrong = 0, f = frames - 1, gx = 10 + f % 20, gy = 10;
        for (int y = 0; y < h2; y++)
            for (int x = 0; x < w2; x++)
            {
                bool inRect = x >= gx && x < gx + 16 && y >= gy && y < gy + 8;
                var want = inRect ? (200, 32 * (y - gy), 16 * (x - gx)) : (20 + f * 7 % 200, 250 - f * 5 % 200, 102);
                int i = (y * w2 + x) * 3;
                if ((b[i], b[i + 1], b[i + 2]) != want) wrong++;
            }
        Assert.True(wrong == 0, $"{wrong} of {w2 * h2} pixels differ from the last frame");
    }

    /// <summary>The driver's requests on the application's connection (WAYLAND_DEBUG=1 prints both directions):
    /// a wl_buffer is attached again only after the compositor released it, and in FIFO each commit after the
    /// first waits for the frame callback the previous one asked for.</summary>
    [WaylandTheory]
    [InlineData("fifo")]
    [InlineData("mailbox")]
    public void BuffersAreReusedOnlyAfterReleaseAndFifoWaitsForFrameCallbacks(string mode)
    {
        using var host = new HostSim();
        var env = ThroughIcd(host);
        env["WAYLAND_DEBUG"] = "1";
        const int frames = 16;
        var r = Repo.Run(Client.Value, $"{frames} {Shot()} {mode}", env, timeoutMs: 60_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        var attach = new Regex(@"-> wl_surface@\d+\.attach\(wl_buffer@(\d+),");
        var release = new Regex(@"\] wl_buffer@(\d+)\.release\(");
        var frame = new Regex(@"-> wl_surface@\d+\.frame\(new id wl_callback@(\d+)\)");
        var done = new Regex(@"\] wl_callback@(\d+)\.done\(");
        var held = new HashSet<string>();
        var buffers = new HashSet<string>();
        string? pendingFrame = null;
        int attaches = 0, reusedAfterRelease = 0, framesWaited = 0;
        foreach (var line in r.Stderr.Split('\n'))
        {
            Match m;
            if ((m = attach.Match(line)).Success)
            {
                var id = m.Groups[1].Value;
                Assert.False(held.Contains(id), $"wl_buffer@{id} attached again before the compositor released it");
                if (!buffers.Add(id)) reusedAfterRelease++;
                held.Add(id);
                attaches++;
            }
            else if ((m = release.Match(line)).Success) held.Remove(m.Groups[1].Value);
            else if ((m = frame.Match(line)).Success) pendingFrame = m.Groups[1].Value;
            else if ((m = done.Match(line)).Success && m.Groups[1].Value == pendingFrame) { pendingFrame = null; framesWaited++; }
            // In FIFO the next image is attached only once the previous frame's callback came.
            if (mode == "fifo" && attach.IsMatch(line) && attaches > 1) Assert.True(framesWaited == attaches - 1, $"attach {attaches} before the frame callback of {attaches - 1}");
        }
        Assert.Equal(frames, attaches);
        Assert.True(buffers.Count >= 2 && buffers.Count <= 4, $"{buffers.Count} wl_buffers");
        Assert.True(reusedAfterRelease > 0, "no buffer was ever reused");
        if (mode == "fifo")
        {
            // Every present after the first waited for the previous frame's callback (Weston sends them at repaint).
            Assert.True(framesWaited >= frames - 1, $"{framesWaited} frame callbacks came back for {frames} presents");
            Assert.Contains("FIFO by frame callbacks", r.Stderr);
            Assert.DoesNotContain("sent no frame callback", r.Stderr);
        }
        else Assert.DoesNotMatch(frame, r.Stderr);
    }

    [WaylandFact(vkcube: true)]
    public void VkcubeWaylandRunsItsFramesThroughTheIcd()
    {
        using var host = new HostSim();
        var r = Repo.Run("vkcube-wayland", "--c 30", ThroughIcd(host), timeoutMs: 120_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        Assert.Contains("Selected GPU 0: GuestIcd: llvmpipe", r.Stdout + r.Stderr);
        Assert.Contains("500x500 VK_FORMAT_B8G8R8A8_UNORM images on a wayland surface, VK_PRESENT_MODE_FIFO_KHR", r.Stderr);
        Assert.Matches("destroyed: 30 presents", r.Stderr);
    }

    [WaylandFact]
    public void AHeadlessApplicationNeverLoadsLibwayland()
    {
        using var host = new HostSim();
        var env = host.ClientEnv();
        env["LD_DEBUG"] = "libs";
        weston.AddTo(env); // a compositor is there: the ICD still loads nothing for it without a Wayland surface
        var r = Repo.Run(PresentationTests.Client.Value, "2", env, timeoutMs: 60_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Contains("libguesticd.so", r.Stderr);
        Assert.DoesNotContain("libwayland", r.Stderr);
    }

    [WaylandFact]
    public void TheIcdOffersTheWaylandSurfaceExtension()
    {
        using var host = new HostSim();
        var v = Repo.Run("vulkaninfo", "", host.ClientEnv(), timeoutMs: 60_000);
        Assert.True(v.ExitCode == 0, v.Stderr);
        Assert.Matches(@"VK_KHR_wayland_surface\s*: extension revision 6", v.Stdout);
    }
}
