using System.Diagnostics;

namespace GuestIcd.Vm.Tests;

/// <summary>Runs tests/vm/run-in-vm.sh, the harness that boots a Linux guest under qemu.</summary>
public static class Vm
{
    /// <summary>The harness's exit status when qemu (or another prerequisite) is missing.</summary>
    public const int Missing = 77;

    public static string Root { get; } = FindRoot();
    public static string Harness => Path.Combine(Root, "tests", "vm", "run-in-vm.sh");
    public static string Dir => Path.Combine(Root, "out", "vm");

    static string FindRoot()
    {
        var dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "GuestIcd.sln"))) dir = Path.GetDirectoryName(dir);
        return dir ?? throw new InvalidOperationException("GuestIcd.sln not found above " + AppContext.BaseDirectory);
    }

    public sealed record Result(int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed)
    {
        public override string ToString() =>
            $"exit {ExitCode} after {Elapsed.TotalSeconds:F1} s\n--- stdout\n{Tail(Stdout)}\n--- stderr\n{Tail(Stderr)}";

        static string Tail(string s) => s.Length <= 6000 ? s : "[…]" + s[^6000..];
    }

    /// <summary>
    /// Runs the harness with <paramref name="args"/> (options, "--", the guest command) from the repository root.
    /// The guest's limit is 240 s rather than the harness's 120 s (a later --timeout in args wins): under TCG a
    /// guest slows down with everything else a parallel `dotnet test` runs on two cores.
    /// </summary>
    public static Result Run(IEnumerable<string> args, IDictionary<string, string?>? env = null, int timeoutMs = 300_000)
        => RunProcess("bash", [Harness, "--timeout", "240", .. args], env, timeoutMs);

    public static Result RunProcess(string file, IEnumerable<string> args, IDictionary<string, string?>? env = null, int timeoutMs = 180_000)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true,
            UseShellExecute = false, WorkingDirectory = Root,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        var sw = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutMs))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', psi.ArgumentList)} did not finish within {timeoutMs} ms");
        }
        p.WaitForExit();
        return new Result(p.ExitCode, stdout.Result, stderr.Result, sw.Elapsed);
    }
}

/// <summary>
/// Prepares the harness's cache once (kernel download and initramfs, out/vm/) and says whether a guest can
/// run here at all: the harness exits 77 when qemu is missing.
/// </summary>
public sealed class VmFixture
{
    public bool Available { get; }
    public string Reason { get; } = "";
    public Vm.Result Prepare { get; }
    /// <summary>The guest's kernel release, e.g. 6.1.0-56-amd64 (out/vm/kernel/current).</summary>
    public string KernelRelease { get; } = "";

    readonly Lazy<Vm.Result> basic;

    public VmFixture()
    {
        Prepare = Vm.Run(["--prepare"], timeoutMs: 600_000);
        Available = Prepare.ExitCode != Vm.Missing;
        if (!Available) Reason = Prepare.Stderr.Trim();
        var current = Path.Combine(Vm.Dir, "kernel", "current");
        if (File.Exists(current)) KernelRelease = File.ReadAllText(current).Trim();
        basic = new(() => Vm.Run(["--", "bash", "-c", BasicScript]));
    }

    /// <summary>At a test's start: skips it, with the harness's reason, when no guest can run here (fails it
    /// instead under GUESTICD_REQUIRE_VM=1), and fails it when preparing the harness's cache failed.</summary>
    public void Require()
    {
        if (!Available && Environment.GetEnvironmentVariable("GUESTICD_REQUIRE_VM") == "1")
            Assert.Fail("qemu missing: install qemu-system-x86 (GUESTICD_REQUIRE_VM=1); harness said: " + Reason);
        Skip.IfNot(Available, Reason);
        Assert.True(Prepare.ExitCode == 0, "preparing the VM cache failed: " + Prepare);
    }

    /// <summary>One boot shared by the tests of the guest's identity, the exit status and the two streams.</summary>
    public Vm.Result Basic => basic.Value;

    public const string BasicScript = """
        echo "kernel=$(uname -r)"
        echo "hostname=$(hostname)"
        echo "cmdline=$(cat /proc/cmdline)"
        echo "pid1=$(tr '\0' ' ' </proc/1/cmdline)"
        echo "cwd=$(pwd)"
        seq 1 20000
        echo "to-stderr" >&2
        exit 3
        """;
}
