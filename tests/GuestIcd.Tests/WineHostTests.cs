using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace GuestIcd.Tests;

/// <summary>
/// The Windows build of hostsim (out/hostsim-win, `dotnet publish -r win-x64`, made by scripts/test.sh)
/// serving a Linux guest over TCP, run under Wine (scripts/setup.sh installs wine64): Wine's vulkan-1.dll
/// and winevulkan pass the calls to this machine's libvulkan and lavapipe (winevulkan needs an X display
/// for its graphics driver, hence Xvfb). What a Windows host runs that Linux does not: vulkan-1.dll,
/// in-process sessions, committed shadow memory, Windows sockets under the same session code.
/// </summary>
public class WineHostTests
{
    const string Wine = "/usr/lib/wine/wine64";
    const string WineServer = "/usr/lib/wine/wineserver";

    static string Exe
    {
        get
        {
            var p = Repo.PathOf("out/hostsim-win/guesticd-hostsim.exe");
            if (!File.Exists(p)) throw new FileNotFoundException("out/hostsim-win is missing: dotnet publish hostsim/GuestIcd.HostSim -c Release -r win-x64 -o out/hostsim-win (scripts/test.sh does)", p);
            if (!File.Exists(Wine)) throw new FileNotFoundException("wine64 is missing: bash scripts/setup.sh installs it", Wine);
            return p;
        }
    }

    static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    /// <summary>Wine sees this machine's root as drive Z:.</summary>
    static string WinePath(string unixPath) => "Z:" + unixPath.Replace('/', '\\');

    sealed class WineHost : IDisposable
    {
        readonly Process _process;
        readonly StringBuilder _log = new();
        readonly string _prefix;

        public WineHost(params string[] args)
        {
            // One prefix for every run: creating one costs about 20 s, reusing it a second.
            _prefix = Repo.PathOf("out/wineprefix");
            EnsurePrefix(_prefix);
            var psi = new ProcessStartInfo("xvfb-run") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in new[] { "-a", Wine, Exe }.Concat(args)) psi.ArgumentList.Add(a);
            psi.Environment["WINEPREFIX"] = _prefix;
            psi.Environment["WINEDEBUG"] = "-all";
            _process = Process.Start(psi)!;
            _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); };
            _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); };
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
        }

        /// <summary>Creates the prefix without a display and with Mono and Gecko disabled, so that no
        /// installer dialog waits for a click. Only then: Wine's loader needs its mscoree to load .NET's
        /// IL-only assemblies, so the runs themselves must not disable it.</summary>
        static void EnsurePrefix(string prefix)
        {
            if (File.Exists(Path.Combine(prefix, "system.reg"))) return;
            var psi = new ProcessStartInfo(Wine) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[] { "wineboot", "--init" }) psi.ArgumentList.Add(a);
            psi.Environment["WINEPREFIX"] = prefix;
            psi.Environment["WINEDEBUG"] = "-all";
            psi.Environment["WINEDLLOVERRIDES"] = "mscoree=;mshtml=";
            psi.Environment.Remove("DISPLAY");
            using var boot = Process.Start(psi)!;
            boot.StandardOutput.ReadToEndAsync();
            boot.StandardError.ReadToEndAsync();
            Assert.True(boot.WaitForExit(180_000), "wineboot --init did not finish within 180 s");
            using var wait = Process.Start(new ProcessStartInfo(WineServer, "-w") { UseShellExecute = false, Environment = { ["WINEPREFIX"] = prefix } });
            wait?.WaitForExit(60_000);
        }

        public string Log { get { lock (_log) return _log.ToString(); } }

        public void WaitForLog(string text, int timeoutMs)
        {
            var sw = Stopwatch.StartNew();
            while (!Log.Contains(text))
            {
                if (_process.HasExited)
                {
                    _process.WaitForExit(); // the last lines may still be in the pipes
                    if (Log.Contains(text)) return;
                    throw new InvalidOperationException($"hostsim under Wine exited ({_process.ExitCode}) before logging '{text}':\n{Log}");
                }
                if (sw.ElapsedMilliseconds > timeoutMs) throw new TimeoutException($"hostsim under Wine never logged '{text}':\n{Log}");
                Thread.Sleep(50);
            }
        }

        public void Dispose()
        {
            if (!_process.HasExited) { _process.Kill(entireProcessTree: true); _process.WaitForExit(10_000); }
            // The prefix's wineserver and its helper processes outlive the program by a few seconds; end them now.
            var psi = new ProcessStartInfo(WineServer, "-k") { UseShellExecute = false };
            psi.Environment["WINEPREFIX"] = _prefix;
            using var kill = Process.Start(psi);
            kill?.WaitForExit(10_000);
        }
    }

    [Fact]
    public void TheWindowsHostsimUnderWineServesALinuxGuestOverTcp()
    {
        var dir = Directory.CreateTempSubdirectory("guesticd-wine").FullName;
        var secret = Path.Combine(dir, "secret");
        File.WriteAllText(secret, Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)));
        int port = FreePort();

        // A unix socket is no Windows listener: refused with the reason.
        using (var refused = new WineHost("serve", "--listen", $"unix:{dir}/x.sock"))
            refused.WaitForLog("cannot serve unix:", 120_000);

        using var host = new WineHost("serve", "--listen", $"tcp:127.0.0.1:{port}", "--secret-file", WinePath(secret));
        host.WaitForLog($"listening on tcp:127.0.0.1:{port}", 120_000);
        Assert.Contains("serving llvmpipe", host.Log);
        Assert.Contains("sessions run in-process on this OS", host.Log);

        var env = new Dictionary<string, string>
        {
            ["VK_DRIVER_FILES"] = HostSim.Manifest, ["GUESTICD_TRANSPORT"] = $"tcp:127.0.0.1:{port}",
            ["GUESTICD_SECRET_FILE"] = secret, ["VK_LOADER_LAYERS_DISABLE"] = "*",
        };
        var info = Repo.Run("vulkaninfo", "--summary", env, timeoutMs: 90_000);
        Assert.True(info.ExitCode == 0, info.Stderr + host.Log);
        Assert.Contains("deviceName         = GuestIcd: llvmpipe", info.Stdout);

        // Real work on the Wine-hosted driver: fences, timeline semaphores, events, timestamp queries read
        // exactly as on lavapipe directly.
        var sync = Path.Combine(dir, "sync");
        var cc = Repo.Run("cc", $"-std=c11 -Wall -Werror -o {sync} native-shim/clients/sync.c -lvulkan");
        Assert.True(cc.ExitCode == 0, cc.Stderr);
        var native = Repo.Run(sync, "", new Dictionary<string, string> { ["VK_DRIVER_FILES"] = HostSim.LavapipeManifest });
        Assert.Equal(0, native.ExitCode);
        var via = Repo.Run(sync, "", env, timeoutMs: 90_000);
        Assert.True(via.ExitCode == 0, via.Stdout + via.Stderr + host.Log);
        Assert.True(native.Stdout == via.Stdout, $"through the Wine-hosted hostsim:\n{via.Stdout}{via.Stderr}\non lavapipe:\n{native.Stdout}\nhostsim:\n{host.Log}");
        Assert.Contains("timeline after submit = 12", via.Stdout);

        // The SPIR-V validator is a Linux library: a Windows hostsim passes no shader to the driver, and says
        // so, ending only that session; the guest sees VK_ERROR_DEVICE_LOST.
        var spv = Path.Combine(dir, "multiply.spv");
        Assert.Equal(0, Repo.Run("glslc", $"-o {spv} native-shim/shaders/multiply.comp").ExitCode);
        var compute = Path.Combine(dir, "compute");
        Assert.Equal(0, Repo.Run("cc", $"-std=c11 -O1 -o {compute} native-shim/clients/compute.c -lvulkan").ExitCode);
        var r = Repo.Run(compute, $"{spv} 1000", env, timeoutMs: 90_000);
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("= -4", r.Stdout + r.Stderr);
        host.WaitForLog("SPIR-V cannot be validated on this host", 10_000);
        var again = Repo.Run("vulkaninfo", "--summary", env, timeoutMs: 90_000);
        Assert.True(again.ExitCode == 0, again.Stderr + host.Log);
        Assert.DoesNotContain("Unhandled exception", host.Log);
        Directory.Delete(dir, true);
    }
}
