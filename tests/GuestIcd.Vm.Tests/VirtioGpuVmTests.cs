using System.Diagnostics;
using System.Text;

namespace GuestIcd.Vm.Tests;

/// <summary>
/// hostsim as the backend of a guest's virtio-gpu device (<c>serve --listen vhost-user-gpu:SOCK</c>, QEMU's
/// <c>vhost-user-gpu-pci</c>, guest RAM a shared memfd): the guest kernel's virtio-gpu driver probes it, its
/// console runs on the 2D commands, and a guest program sees our capset and submits through the DRM UAPI
/// alone (tests/vm/virtgpu-probe.c).
/// </summary>
public sealed class VirtioGpuVmTests(VmFixture vm, ITestOutputHelper output) : IClassFixture<VmFixture>
{
    static string Out => Environment.GetEnvironmentVariable("GUESTICD_OUT") is { Length: > 0 } o ? o : "out";

    bool VmMissing()
    {
        if (vm.Available)
        {
            Assert.True(vm.Prepare.ExitCode == 0, "preparing the VM cache failed: " + vm.Prepare);
            return false;
        }
        output.WriteLine("skipped: " + vm.Reason);
        if (Environment.GetEnvironmentVariable("GUESTICD_REQUIRE_VM") == "1")
            Assert.Fail("qemu missing: install qemu-system-x86 (GUESTICD_REQUIRE_VM=1); harness said: " + vm.Reason);
        return true;
    }

    sealed class GpuHostSim : IDisposable
    {
        readonly Process _process;
        readonly StringBuilder _log = new();
        public string Socket { get; } = $"/tmp/guesticd-vgpu-{Guid.NewGuid():N}"[..40] + ".sock";
        public string Log { get { lock (_log) return _log.ToString(); } }

        public GpuHostSim()
        {
            var exe = Path.Combine(Vm.Root, Out, "hostsim", "guesticd-hostsim");
            if (!File.Exists(exe)) throw new FileNotFoundException("build hostsim first (scripts/build.sh)", exe);
            var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in new[] { "serve", "--listen", "vhost-user-gpu:" + Socket, "--warm-workers", "0" }) psi.ArgumentList.Add(a);
            _process = Process.Start(psi)!;
            _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); };
            _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); };
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
            var sw = Stopwatch.StartNew();
            while (!Log.Contains("listening on vhost-user-gpu:"))
            {
                if (_process.HasExited) throw new InvalidOperationException($"hostsim exited ({_process.ExitCode}):\n{Log}");
                if (sw.ElapsedMilliseconds > 30_000) throw new TimeoutException("hostsim never started listening:\n" + Log);
                Thread.Sleep(20);
            }
        }

        public bool Alive => !_process.HasExited;

        /// <summary>Waits until the device's connection has ended (the VM is gone) and its summary is logged.</summary>
        public string WaitForEnd()
        {
            var sw = Stopwatch.StartNew();
            while (!Log.Contains("connection ended") && sw.ElapsedMilliseconds < 10_000) Thread.Sleep(50);
            return Log;
        }

        public void Dispose()
        {
            if (!_process.HasExited) { _process.Kill(); _process.WaitForExit(); }
            File.Delete(Socket);
        }
    }

    static string BuildProbe()
    {
        var dir = Path.Combine(Vm.Root, Out, "vm-tools");
        Directory.CreateDirectory(dir);
        var exe = Path.Combine(dir, "virtgpu-probe");
        var cc = Vm.RunProcess("cc", ["-O2", "-Wall", "-Werror", "-o", exe, Path.Combine(Vm.Root, "tests", "vm", "virtgpu-probe.c")]);
        Assert.True(cc.ExitCode == 0, "cc virtgpu-probe.c failed: " + cc);
        return exe;
    }

    [Fact]
    public void GuestDriverProbesTheDeviceAndSeesOurCapset()
    {
        if (VmMissing()) return;
        var probe = BuildProbe();
        using var host = new GpuHostSim();
        var r = Vm.Run(["--vgpu", host.Socket, "--", "bash", "-c", $"{probe}; echo probe=$?; ls /sys/class/drm"]);
        var log = host.WaitForEnd();
        output.WriteLine(r.ToString());
        output.WriteLine("--- hostsim\n" + log);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("render_node=/dev/dri/renderD128", r.Stdout);
        Assert.Contains("param_3d_features=1", r.Stdout);
        Assert.Contains("capset_magic=GICD", r.Stdout);
        Assert.Contains("capset_protocol=1.1", r.Stdout);
        Assert.Contains("capset_identity=guesticd-hostsim llvmpipe", r.Stdout);
        Assert.Contains($"param_supported_capset_ids={1 << 24}", r.Stdout);
        Assert.Contains("execbuffer=ok fence_signaled=yes", r.Stdout);
        Assert.Contains("probe=0", r.Stdout);
        Assert.Contains("card0", r.Stdout);
        // The console's framebuffer went through the 2D commands; the probe's context through the 3D ones.
        foreach (var cmd in new[] { "GET_DISPLAY_INFO", "RESOURCE_CREATE_2D", "RESOURCE_ATTACH_BACKING", "SET_SCANOUT", "TRANSFER_TO_HOST_2D", "RESOURCE_FLUSH",
                     "GET_CAPSET_INFO", "GET_CAPSET", "CTX_CREATE", "CTX_ATTACH_RESOURCE", "RESOURCE_CREATE_3D", "SUBMIT_3D", "CTX_DESTROY" })
            Assert.Matches($"served: .*{cmd} [0-9]+", log);
        Assert.Contains("context 2 (virtgpu-probe) created", log);
        Assert.Contains("refused: 0", log);
        Assert.True(host.Alive, "hostsim died");
    }
}
