using GuestIcd.Protocol;
using GuestIcd.Transport;
using GuestIcd.Vulkan;
using Xunit.Abstractions;
using static GuestIcd.Tests.LifetimeGuests;

namespace GuestIcd.Tests;

/// <summary>Whatever a guest leaves, and in whatever order it destroys things, the host destroys in dependency
/// order, keeps no memory or threads, never calls into a destroyed object, and other guests never notice.</summary>
public class TeardownTests(ITestOutputHelper output)
{
    /// <summary>Guests killed while holding 128 MiB of host memory each (driver memory: the heap-less unix path, or
    /// TCP) leave hostsim's memory and threads where they started. Before ordered teardown, each left ~122 MiB.</summary>
    [Theory]
    [InlineData(Via.UnixNoHeap, 100)]
    [InlineData(Via.Tcp, 10)]
    public void GuestsKilledMidSessionLeaveNoMemoryOrThreadsBehind(Via via, int guests)
    {
        using var host = new Host(via);
        const int Batch = 4;
        // A first guest loads the driver and warms the host's allocators: the baseline is a serving hostsim.
        StartAndKill(host, "hold 128", 1);
        int ended = 1;
        WaitEnded(host, ended);
        Thread.Sleep(500);
        var before = Tree(host.Sim.Pid, host.Sim.Log);
        long peak = 0;
        for (int done = 0; done < guests; done += Batch)
        {
            int n = Math.Min(Batch, guests - done);
            StartAndKill(host, "hold 128", n);
            peak = Math.Max(peak, Tree(host.Sim.Pid, host.Sim.Log).RssKiB);
            ended += n;
            WaitEnded(host, ended);
        }
        // Teardown runs on each session's own thread as it ends; give the last ones a moment to finish.
        var after = Tree(host.Sim.Pid, host.Sim.Log);
        for (int i = 0; i < 50 && (after.RssKiB > before.RssKiB + 64 * 1024 || after.Threads > before.Threads + Math.Max(4, guests / 10)); i++)
        {
            Thread.Sleep(100);
            after = Tree(host.Sim.Pid, host.Sim.Log);
        }
        output.WriteLine($"{via}: {guests} guests killed holding 128 MiB each: hostsim RSS {before.RssKiB / 1024} MiB -> {after.RssKiB / 1024} MiB " +
                         $"(peak seen {peak / 1024} MiB), threads {before.Threads} -> {after.Threads}");
        Assert.False(host.Sim.HasExited, host.Sim.Log);
        Assert.True(after.RssKiB < before.RssKiB + 64 * 1024, $"RSS {before.RssKiB} -> {after.RssKiB} KiB after {guests} killed guests");
        // The runtime's thread pool (the TCP relays run on it) may keep a few workers it started meanwhile; a thread
        // left per guest would be `guests` more.
        Assert.True(after.Threads <= before.Threads + Math.Max(4, guests / 10), $"threads {before.Threads} -> {after.Threads}");
        Assert.DoesNotContain("internal error", host.Sim.Log);
        // And the host still serves.
        var r = host.Run("zero 64");
        Assert.True(r.ExitCode == 0 && r.Stdout.Contains("every allocation read as zeros"), r.Stdout + r.Stderr + host.Sim.Log);
    }

    static void WaitEnded(Host host, int sessionsWithWork)
    {
        // One session a client: the loader's probe opens it and the instance keeps it.
        host.Sim.WaitForLog(" ended (", sessionsWithWork, 60_000);
    }

    /// <summary>A plain application bug used to kill hostsim: the instance destroyed before its device (the host then
    /// looked functions up through the dead instance and called NULL); and a device destroyed before its children.
    /// Both, repeatedly, next to a guest doing checked compute work.</summary>
    [Fact]
    public async Task ParentsDestroyedBeforeChildrenHurtNoOne()
    {
        using var host = new Host(Via.UnixHeap, null, "--log-level", "Debug");
        var dir = Directory.CreateTempSubdirectory("guesticd-teardown").FullName;
        var spv = Path.Combine(dir, "multiply.spv");
        Assert.Equal(0, Repo.Run("glslc", $"-o {spv} native-shim/shaders/multiply.comp").ExitCode);
        var compute = Path.Combine(dir, "compute");
        Assert.Equal(0, Repo.Run("cc", $"-std=c11 -O1 -o {compute} native-shim/clients/compute.c -lvulkan").ExitCode);
        using var stop = new CancellationTokenSource();
        var victim = Task.Run(() =>
        {
            int runs = 0;
            while (!stop.IsCancellationRequested || runs == 0)
            {
                var r = Repo.Run(compute, $"{spv} 100000", host.Env(), timeoutMs: 120_000);
                Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
                Assert.Contains("round 1: verified 100000 elements", r.Stdout);
                runs++;
            }
            return runs;
        });
        for (int i = 0; i < 5; i++)
        {
            var a = host.Run("instance-first");
            Assert.True(a.ExitCode == 0 && a.Stdout.Contains("instance destroyed before its device"), a.Stdout + a.Stderr + host.Sim.Log);
            var b = host.Run("device-first");
            Assert.True(b.ExitCode == 0 && b.Stdout.Contains("done"), b.Stdout + b.Stderr + host.Sim.Log);
        }
        stop.Cancel();
        int victimRuns = await victim.WaitAsync(TimeSpan.FromSeconds(120));
        output.WriteLine($"victim compute runs alongside: {victimRuns}");
        Assert.False(host.Sim.HasExited, host.Sim.Log);
        Assert.Contains("destroyed 11 objects the guest left", host.Sim.Log);
        Assert.DoesNotContain("protocol error", host.Sim.Log);
        Assert.DoesNotContain("internal error", host.Sim.Log);
        Directory.Delete(dir, true);
    }

    /// <summary>The host's own teardown and zeroing are valid usage: under `serve --validation`, sessions whose guest
    /// destroyed parents first, was killed while holding memory, or had memory zeroed on the device (the transfer path
    /// forced) end with the layer reporting nothing.</summary>
    [Fact]
    public void TeardownAndZeroingAreCleanUnderTheValidationLayer()
    {
        using var host = new Host(Via.UnixNoHeap, new Dictionary<string, string> { ["GUESTICD_ZERO_BY_TRANSFER"] = "1" }, "--validation");
        Assert.Contains("instance destroyed before its device", host.Run("instance-first").Stdout);
        Assert.Contains("done", host.Run("device-first").Stdout);
        Assert.Contains("every allocation read as zeros", host.Run("zero 64").Stdout);
        StartAndKill(host, "hold 16", 1);
        host.Sim.WaitForLog("validation: 0 errors, 0 warnings", 4, 60_000);
        Assert.DoesNotMatch(@"validation: [1-9]|validation: 0 errors, [1-9]", host.Sim.Log);
    }

    /// <summary>The children the host destroyed with their parent are forgotten: using one later is an unknown id
    /// that ends only that session, where it used to reach the driver as a destroyed object.</summary>
    [Theory]
    [InlineData("device")]
    [InlineData("instance")]
    public unsafe void AChildOfADestroyedParentIsAnUnknownId(string parent)
    {
        using var host = new HostSim("--log-level", "Debug");
        ulong deviceA, deviceB, buffer;
        using (var g = new RawGuest(host.SocketPath))
        {
            ulong* a = stackalloc ulong[8];
            var (instance, devices) = g.CreateDevices(2);
            (deviceA, deviceB) = (devices[0], devices[1]);
            var bci = new VkBufferCreateInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, size = 4096, usage = VkBufferUsageFlags.VK_BUFFER_USAGE_STORAGE_BUFFER_BIT };
            a[0] = deviceA; a[1] = (ulong)&bci; a[2] = 0; a[3] = (ulong)&buffer;
            g.Call(Tables.vkCreateBuffer, a);
            VkMemoryRequirements req;
            a[0] = deviceA; a[1] = buffer; a[2] = (ulong)&req;
            g.Call(Tables.vkGetBufferMemoryRequirements, a); // the buffer is real
            Assert.True(req.size >= 4096);
            if (parent == "device")
            {
                a[0] = deviceA; a[1] = 0;
                g.Call(Tables.vkDestroyDevice, a);
                // The buffer went with its device: asking about it through the other, live device is an unknown id.
                a[0] = deviceB; a[1] = buffer; a[2] = (ulong)&req;
                Assert.Throws<TransportClosedException>(() => g.Call(Tables.vkGetBufferMemoryRequirements, a));
                host.WaitForLog($"unknown object id 0x{buffer:X} (type 9)", 10_000);
            }
            else
            {
                a[0] = instance; a[1] = 0;
                g.Call(Tables.vkDestroyInstance, a);
                a[0] = deviceA;
                Assert.Throws<TransportClosedException>(() => g.Call(Tables.vkDeviceWaitIdle, a));
                host.WaitForLog($"unknown object id 0x{deviceA:X} (type 3)", 10_000);
            }
            Assert.True(g.Closed());
        }
        host.WaitForLog("ended by a protocol error", 10_000);
        Assert.Contains(parent == "device" ? "destroyed 1 objects the guest left" : "session 1 ended", host.Log);
        var r = Repo.Run("vulkaninfo", "--summary", host.ClientEnv(), timeoutMs: 60_000);
        Assert.True(r.ExitCode == 0, r.Stderr + host.Log);
        Assert.Contains("GuestIcd: llvmpipe", r.Stdout);
    }
}
