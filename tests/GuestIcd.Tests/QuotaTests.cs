using GuestIcd.Protocol;
using GuestIcd.Vulkan;
using static GuestIcd.Tests.LifetimeGuests;

namespace GuestIcd.Tests;

/// <summary>Per-session quotas set in hostsim's configuration and enforced by the host, whatever the guest claims.</summary>
public class QuotaTests
{
    /// <summary>A guest allocating 48 MiB at a time under a 200 MiB quota gets four, then VK_ERROR_OUT_OF_DEVICE_MEMORY
    /// (-2) from the host; after a free the next allocation works and is usable. On every path: the shared heap
    /// (the guest's own heap is 1 GiB, so only the host can refuse), heap-less driver memory, TCP.</summary>
    [Theory]
    [InlineData(Via.UnixHeap)]
    [InlineData(Via.UnixNoHeap)]
    [InlineData(Via.Tcp)]
    public void AnAllocationOverTheMemoryQuotaIsRefusedAndALaterOneInQuotaWorks(Via via)
    {
        using var host = new Host(via, null, "--quota-memory-mb", "200");
        var r = host.Run("memory 48");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Sim.Log);
        Assert.Contains("allocated 4 x 48 MiB, then -2", r.Stdout);
        Assert.Contains("after a free: 0", r.Stdout);
        Assert.Contains("mapped and wrote: 42", r.Stdout);
        Assert.Contains("refused (VK_ERROR_OUT_OF_DEVICE_MEMORY)", host.Sim.Log);
        Assert.DoesNotContain("protocol error", host.Sim.Log);
    }

    /// <summary>The case: 1 GiB allocations of driver memory took host RSS from 204 to 6,369 MiB. Under the
    /// default 4 GiB quota the fifth and sixth are refused, and the allocations the host zeroed hold no memory yet.</summary>
    [Fact]
    public unsafe void GigabyteDriverAllocationsStopAtTheDefaultQuota()
    {
        using var host = new HostSim();
        using var g = new RawGuest(host.SocketPath);
        var (_, devices) = g.CreateDevices(1);
        var before = Tree(host.Pid, host.Log).RssKiB;
        var results = new List<ulong>();
        ulong* a = stackalloc ulong[4];
        for (int i = 0; i < 6; i++)
        {
            var mai = new VkMemoryAllocateInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, allocationSize = 1UL << 30 };
            ulong memory;
            a[0] = devices[0]; a[1] = (ulong)&mai; a[2] = 0; a[3] = (ulong)&memory;
            results.Add(g.Call(Tables.vkAllocateMemory, a));
        }
        Assert.Equal([0ul, 0, 0, 0, unchecked((ulong)(uint)-2), unchecked((ulong)(uint)-2)], results);
        Assert.True(Tree(host.Pid, host.Log).RssKiB < before + 256 * 1024, $"host RSS {before} -> {Tree(host.Pid, host.Log).RssKiB} KiB");
        host.WaitForLog("the session holds 4294967296 of its 4294967296-byte device-memory quota", 10_000);
    }

    /// <summary>A quota on objects: fence creation (which the guest waits for) past it answers
    /// VK_ERROR_OUT_OF_HOST_MEMORY (-1); once one is destroyed, creation works again; the device stays usable.</summary>
    [Theory]
    [InlineData(Via.UnixHeap)]
    [InlineData(Via.Tcp)]
    public void ObjectsPastTheQuotaAreRefused(Via via)
    {
        using var host = new Host(via, null, "--quota-objects", "300");
        var r = host.Run("objects");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Sim.Log);
        // The instance and the device are objects too.
        Assert.Contains("created 298 fences, then -1", r.Stdout);
        Assert.Contains("after a destroy: 0", r.Stdout);
        Assert.Contains("vkDeviceWaitIdle=0", r.Stdout);
        Assert.Contains("refused (VK_ERROR_OUT_OF_HOST_MEMORY)", host.Sim.Log);
    }

    /// <summary>A 32-byte vkGetQueryPoolResults whose dataSize claims 30 million 64-bit results used to make the host
    /// allocate 240 MB. Now the session ends with the reason logged, the guest sees VK_ERROR_DEVICE_LOST, and
    /// hostsim and its other guests are unaffected.</summary>
    [Theory]
    [InlineData(Via.UnixHeap)]
    [InlineData(Via.Tcp)]
    public void AGiantReplyClaimEndsOnlyThatSession(Via via)
    {
        using var host = new Host(via);
        var before = Tree(host.Sim.Pid, host.Sim.Log).RssKiB;
        var r = host.Run("giant-reply");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Sim.Log);
        Assert.Contains("vkGetQueryPoolResults(240 MB)=-4", r.Stdout);
        Assert.Contains("vkDeviceWaitIdle=-4", r.Stdout);
        host.Sim.WaitForLog("ended by a protocol error: outputs of more than 16777216 bytes asked for by one message (reply quota)", 10_000);
        // The session's worker may still be finishing its teardown (it exits, with its memory, right after).
        long after = Tree(host.Sim.Pid, host.Sim.Log).RssKiB;
        for (int i = 0; i < 100 && after >= before + 100 * 1024; i++)
        {
            Thread.Sleep(100);
            after = Tree(host.Sim.Pid, host.Sim.Log).RssKiB;
        }
        Assert.True(after < before + 100 * 1024, $"the host still grew by the claim: {before} -> {after} KiB");
        var ok = host.Run("zero 64");
        Assert.True(ok.ExitCode == 0 && ok.Stdout.Contains("every allocation read as zeros"), ok.Stdout + ok.Stderr + host.Sim.Log);
    }

    /// <summary>A message larger than the configured quota ends the session before its payload is read.</summary>
    [Fact]
    public unsafe void AMessageOverTheMessageQuotaEndsTheSession()
    {
        using var host = new HostSim("--quota-message-kb", "64");
        using (var g = new RawGuest(host.SocketPath))
        {
            // vkCreateInstance with 100,000 enabled layer names of 1 byte each: about 500 KB on the wire.
            var names = (byte**)System.Runtime.InteropServices.NativeMemory.Alloc(100_000 * 8);
            byte name = (byte)'x';
            var one = stackalloc byte[2] { name, 0 };
            for (int i = 0; i < 100_000; i++) names[i] = one;
            var ici = new VkInstanceCreateInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, enabledLayerCount = 100_000, ppEnabledLayerNames = names };
            ulong instance;
            ulong* a = stackalloc ulong[3];
            a[0] = (ulong)&ici; a[1] = 0; a[2] = (ulong)&instance;
            Assert.ThrowsAny<Exception>(() => g.Call(Tables.vkCreateInstance, a));
            System.Runtime.InteropServices.NativeMemory.Free(names);
        }
        host.WaitForLog("exceeds the session's 65536-byte message quota", 10_000);
        var r = Repo.Run("vulkaninfo", "--summary", host.ClientEnv(), timeoutMs: 60_000);
        Assert.True(r.ExitCode == 0, r.Stderr + host.Log);
    }

    /// <summary>`serve --config FILE` sets the quotas; options given on the command line win over the file.</summary>
    [Fact]
    public void QuotasComeFromTheConfigFile()
    {
        var dir = Directory.CreateTempSubdirectory("guesticd-config").FullName;
        var file = Path.Combine(dir, "hostsim.json");
        File.WriteAllText(file, """
            // per-session limits
            { "quotas": { "deviceMemoryBytes": 209715200, "objects": 300, "replyBytes": 65536 } }
            """);
        using (var host = new Host(Via.UnixNoHeap, null, "--config", file))
        {
            host.Sim.WaitForLog("per-session quotas: device memory 200 MiB, shared heap 16384 MiB, 300 objects, replies 64 KiB", 10_000);
            var r = host.Run("memory 48");
            Assert.Contains("allocated 4 x 48 MiB, then -2", r.Stdout);
        }
        using (var host = new Host(Via.UnixNoHeap, null, "--config", file, "--quota-memory-mb", "100"))
        {
            var r = host.Run("memory 48");
            Assert.Contains("allocated 2 x 48 MiB, then -2", r.Stdout);
        }
        Directory.Delete(dir, true);
    }
}
