using GuestIcd.Transport;
using Microsoft.Extensions.Logging.Abstractions;

namespace GuestIcd.VirtioGpu.Tests;

/// <summary>What the context and blob tests start from: a virtio-gpu device whose contexts are GuestIcd
/// sessions (each offered session kept, to be disposed with the test), over a synthetic guest's memory and
/// one control queue, and the sizes of the ring and heap a context's resource carries.</summary>
public abstract class ContextDeviceTests : IDisposable
{
    private protected const int Ring = 4096;
    private protected const int Heap = 8192;
    private protected static readonly int Total = 4096 + (int)UnixRingTransport.SharedSize(Ring) + Heap;

    private protected readonly SyntheticGuest _g = new();
    private protected readonly List<ITransport> _sessions = [];
    private protected VirtioGpuDevice _device;
    private protected readonly SplitVirtqueue _q;

    private protected ContextDeviceTests()
    {
        _device = new VirtioGpuDevice(new VirtioGpuOptions(), NullLogger.Instance, NewContextHost());
        _device.Memory = _g.Memory;
        _q = _g.NewQueue();
    }

    /// <summary>The context host the device starts with: its sessions land in <see cref="_sessions"/>.</summary>
    private protected GuestIcdContextHost NewContextHost() => new(t => { lock (_sessions) _sessions.Add(t); }, NullLogger.Instance);

    public void Dispose()
    {
        _device.Dispose();
        foreach (var s in _sessions) s.Dispose();
        _g.Dispose();
    }
}
