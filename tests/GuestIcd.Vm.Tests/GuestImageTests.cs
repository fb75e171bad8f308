using System.Diagnostics;
using System.Text;

namespace GuestIcd.Vm.Tests;

/// <summary>
/// The guest disk image of scripts/guest-image.sh booted as a user would boot it: SeaBIOS, GRUB from the disk,
/// Debian's kernel and systemd under TCG, with hostsim as the VM's virtio-gpu backend. The image's self-test
/// unit (asked for through QEMU's fw_cfg) runs vulkaninfo with an empty environment on the serial console: the
/// packaged ICD, found through its manifest, reaches hostsim through /etc/guesticd.conf's virtio-gpu transport.
/// </summary>
public sealed class GuestImageTests(ITestOutputHelper output)
{
    static string Out => Environment.GetEnvironmentVariable("GUESTICD_OUT") is { Length: > 0 } o ? o : "out";
    static string Image => Path.Combine(Vm.Root, Out, "guest-image", "guesticd-guest.img");

    [SkippableFact]
    public void TheImageBootsAndRunsVulkaninfoThroughThePackagedIcd()
    {
        Skip.If(Environment.GetEnvironmentVariable("GUESTICD_SKIP_IMAGE_TEST") == "1", "GUESTICD_SKIP_IMAGE_TEST=1");
        var qemu = Vm.RunProcess("bash", ["-c", "command -v qemu-system-x86_64 && command -v debootstrap && [ $(id -u) = 0 ]"]);
        if (qemu.ExitCode != 0)
        {
            Assert.False(Environment.GetEnvironmentVariable("GUESTICD_REQUIRE_VM") == "1", "qemu, debootstrap or root missing: " + qemu);
            Skip.If(true, "needs qemu-system-x86_64, debootstrap and root");
        }
        // Up to date (scripts/test.sh built it before the timed run) it only compares hashes; otherwise it builds.
        var built = Vm.RunProcess("bash", ["scripts/guest-image.sh"], timeoutMs: 1_500_000);
        output.WriteLine(built.Stdout);
        Assert.True(built.ExitCode == 0, "scripts/guest-image.sh failed: " + built);
        Assert.Contains("-device vhost-user-gpu-pci,chardev=vgpu", built.Stdout);
        Assert.Contains($"-drive file={Image},format=raw,if=virtio", built.Stdout);

        var dir = Directory.CreateTempSubdirectory("guesticd-image-test").FullName;
        var socket = Path.Combine(dir, "vgpu.sock");
        var disk = Path.Combine(dir, "disk.img");
        var console = Path.Combine(dir, "console.log");
        var hostLog = new StringBuilder();
        Process? host = null;
        try
        {
            // A copy: the boot writes to its disk, and the built image must stay as built.
            Assert.Equal(0, Vm.RunProcess("cp", ["--sparse=always", Image, disk]).ExitCode);
            var psi = new ProcessStartInfo(Path.Combine(Vm.Root, Out, "hostsim", "guesticd-hostsim"))
            { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in new[] { "serve", "--listen", "vhost-user-gpu:" + socket }) psi.ArgumentList.Add(a);
            host = Process.Start(psi)!;
            host.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (hostLog) hostLog.AppendLine(e.Data); };
            host.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (hostLog) hostLog.AppendLine(e.Data); };
            host.BeginOutputReadLine();
            host.BeginErrorReadLine();
            var sw = Stopwatch.StartNew();
            while (!File.Exists(socket) && !host.HasExited && sw.ElapsedMilliseconds < 30_000) Thread.Sleep(50);
            Assert.True(File.Exists(socket), "hostsim never listened:\n" + hostLog);

            // What guest-image.sh prints, with TCG instead of KVM, no display, the console in a file and the
            // self-test asked for. QEMU exits when the guest powers off.
            var boot = Vm.RunProcess("timeout", ["900", "qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none",
                "-monitor", "none", "-no-reboot", "-machine", "pc,memory-backend=mem", "-accel", "tcg", "-cpu", "max", "-m", "1024",
                "-object", "memory-backend-memfd,id=mem,size=1024M,share=on",
                "-chardev", $"socket,id=vgpu,path={socket}", "-device", "vhost-user-gpu-pci,chardev=vgpu",
                "-drive", $"file={disk},format=raw,if=virtio",
                "-fw_cfg", "name=opt/org.guesticd.selftest,string=1", "-serial", $"file:{console}"], timeoutMs: 960_000);
            var log = File.Exists(console) ? File.ReadAllText(console) : "";
            string Tail(string s) => s.Length <= 8000 ? s : "[…]" + s[^8000..];
            output.WriteLine($"qemu exit {boot.ExitCode} after {boot.Elapsed.TotalSeconds:F0} s");
            Assert.True(boot.ExitCode == 0, $"qemu: {boot}\nconsole:\n{Tail(log)}\nhostsim:\n{hostLog}");
            // GRUB booted the disk's own kernel, and the root filesystem is the image's.
            Assert.Contains("root=LABEL=guesticd-root", log);
            Assert.Contains("guesticd-selftest: starting", log);
            Assert.Contains("renderD128", log);
            Assert.Matches(@"deviceName\s+= GuestIcd: llvmpipe", log);
            Assert.Contains("PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU", log);
            Assert.Contains("guesticd-selftest: vulkaninfo exit 0", log);
            lock (hostLog)
            {
                Assert.Contains("(vulkaninfo)", hostLog.ToString());
                Assert.DoesNotContain("protocol error", hostLog.ToString());
            }
        }
        finally
        {
            if (host is { HasExited: false }) { host.Kill(); host.WaitForExit(); }
            Directory.Delete(dir, recursive: true);
        }
    }
}
