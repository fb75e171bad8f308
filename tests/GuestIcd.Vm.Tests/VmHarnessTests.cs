using System.Net.Sockets;
using System.Text;

namespace GuestIcd.Vm.Tests;

/// <summary>
/// tests/vm/run-in-vm.sh boots a real Linux guest under qemu and runs a command in it. Without qemu the
/// harness exits 77 and these tests report skipped with its reason (VmFixture.Require), unless
/// GUESTICD_REQUIRE_VM=1, where they fail.
/// </summary>
public sealed class VmHarnessTests(VmFixture vm, ITestOutputHelper output) : IClassFixture<VmFixture>
{
    Vm.Result Show(Vm.Result r)
    {
        output.WriteLine(r.ToString());
        return r;
    }

    [SkippableFact]
    public void GuestRunsTheDebianKernelAndOurInit()
    {
        vm.Require();
        var r = Show(vm.Basic);
        Assert.False(string.IsNullOrEmpty(vm.KernelRelease), "out/vm/kernel/current is missing");
        Assert.Contains($"kernel={vm.KernelRelease}\n", r.Stdout);
        Assert.Contains("hostname=guesticd-vm\n", r.Stdout);      // set by tests/vm/init.sh
        Assert.Contains("guesticd.vm=1", r.Stdout);                // the harness's kernel command line
        Assert.Contains("pid1=/bin/busybox sh /init", r.Stdout);   // PID 1 is our initramfs init
        Assert.Contains($"cwd={Vm.Root}\n", r.Stdout);             // the host's working directory
    }

    [SkippableFact]
    public void ExitStatusStdoutAndStderrComeBack()
    {
        vm.Require();
        var r = Show(vm.Basic);
        Assert.Equal(3, r.ExitCode);
        var expected = string.Join("", Enumerable.Range(1, 20000).Select(i => $"{i}\n"));
        Assert.Contains(expected, r.Stdout);                       // all of it, in order
        Assert.Contains("to-stderr\n", r.Stderr);
        Assert.DoesNotContain("to-stderr", r.Stdout);
    }

    [SkippableFact]
    public void LavapipeRunsInTheGuestWithForwardedEnvironment()
    {
        vm.Require();
        var marker = "m-" + Guid.NewGuid().ToString("N");
        var r = Show(Vm.Run(
            ["--", "bash", "-c", "echo \"marker=$GUESTICD_TEST_MARKER\"; exec vulkaninfo --summary"],
            new Dictionary<string, string?>
            {
                ["VK_DRIVER_FILES"] = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json",
                ["GUESTICD_TEST_MARKER"] = marker,
            }));
        Assert.Equal(0, r.ExitCode);
        Assert.Contains($"marker={marker}\n", r.Stdout);
        Assert.Contains("deviceName         = llvmpipe", r.Stdout);
        Assert.Contains("driverName         = llvmpipe", r.Stdout);
    }

    [SkippableFact]
    public async Task IvshmemAndVirtioSerialReachTheHost()
    {
        vm.Require();
        // the guest-side helper: mmaps the ivshmem BAR (sysfs resource2 supports only mmap)
        var tool = Path.Combine(Vm.Dir, "tools", "ivshmem-rw");
        Directory.CreateDirectory(Path.GetDirectoryName(tool)!);
        var cc = Vm.RunProcess("cc", ["-O2", "-Wall", "-o", tool, Path.Combine(Vm.Root, "tests", "vm", "ivshmem-rw.c")]);
        Assert.True(cc.ExitCode == 0, "cc failed: " + cc);

        var id = Guid.NewGuid().ToString("N")[..12];
        var shm = Path.Combine(Path.GetTempPath(), $"guesticd-vm-test-{id}.shm");
        var sock = $"/tmp/guesticd-vm-test-{id}.sock";
        var hostPattern = "host->guest:" + id;
        var guestPattern = "guest->host:" + id;
        try
        {
            using (var f = new FileStream(shm, FileMode.Create))
            {
                f.SetLength(1 << 20);
                f.Write(Encoding.ASCII.GetBytes(hostPattern));
            }

            // the host end of the virtio-serial port: qemu connects here; the guest says ping, we say pong
            using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            listener.Bind(new UnixDomainSocketEndPoint(sock));
            listener.Listen(1);
            var host = Task.Run(async () =>
            {
                using var c = await listener.AcceptAsync();
                var buf = new byte[4];
                var got = 0;
                while (got < 4)
                {
                    var n = await c.ReceiveAsync(buf.AsMemory(got), SocketFlags.None);
                    if (n == 0) break;
                    got += n;
                }
                if (got == 4) await c.SendAsync(Encoding.ASCII.GetBytes("pong"), SocketFlags.None);
                try { while (await c.ReceiveAsync(new byte[64], SocketFlags.None) > 0) { } } catch (SocketException) { }
                return Encoding.ASCII.GetString(buf, 0, got);
            });

            var script = $$"""
                set -e
                for p in /sys/class/virtio-ports/*; do echo "port $(cat $p/name) ${p##*/}"; done
                readlink /dev/virtio-ports/org.guesticd.0
                echo "resource=$({{tool}} find)"
                echo "size=$({{tool}} size)"
                echo "read=$({{tool}} read 0 {{hostPattern.Length}})"
                {{tool}} write 4096 '{{guestPattern}}'
                exec 3<>/dev/virtio-ports/org.guesticd.0
                printf ping >&3
                echo "serial=$(head -c 4 <&3)"
                """;
            var r = Show(await Task.Run(() => Vm.Run(["--ivshmem", $"{shm}:1M", "--serial", sock, "--", "bash", "-c", script])));
            Assert.Equal(0, r.ExitCode);
            Assert.Matches(@"port org\.guesticd\.0 vport\d+p\d+\n", r.Stdout);
            Assert.Matches(@"resource=/sys/bus/pci/devices/[0-9a-f:.]+/resource2\n", r.Stdout);
            Assert.Contains("size=1048576\n", r.Stdout);
            Assert.Contains($"read={hostPattern}\n", r.Stdout);    // host file → guest BAR
            Assert.Contains("serial=pong\n", r.Stdout);            // host socket → guest port

            Assert.Equal("ping", await host.WaitAsync(TimeSpan.FromSeconds(10))); // guest port → host socket
            var bytes = File.ReadAllBytes(shm);
            Assert.Equal(guestPattern, Encoding.ASCII.GetString(bytes, 4096, guestPattern.Length)); // guest BAR → host file
        }
        finally
        {
            File.Delete(shm);
            File.Delete(sock);
        }
    }

    [SkippableFact]
    public void TimeoutKillsTheGuestAndExits124()
    {
        vm.Require();
        var r = Show(Vm.Run(["--timeout", "4", "--", "sleep", "600"]));
        Assert.Equal(124, r.ExitCode);
        Assert.Contains("timed out after 4 s", r.Stderr);
        Assert.True(r.Elapsed < TimeSpan.FromSeconds(60), $"took {r.Elapsed}");
    }

    [Fact]
    public void MissingQemuExits77WithOneClearLine()
    {
        // needs no VM: the harness checks for qemu before anything else
        var r = Show(Vm.Run(["--", "true"], new Dictionary<string, string?> { ["GUESTICD_VM_QEMU"] = "/nonexistent/qemu-system-x86_64" }));
        Assert.Equal(Vm.Missing, r.ExitCode);
        Assert.Contains("install qemu-system-x86", r.Stderr);
        Assert.Equal("", r.Stdout);
    }
}
