using System.Diagnostics;
using System.Text;

namespace GuestIcd.Tests;

/// <summary>A real hostsim process on its own socket, and the environment that points the real Khronos
/// loader at our ICD and that socket. Built beforehand by the README's test command (out/).</summary>
public sealed class HostSim : IDisposable
{
    /// <summary>GUESTICD_OUT points the tests at another build folder (default out/).</summary>
    static string Out => Environment.GetEnvironmentVariable("GUESTICD_OUT") is { Length: > 0 } o ? o : "out";
    public static string Executable => Need($"{Out}/hostsim/guesticd-hostsim");
    public static string Manifest => Need($"{Out}/icd/guesticd_icd.x86_64.json");
    public const string LavapipeManifest = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json";

    static string Need(string rel)
    {
        var p = Repo.PathOf(rel);
        if (!File.Exists(p)) throw new FileNotFoundException($"{rel} is missing: build with `bash scripts/build.sh` (the README's test command does) first", p);
        return p;
    }

    readonly Process _process;
    readonly StringBuilder _log = new();
    public string SocketPath { get; }
    public int Pid => _process.Id;
    public bool HasExited => _process.HasExited;
    public string Log { get { lock (_log) return _log.ToString(); } }

    public HostSim(params string[] extraArgs) : this(null, extraArgs) { }

    /// <param name="env">Extra environment for the hostsim process itself.</param>
    public HostSim(IDictionary<string, string>? env, params string[] extraArgs)
    {
        var dir = Path.Combine(Path.GetTempPath(), "guesticd-test-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        SocketPath = Path.Combine(dir, "hostsim.sock");
        var psi = new ProcessStartInfo(Executable)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var a in new[] { "serve", "--listen", "unix:" + SocketPath }.Concat(extraArgs)) psi.ArgumentList.Add(a);
        // Test hostsims run at once as root would race for the default /run/guesticd/hostsim.ctl; the
        // operations tests name their own control socket.
        if (!extraArgs.Contains("--control")) { psi.ArgumentList.Add("--control"); psi.ArgumentList.Add("none"); }
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        _process = Process.Start(psi)!;
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        WaitForLog("listening on", 30_000);
    }

    public void WaitForLog(string text, int timeoutMs) => WaitForLog(text, 1, timeoutMs);

    /// <summary>Waits until <paramref name="text"/> occurs at least <paramref name="count"/> times
    /// (sessions are numbered in arrival order; the loader's probe opens the first instance's session).</summary>
    public void WaitForLog(string text, int count, int timeoutMs)
    {
        var sw = Stopwatch.StartNew();
        while (System.Text.RegularExpressions.Regex.Count(Log, System.Text.RegularExpressions.Regex.Escape(text)) < count)
        {
            if (_process.HasExited && !Log.Contains(text)) throw new InvalidOperationException($"hostsim exited ({_process.ExitCode}):\n{Log}");
            if (sw.ElapsedMilliseconds > timeoutMs) throw new TimeoutException($"hostsim never logged '{text}':\n{Log}");
            Thread.Sleep(20);
        }
    }

    /// <summary>Environment for a client that must see only our ICD, talking to this hostsim.</summary>
    public Dictionary<string, string> ClientEnv(bool withLavapipe = false) => new()
    {
        ["VK_DRIVER_FILES"] = withLavapipe ? Manifest + ":" + LavapipeManifest : Manifest,
        ["GUESTICD_TRANSPORT"] = "unix:" + SocketPath,
        ["VK_LOADER_LAYERS_DISABLE"] = "*",
    };

    public void Kill() { if (!_process.HasExited) { _process.Kill(); _process.WaitForExit(); } }

    public void Dispose()
    {
        Kill();
        try { Directory.Delete(Path.GetDirectoryName(SocketPath)!, true); } catch { }
    }
}
