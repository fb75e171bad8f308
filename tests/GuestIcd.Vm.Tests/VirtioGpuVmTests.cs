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
            foreach (var a in new[] { "serve", "--listen", "vhost-user-gpu:" + Socket }) psi.ArgumentList.Add(a);
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

        public void Kill()
        {
            _process.Kill();
            _process.WaitForExit();
        }

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

    [SkippableFact]
    public void GuestDriverProbesTheDeviceAndSeesOurCapset()
    {
        vm.Require();
        var probe = BuildProbe();
        using var host = new GpuHostSim();
        var r = Vm.Run(["--vgpu", host.Socket, "--", "bash", "-c", $"{probe}; echo probe=$?; ls /sys/class/drm"]);
        var log = host.WaitForEnd();
        output.WriteLine(r.ToString());
        output.WriteLine("--- hostsim\n" + log);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("render_node=/dev/dri/renderD128", r.Stdout);
        Assert.Contains("param_3d_features=1", r.Stdout);
        Assert.Contains("param_resource_blob=0", r.Stdout); // offered by hostsim, not passed on by vhost-user-gpu-pci
        Assert.Contains("capset_magic=GICD", r.Stdout);
        Assert.Contains("capset_protocol=1.2", r.Stdout); // Handshake.ProtocolMajor.ProtocolMinor
        Assert.Contains("capset_identity=hostsim: llvmpipe", r.Stdout);
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

    static Dictionary<string, string?> GuestEnv(string transport)
    {
        var icd = Path.Combine(Vm.Root, Out, "icd", "guesticd_icd.x86_64.json");
        if (!File.Exists(icd)) throw new FileNotFoundException("build the ICD first (scripts/build.sh)", icd);
        return new() { ["VK_DRIVER_FILES"] = icd, ["GUESTICD_TRANSPORT"] = transport, ["GUESTICD_LOG"] = "info", ["VK_LOADER_LAYERS_DISABLE"] = "*" };
    }

    static string Tool(string name, string source, params string[] extra)
    {
        var dir = Path.Combine(Vm.Root, Out, "vm-tools");
        Directory.CreateDirectory(dir);
        var exe = Path.Combine(dir, name);
        var cc = Vm.RunProcess("cc", ["-O2", "-o", exe, Path.Combine(Vm.Root, source), .. extra]);
        Assert.True(cc.ExitCode == 0, $"cc {source} failed: " + cc);
        return exe;
    }

    /// <summary>vulkaninfo, then two compute clients at once (1M elements each, verified), each its own DRM
    /// context and its own hostsim session, running side by side.</summary>
    [SkippableFact]
    public void VulkaninfoAndTwoComputeClientsAtOnceRunOverVirtioGpu()
    {
        vm.Require();
        var compute = Tool("compute", "native-shim/clients/compute.c", "-lvulkan");
        var spv = Path.Combine(Vm.Root, Out, "vm-tools", "multiply.spv");
        var glslc = Vm.RunProcess("glslc", [Path.Combine(Vm.Root, "native-shim", "shaders", "multiply.comp"), "-o", spv]);
        Assert.True(glslc.ExitCode == 0, "glslc failed: " + glslc);
        using var host = new GpuHostSim();
        var script = $"vulkaninfo --summary; {compute} {spv} >/tmp/a 2>&1 & {compute} {spv} >/tmp/b 2>&1 & wait; cat /tmp/a /tmp/b";
        // auto: a render node offering our capset is preferred.
        var r = Vm.Run(["--vgpu", host.Socket, "--", "bash", "-c", script], GuestEnv("auto"));
        var log = host.WaitForEnd();
        output.WriteLine(r.ToString());
        output.WriteLine("--- hostsim\n" + log);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("deviceName         = GuestIcd: llvmpipe", r.Stdout);
        Assert.Equal(2, System.Text.RegularExpressions.Regex.Matches(r.Stdout, "round 1: verified 1048576 elements").Count);
        Assert.Contains("over virtio-gpu:/dev/dri/renderD128", r.Stdout + r.Stderr);
        // hostsim offers RESOURCE_BLOB, but vhost-user-gpu-pci does not pass it on: the guest takes the classic path.
        Assert.Contains("MiB, 3D resource)", r.Stdout + r.Stderr);
        Assert.DoesNotContain("MiB, blob)", r.Stdout + r.Stderr);
        // The two compute sessions overlapped: both connected before either ended.
        var lines = log.Split('\n');
        int Line(string pattern, int after = -1) => Array.FindIndex(lines, after + 1, l => System.Text.RegularExpressions.Regex.IsMatch(l, pattern));
        var connects = lines.Select((l, i) => (l, i)).Where(x => x.l.Contains("connected via virtio-gpu context") && x.l.Contains("(compute;")).Select(x => x.i).ToList();
        var ends = lines.Select((l, i) => (l, i)).Where(x => x.l.Contains("ended (guest disconnected)")).Select(x => x.i).ToList();
        Assert.True(connects.Count >= 2, "fewer than two compute sessions:\n" + log);
        Assert.True(connects[^1] < ends.Where(e => e > connects[^2]).DefaultIfEmpty(int.MaxValue).Min(), "the compute sessions ran one after the other:\n" + log);
        Assert.Equal(-1, Line("errors?, [1-9]"));
        // Processes that exit right after their last (queued) destroys leave nothing behind on the host.
        Assert.All(lines.Where(l => l.Contains("ended (guest disconnected)")), l => Assert.Contains(" 0 guest objects left", l));
        Assert.Contains("refused: 0", log);
    }

    /// <summary>A guest process SIGKILLed in the middle of its session: its context goes with its DRM file,
    /// hostsim releases its objects, and the next process in the same VM is served.</summary>
    [SkippableFact]
    public void KilledGuestProcessHasItsObjectsReleased()
    {
        vm.Require();
        var holder = Tool("device_lost", "native-shim/clients/device_lost.c", "-lvulkan");
        using var host = new GpuHostSim();
        // Wait until the process holds the render node, give its instance's session time to start, then SIGKILL it.
        var script = $"sleep 1000 | {holder} & for i in $(seq 200); do p=$(pgrep -x device_lost | head -1); " +
                     "[ -n \"$p\" ] && ls -l /proc/$p/fd 2>/dev/null | grep -q renderD && break; sleep 0.25; done; " +
                     "sleep 5; pkill -KILL -x device_lost; sleep 2; vulkaninfo --summary | grep deviceName";
        var r = Vm.Run(["--vgpu", host.Socket, "--", "bash", "-c", script], GuestEnv("virtio-gpu"));
        var log = host.WaitForEnd();
        output.WriteLine(r.ToString());
        output.WriteLine("--- hostsim\n" + log);
        Assert.Contains("deviceName         = GuestIcd: llvmpipe", r.Stdout);
        Assert.Matches(@"session \d+ ended \((guest disconnected|transport closed)[^\n]*: [1-9]\d* commands[^\n]* [1-9]\d* guest objects left", log);
        Assert.Contains("(device_lost) destroyed", log);
    }

    /// <summary>hostsim killed under a guest process that holds an instance: its next call that needs the host
    /// returns VK_ERROR_DEVICE_LOST promptly (the relay's liveness NOP gets no answer), with no hang.</summary>
    [SkippableFact]
    public async Task KilledHostsimGivesTheGuestDeviceLostPromptly()
    {
        vm.Require();
        var holder = Tool("device_lost", "native-shim/clients/device_lost.c", "-lvulkan");
        var share = Path.Combine(Vm.Root, Out, "vm-tools", "share-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(share);
        try
        {
            using var host = new GpuHostSim();
            // The guest says "ready" through the share, the test kills hostsim and answers "killed", then the
            // guest lets the client make its next call and times it.
            var script = $"mkfifo /tmp/go; {holder} </tmp/go >/tmp/out 2>&1 & exec 3>/tmp/go; " +
                         "for i in $(seq 400); do grep -q ready /tmp/out && break; sleep 0.25; done; " +
                         $"touch {share}/ready; for i in $(seq 400); do [ -e {share}/killed ] && break; sleep 0.1; done; " +
                         "t0=$(date +%s%N); echo go >&3; wait; t1=$(date +%s%N); cat /tmp/out; echo elapsed_ms=$(( (t1 - t0) / 1000000 ))";
            var psi = new ProcessStartInfo("bash") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Vm.Root };
            foreach (var a in new[] { Vm.Harness, "--timeout", "240", "--share", share, "--vgpu", host.Socket, "--", "bash", "-c", script })
                psi.ArgumentList.Add(a);
            foreach (var (k, v) in GuestEnv("virtio-gpu")) psi.Environment[k] = v;
            using var vmProcess = Process.Start(psi)!;
            var stdout = vmProcess.StandardOutput.ReadToEndAsync();
            var stderr = vmProcess.StandardError.ReadToEndAsync();
            var sw = Stopwatch.StartNew();
            while (!File.Exists(Path.Combine(share, "ready")) && sw.ElapsedMilliseconds < 200_000 && !vmProcess.HasExited) Thread.Sleep(100);
            Assert.True(File.Exists(Path.Combine(share, "ready")), "the guest's client never got ready:\n" + host.Log);
            host.Kill();
            File.WriteAllText(Path.Combine(share, "killed"), "");
            Assert.True(vmProcess.WaitForExit(200_000), "the guest hung after hostsim died");
            string o = await stdout, e = await stderr;
            output.WriteLine(o + "\n--- stderr\n" + e + "\n--- hostsim\n" + host.Log);
            Assert.Contains("vkCreateDevice=-4", o); // VK_ERROR_DEVICE_LOST
            Assert.Contains("done", o);
            var ms = int.Parse(System.Text.RegularExpressions.Regex.Match(o, @"elapsed_ms=(\d+)").Groups[1].Value);
            output.WriteLine($"device lost after {ms} ms");
            Assert.True(ms < 5000, $"VK_ERROR_DEVICE_LOST took {ms} ms");
        }
        finally
        {
            Directory.Delete(share, true);
        }
    }

    /// <summary>The offscreen renderer (render pass and dynamic rendering) in the guest over virtio-gpu draws the
    /// same image, bit for bit, as lavapipe on the host.</summary>
    [SkippableFact]
    public void OffscreenRendererInTheGuestEqualsLavapipe()
    {
        vm.Require();
        var render = Tool("render", "native-shim/clients/render.c", "-std=c11", "-lvulkan");
        var dir = Path.GetDirectoryName(render)!;
        string vert = Path.Combine(dir, "render.vert.spv"), frag = Path.Combine(dir, "render.frag.spv");
        foreach (var (src, spv) in new[] { ("render.vert", vert), ("render.frag", frag) })
        {
            var glslc = Vm.RunProcess("glslc", ["-o", spv, Path.Combine(Vm.Root, "native-shim", "shaders", src)]);
            Assert.True(glslc.ExitCode == 0, "glslc failed: " + glslc);
        }
        var share = Path.Combine(Vm.Root, Out, "vm-tools", "render-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(share);
        try
        {
            var lavapipe = new Dictionary<string, string?> { ["VK_DRIVER_FILES"] = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json", ["VK_LOADER_LAYERS_DISABLE"] = "*" };
            foreach (var mode in new[] { "renderpass", "dynamic" })
            {
                string[] extra = mode == "dynamic" ? ["--dynamic"] : [];
                var reference = Vm.RunProcess(render, [vert, frag, Path.Combine(share, $"lavapipe-{mode}.ppm"), .. extra], lavapipe);
                Assert.True(reference.ExitCode == 0, "lavapipe render failed: " + reference);
            }
            using var host = new GpuHostSim();
            var script = $"{render} {vert} {frag} {share}/guest-renderpass.ppm && {render} {vert} {frag} {share}/guest-dynamic.ppm --dynamic";
            var r = Vm.Run(["--share", share, "--vgpu", host.Socket, "--", "bash", "-c", script], GuestEnv("virtio-gpu"));
            output.WriteLine(r + "\n--- hostsim\n" + host.WaitForEnd());
            Assert.Equal(0, r.ExitCode);
            Assert.Contains("device: GuestIcd: llvmpipe", r.Stdout);
            foreach (var mode in new[] { "renderpass", "dynamic" })
            {
                var want = File.ReadAllBytes(Path.Combine(share, $"lavapipe-{mode}.ppm"));
                var got = File.ReadAllBytes(Path.Combine(share, $"guest-{mode}.ppm"));
                Assert.True(want.Length > 128 * 128 * 3, $"lavapipe's {mode} image is {want.Length} bytes");
                Assert.True(want.AsSpan().SequenceEqual(got), $"the guest's {mode} image differs from lavapipe's");
            }
        }
        finally
        {
            Directory.Delete(share, true);
        }
    }
}
