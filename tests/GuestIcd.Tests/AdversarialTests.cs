using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using Xunit.Abstractions;
using static GuestIcd.Tests.LifetimeGuests;

namespace GuestIcd.Tests;

/// <summary>Issue 7's adversarial suite: one hostsim, one well-behaved guest doing checked compute work the
/// whole time, and misbehaving guests of every class taken one after another on the same hostsim — silent
/// connections, every misuse the valid-usage gate refuses, parents destroyed before children, memory and
/// object quotas, a giant reply claim, a guest killed inside an endless wait, and raw-protocol streams the
/// fuzzer found (a driver crash is IsolationTests' and FuzzRegressionTests' part). hostsim stays up, the victim's
/// every element is right, and each misbehaving guest gets its precise error or a lost device of its own.</summary>
public class AdversarialTests(ITestOutputHelper output)
{
    static readonly Lazy<(string Loop, string Gate, string Wait, string Spv)> Built = new(() =>
    {
        var dir = Directory.CreateTempSubdirectory("guesticd-adversarial").FullName;
        var spv = Path.Combine(dir, "multiply.spv");
        var glslc = Repo.Run("glslc", $"-o {spv} native-shim/shaders/multiply.comp");
        Assert.True(glslc.ExitCode == 0, glslc.Stderr);
        foreach (var name in new[] { "compute_loop", "gate", "wait" })
        {
            var cc = Repo.Run("cc", $"-std=c11 -O1 -o {Path.Combine(dir, name)} native-shim/clients/{name}.c -lvulkan");
            Assert.True(cc.ExitCode == 0, cc.Stderr);
        }
        return (Path.Combine(dir, "compute_loop"), Path.Combine(dir, "gate"), Path.Combine(dir, "wait"), spv);
    });

    /// <summary>gate.c modes that the gate refuses by ending the guest's session (VK_ERROR_DEVICE_LOST = -4).</summary>
    static readonly string[] s_refused =
    [
        "bind-oversize", "fill-range", "copy-range", "update-range", "indirect-range", "descriptor-range", "push-range",
        "dispatch-limit", "null-handle", "other-device", "freed-memory", "destroyed-buffer", "core-above-version",
        "extension-not-enabled", "layout-lacks-set", "dispatch-no-pipeline", "sets-unbound", "outside-begin",
        "draw-outside-render-pass",
    ];

    static int Ended(HostSim host) => Regex.Count(host.Log, Regex.Escape(" ended ("));

    [Fact]
    public void EveryClassOfMisbehaviourMeetsOneHostsimWhileAVictimComputesCorrectly()
    {
        var (loop, gate, wait, spv) = Built.Value;
        using var host = new Host(Via.UnixHeap, null, "--quota-memory-mb", "200", "--quota-objects", "300");
        var sim = host.Sim;
        var env = host.Env();

        // The victim: checked compute rounds for as long as the misbehaviour lasts (it is stopped afterwards).
        var victimOut = new StringBuilder();
        var psi = new ProcessStartInfo(loop, $"{spv} 600 262144") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var (k, v) in env) psi.Environment[k] = v;
        using var victim = Process.Start(psi)!;
        victim.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (victimOut) victimOut.AppendLine(e.Data); };
        victim.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (victimOut) victimOut.AppendLine(e.Data); };
        victim.BeginOutputReadLine();
        victim.BeginErrorReadLine();
        string VictimSays() { lock (victimOut) return victimOut.ToString(); }
        var sw = Stopwatch.StartNew();
        while (!VictimSays().Contains("round 0: verified") && sw.ElapsedMilliseconds < 60_000) Thread.Sleep(50);
        Assert.Contains("round 0: verified", VictimSays());

        // Silent peers hold connections open through everything that follows.
        var silent = new List<Socket>();
        try
        {
            for (int i = 0; i < 50; i++)
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                s.Connect(new UnixDomainSocketEndPoint(sim.SocketPath));
                silent.Add(s);
            }

            // Misuse the gate refuses before the driver: each such guest loses its own device.
            foreach (var mode in s_refused)
            {
                var r = Repo.Run(gate, $"{spv} {mode}", env, timeoutMs: 60_000);
                Assert.True(r.ExitCode == 0 && r.Stdout.Contains("result=-4"), $"{mode}: exit {r.ExitCode}\n{r.Stdout}{r.Stderr}\n{sim.Log}");
            }
            // A feature the host does not serve: the spec's precise result, and the session goes on.
            var da = Repo.Run(gate, $"{spv} device-address", env, timeoutMs: 60_000);
            Assert.True(da.ExitCode == 0 && da.Stdout.Contains("result=-8"), da.Stdout + da.Stderr);

            // Lifetimes: parents destroyed before their children are survived, the children destroyed first.
            foreach (var (mode, says) in new[] { ("instance-first", "instance destroyed before its device"), ("device-first", "done") })
            {
                var r = host.Run(mode);
                Assert.True(r.ExitCode == 0 && r.Stdout.Contains(says), $"{mode}: {r.Stdout}{r.Stderr}\n{sim.Log}");
            }

            // Quotas: memory and objects are refused with their VkResult; a giant reply claim ends only that session.
            var mem = host.Run("memory 48");
            Assert.True(mem.Stdout.Contains("allocated 4 x 48 MiB, then -2") && mem.Stdout.Contains("after a free: 0"), mem.Stdout + mem.Stderr);
            var objects = host.Run("objects");
            Assert.True(objects.Stdout.Contains(", then -1") && objects.Stdout.Contains("after a destroy: 0"), objects.Stdout + objects.Stderr);
            var giant = host.Run("giant-reply");
            Assert.True(giant.Stdout.Contains("vkGetQueryPoolResults(240 MB)=-4"), giant.Stdout + giant.Stderr);
            sim.WaitForLog("(reply quota)", 10_000);

            // A guest killed inside an endless wait: its session ends promptly, its device drained and destroyed.
            var wpsi = new ProcessStartInfo(wait, "fence") { RedirectStandardOutput = true, UseShellExecute = false };
            foreach (var (k, v) in env) wpsi.Environment[k] = v;
            using (var waiter = Process.Start(wpsi)!)
            {
                // It prints "waiting" just before its endless wait, or exits (the stream then ends).
                string? l;
                do l = waiter.StandardOutput.ReadLine(); while (l is not null && l != "waiting");
                Assert.Equal("waiting", l);
                Thread.Sleep(2_000); // the wait reaches the host, beside the other misbehaving guests
                waiter.Kill();
                waiter.WaitForExit();
            }
            sim.WaitForLog("guest left during vkWaitForFences", 15_000);

            // Raw-protocol guests: the streams the fuzzer found (the mutated-SPIR-V one is left to FuzzRegressionTests'
            // own hostsim: the driver's shader compiler can take tens of seconds over it on a loaded 2-core machine;
            // the loader-crashing one can leave its worker hung rather than dead, see FuzzRegressionTests).
            foreach (var file in Directory.GetFiles(Repo.PathOf("tests/fuzz/regressions"), "*.bin").Where(f => !f.Contains("-shader") && !f.Contains("-loader-")).Order())
                FuzzRegressionTests.Send(sim, File.ReadAllBytes(file), " ended (", Ended(sim) + 1);
            output.WriteLine($"misbehaving guests done after {sw.Elapsed.TotalSeconds:F1} s");
        }
        finally
        {
            foreach (var s in silent) s.Dispose();
        }

        // The victim worked throughout: every round verified, no call failed; then it is stopped.
        Assert.False(victim.HasExited, "the victim stopped early:\n" + VictimSays() + sim.Log);
        int rounds = Regex.Count(VictimSays(), @"round \d+: verified 262144 elements");
        victim.Kill();
        victim.WaitForExit();
        output.WriteLine($"victim: {rounds} rounds verified alongside");
        Assert.DoesNotContain("FAILED", VictimSays());
        Assert.DoesNotContain("elements wrong", VictimSays());
        Assert.True(rounds >= 2, VictimSays());

        // hostsim is up, no session failed inside the host, driver crashes stayed inside their workers.
        Assert.False(sim.HasExited, sim.Log);
        Assert.DoesNotContain("internal error", sim.Log);
        Assert.True(Regex.Count(sim.Log, "ended by a protocol error") >= s_refused.Length, sim.Log);
        var after = host.Run("zero 64");
        Assert.True(after.ExitCode == 0 && after.Stdout.Contains("every allocation read as zeros"), after.Stdout + after.Stderr + sim.Log);
    }
}
