using static GuestIcd.Tests.LifetimeGuests;

namespace GuestIcd.Tests;

/// <summary>Every allocation a guest sees starts zeroed, on every transport: the client allocates, checks for
/// zeros, writes a pattern (which reaches the host), frees, and allocates again, four times over. Sizes below
/// glibc's mmap threshold are where lavapipe hands back its own recycled memory, and the guest's heap
/// allocator reuses the range it just freed; both used to show the previous pattern.</summary>
public class ZeroingTests
{
    [Theory]
    [InlineData(Via.UnixHeap, 64)]
    [InlineData(Via.UnixHeap, 4096)]
    [InlineData(Via.UnixNoHeap, 64)]
    [InlineData(Via.UnixNoHeap, 4096)]
    [InlineData(Via.Tcp, 64)]
    [InlineData(Via.Tcp, 1024)]
    public void AReusedAllocationReadsAsZeros(Via via, int kib)
    {
        using var host = new Host(via);
        var r = host.Run($"zero {kib}");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Sim.Log);
        Assert.Contains("zeroing: every allocation read as zeros", r.Stdout);
    }

    /// <summary>Memory the host cannot map (device-local on a GPU) is zeroed with vkCmdFillBuffer on one of the
    /// device's queues; GUESTICD_ZERO_BY_TRANSFER=1 takes that path on lavapipe too, so it is checked here.</summary>
    [Theory]
    [InlineData(Via.UnixNoHeap)]
    [InlineData(Via.Tcp)]
    public void TheDeviceSidePathZeroesToo(Via via)
    {
        using var host = new Host(via, new Dictionary<string, string> { ["GUESTICD_ZERO_BY_TRANSFER"] = "1" }, "--log-level", "Debug");
        var r = host.Run("zero 64");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Sim.Log);
        Assert.Contains("zeroing: every allocation read as zeros", r.Stdout);
        Assert.DoesNotContain("zeroing memory type", host.Sim.Log); // the transfer path was possible, and taken
    }
}
