using System.Diagnostics;
using System.Text;

namespace GuestIcd.Vm.Tests;

/// <summary>
/// The ICD inside a real guest reaches hostsim on the host over the vm transport: rings and HOST_VISIBLE
/// memory in an ivshmem BAR backed by a host file, doorbells over the virtio-serial port. Uses the build in
/// GUESTICD_OUT (default out/: scripts/build.sh).
/// </summary>
public sealed class VmTransportEndToEndTests(VmFixture vm, ITestOutputHelper output) : IClassFixture<VmFixture>
{
    static string Out => Environment.GetEnvironmentVariable("GUESTICD_OUT") is { Length: > 0 } o ? o : "out";

    static string Need(string rel)
    {
        var p = Path.Combine(Vm.Root, rel);
        if (!File.Exists(p)) throw new FileNotFoundException($"{rel} is missing: build with `bash scripts/build.sh` first (or set GUESTICD_OUT)", p);
        return p;
    }

    /// <summary>hostsim listening on vm:SOCK,shm=FILE, its log collected.</summary>
    sealed class VmHostSim : IDisposable
    {
        readonly Process _process;
        readonly StringBuilder _log = new();
        public string Socket { get; }
        public string Shm { get; }
        public string Log { get { lock (_log) return _log.ToString(); } }

        public VmHostSim()
        {
            var id = Guid.NewGuid().ToString("N")[..12];
            Socket = $"/tmp/guesticd-vm-e2e-{id}.sock";
            Shm = $"/dev/shm/guesticd-vm-e2e-{id}.shm";
            var psi = new ProcessStartInfo(Need($"{Out}/hostsim/guesticd-hostsim"))
            {
                RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            };
            foreach (var a in new[] { "serve", "--listen", $"vm:{Socket},shm={Shm},size=268435456" }) psi.ArgumentList.Add(a);
            _process = Process.Start(psi)!;
            _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); };
            _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); };
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
            var sw = Stopwatch.StartNew();
            while (!Log.Contains("listening on"))
            {
                if (_process.HasExited) throw new InvalidOperationException($"hostsim exited ({_process.ExitCode}):\n{Log}");
                if (sw.ElapsedMilliseconds > 30_000) throw new TimeoutException("hostsim never logged 'listening on':\n" + Log);
                Thread.Sleep(20);
            }
        }

        public void Dispose()
        {
            if (!_process.HasExited) { _process.Kill(); _process.WaitForExit(); }
            File.Delete(Socket);
            File.Delete(Shm);
        }
    }

    Vm.Result Show(Vm.Result r, VmHostSim host)
    {
        output.WriteLine(r.ToString());
        output.WriteLine("--- hostsim\n" + host.Log);
        return r;
    }

    static Dictionary<string, string?> GuestEnv(string transport) => new()
    {
        ["VK_DRIVER_FILES"] = Need($"{Out}/icd/guesticd_icd.x86_64.json"),
        ["GUESTICD_TRANSPORT"] = transport,
        ["GUESTICD_LOG"] = "info",
        ["VK_LOADER_LAYERS_DISABLE"] = "*",
    };

    [SkippableFact]
    public void VulkaninfoInTheGuestSeesHostsimOverIvshmemAndVirtioSerial()
    {
        vm.Require();
        using var host = new VmHostSim();
        var r = Show(Vm.Run(["--ivshmem", $"{host.Shm}:256M", "--serial", host.Socket, "--", "vulkaninfo", "--summary"], GuestEnv("vm")), host);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("deviceName         = GuestIcd: llvmpipe", r.Stdout);
        Assert.Matches(@"GuestIcd info: connected to llvmpipe .* over vm:/dev/vport\d+p\d+ \+ ivshmem /sys/bus/pci/devices/[0-9a-f:.]+/resource2", r.Stderr);
        // One session: the loader's probe opens it and the instance keeps it.
        Assert.Contains("session 1 connected via vm:", host.Log);
        Assert.DoesNotContain("session 2 connected via vm:", host.Log);
        // The session's worker process logs its end just after qemu closes the channel: allow it a moment.
        var ended = Stopwatch.StartNew();
        while (!host.Log.Contains("session 1 ended (guest disconnected)") && ended.ElapsedMilliseconds < 10_000) Thread.Sleep(50);
        Assert.Contains("session 1 ended (guest disconnected)", host.Log);
    }

    /// <summary>The compute client and its shader, built on the host where the guest sees them (read-only, same paths).</summary>
    static (string Compute, string Spv) BuildCompute()
    {
        var tools = Path.Combine(Vm.Root, Out, "vm-tools");
        Directory.CreateDirectory(tools);
        var compute = Path.Combine(tools, "compute");
        var spv = Path.Combine(tools, "multiply.spv");
        var cc = Vm.RunProcess("cc", ["-O2", "-o", compute, Path.Combine(Vm.Root, "native-shim", "clients", "compute.c"), "-lvulkan"]);
        Assert.True(cc.ExitCode == 0, "cc failed: " + cc);
        var glslc = Vm.RunProcess("glslc", [Path.Combine(Vm.Root, "native-shim", "shaders", "multiply.comp"), "-o", spv]);
        Assert.True(glslc.ExitCode == 0, "glslc failed: " + glslc);
        return (compute, spv);
    }

    /// <summary>A VM killed in the middle of its work: hostsim releases everything that session created and
    /// serves the next VM on the same listener.</summary>
    [SkippableFact]
    public void KillingTheVmMidStreamReleasesItsObjectsAndHostsimKeepsServing()
    {
        vm.Require();
        var holder = Path.Combine(Vm.Root, Out, "vm-tools", "device_lost");
        Directory.CreateDirectory(Path.GetDirectoryName(holder)!);
        var cc = Vm.RunProcess("cc", ["-O2", "-o", holder, Path.Combine(Vm.Root, "native-shim", "clients", "device_lost.c"), "-lvulkan"]);
        Assert.True(cc.ExitCode == 0, "cc failed: " + cc);
        using var host = new VmHostSim();
        // The client creates its instance, then waits on a stdin that never speaks; the test kills qemu once the
        // instance's session (the one after the loader's probe) is under way.
        var psi = new ProcessStartInfo("bash") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Vm.Root };
        foreach (var a in new[] { Vm.Harness, "--timeout", "240", "--ivshmem", $"{host.Shm}:256M", "--serial", host.Socket, "--", "sh", "-c", $"sleep 1000 | {holder}" })
            psi.ArgumentList.Add(a);
        foreach (var (k, v) in GuestEnv("vm")) psi.Environment[k] = v;
        using (var vmProcess = Process.Start(psi)!)
        {
            var sw = Stopwatch.StartNew();
            // The holder's instance: its session's features message follows vkCreateInstance's connection.
            while (!host.Log.Contains("session 1: guest features") && sw.ElapsedMilliseconds < 200_000 && !vmProcess.HasExited) Thread.Sleep(100);
            Assert.True(host.Log.Contains("session 1: guest features"), "the guest's instance never connected:\n" + host.Log);
            Thread.Sleep(1000);
            vmProcess.Kill(entireProcessTree: true);
            vmProcess.WaitForExit();
        }
        // qemu's death closes the chardev socket: the session ends and releases what the guest left behind.
        const string released = @"session 1 ended \((guest disconnected|transport closed)[^\n]*: [1-9]\d* commands[^\n]* [1-9]\d* guest objects left";
        var wait = Stopwatch.StartNew();
        while (!System.Text.RegularExpressions.Regex.IsMatch(host.Log, released) && wait.ElapsedMilliseconds < 20_000) Thread.Sleep(50);
        Assert.Matches(released, host.Log);

        var next = Show(Vm.Run(["--ivshmem", $"{host.Shm}:256M", "--serial", host.Socket, "--", "vulkaninfo", "--summary"], GuestEnv("vm")), host);
        Assert.Equal(0, next.ExitCode);
        Assert.Contains("deviceName         = GuestIcd: llvmpipe", next.Stdout);
    }

    [SkippableFact]
    public void ComputeInTheGuestVerifiesThroughTheSharedHeap()
    {
        vm.Require();
        var (compute, spv) = BuildCompute();
        using var host = new VmHostSim();
        // auto: inside a guest with the port, the ICD picks vm by itself.
        var r = Show(Vm.Run(["--ivshmem", $"{host.Shm}:256M", "--serial", host.Socket, "--", compute, spv], GuestEnv("auto")), host);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("round 1: verified", r.Stdout);
        Assert.Contains("over vm:/dev/vport", r.Stderr);
        Assert.Contains("session 1 connected via vm:", host.Log);
    }
}
