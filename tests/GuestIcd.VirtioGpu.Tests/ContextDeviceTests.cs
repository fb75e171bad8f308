using System.Buffers.Binary;
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

    /// <summary>A SUBMIT_3D to <paramref name="ctx"/> carrying one of our capset's ops; INIT names the resource
    /// and the ring and heap sizes it holds (the fixture's own unless a test says otherwise).</summary>
    private protected static byte[] Cmd(uint ctx, uint op, uint resource = 0, uint ring = Ring, ulong heap = Heap)
    {
        var c = new byte[op == GuestIcdContext.OpInit ? 24 : 4];
        BinaryPrimitives.WriteUInt32LittleEndian(c, op);
        if (op == GuestIcdContext.OpInit)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(4), resource);
            BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(8), ring);
            BinaryPrimitives.WriteUInt64LittleEndian(c.AsSpan(16), heap);
        }
        return Req.Submit(ctx, c);
    }

    public void Dispose()
    {
        _device.Dispose();
        foreach (var s in _sessions) s.Dispose();
        _g.Dispose();
    }
}
