using GuestIcd.Transport.Native;
using System.Buffers.Binary;
using GuestIcd.Transport;
using GuestIcd.VirtioGpu;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace GuestIcd.VirtioGpu.Tests;

/// <summary>A context of our capset end to end inside the device: INIT maps the resource's scattered guest
/// pages as a session's rings, DOORBELL and WAIT carry the wake-ups both ways, the bytes are the guest's
/// own pages (zero copy), and the session ends when the context goes.</summary>
public sealed unsafe partial class GuestIcdContextTests : ContextDeviceTests
{
    private (uint Type, ulong Response, bool Answered) Send(byte[] request, ulong fence = 0)
    {
        if (fence != 0)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(request.AsSpan(4), Gpu.FlagFence);
            BinaryPrimitives.WriteUInt64LittleEndian(request.AsSpan(8), fence);
        }
        var (_, resp) = _g.Submit(request, 64);
        Assert.True(_device.Process(VirtioGpuDevice.ControlQueue, _q, out _));
        bool answered = _g.TakeUsed().Count == 1;
        return (_g.ResponseType(resp), resp, answered);
    }

    /// <summary>A resource of <see cref="Total"/> bytes on pages with gaps between them, attached to <paramref name="ctx"/>.</summary>
    private (ulong Gpa, ulong Len)[] SharedResource(uint id, uint ctx)
    {
        var pages = new (ulong, ulong)[Total / 4096];
        for (int i = 0; i < pages.Length; i++)
        {
            pages[i] = (_g.Alloc(4096, pageAligned: true), 4096);
            _g.Alloc(4096, pageAligned: true); // a gap
        }
        Assert.Equal(Gpu.RespOkNodata, Send(Req.CreateBuffer(id, (uint)Total)).Type);
        Assert.Equal(Gpu.RespOkNodata, Send(Req.AttachBacking(id, pages.Select(p => (p.Item1, (uint)p.Item2)).ToArray())).Type);
        Assert.Equal(Gpu.RespOkNodata, Send(Req.With(Gpu.CmdCtxAttachResource, ctx, id, 0)).Type);
        return pages;
    }

    /// <summary>Records what each CTX_CREATE asked for, then opens the context as hostsim does.</summary>
    private sealed class Recording(IGpuContextHost inner, List<GpuContextInfo> infos) : IGpuContextHost
    {
        public IGpuContext? Open(GpuContextInfo info, GpuContextResources resources, out string? refusal)
        {
            infos.Add(info);
            return inner.Open(info, resources, out refusal);
        }
    }

    /// <summary>A guest kernel without CONTEXT_INIT (an older driver, or a frontend that does not pass the
    /// feature on, as QEMU's vhost-user-gpu-pci) creates its context implicitly at the first EXECBUFFER, with
    /// context_init 0: that is our capset, the only one the device has, and its session runs as any other.
    /// With the feature offered, a context naming our capset is the same and one naming another is refused.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AContextWithoutContextInitIsAnImplicitContextOfOurCapset(bool offered)
    {
        var infos = new List<GpuContextInfo>();
        _device.Dispose();
        _device = new VirtioGpuDevice(new VirtioGpuOptions { ContextInit = offered }, NullLogger.Instance,
            new Recording(NewContextHost(), infos));
        _device.Memory = _g.Memory;
        Assert.Equal(offered, (_device.Features & (1UL << Gpu.FeatureContextInit)) != 0);
        Assert.NotEqual(0UL, _device.Features & (1UL << Gpu.FeatureVirgl)); // EXECBUFFER needs it

        Assert.Equal(Gpu.RespOkNodata, Send(Req.CtxCreate(5, 0, "implicit")).Type);
        var info = Assert.Single(infos);
        Assert.Equal((5u, GuestIcdCapset.Id, "implicit"), (info.ContextId, info.CapsetId, info.DebugName));
        if (offered)
        {
            Assert.Equal(Gpu.RespOkNodata, Send(Req.CtxCreate(6, GuestIcdCapset.Id, "explicit")).Type);
            Assert.Equal(GuestIcdCapset.Id, infos[^1].CapsetId);
            Assert.Equal(Gpu.RespErrInvalidParameter, Send(Req.CtxCreate(7, 4 /* venus */, "venus")).Type);
            Assert.Equal(2, infos.Count);
        }

        // The implicit context's session starts on its resource like any other.
        using var view = StartSession(5, 50);
        Assert.Contains("context 5 (implicit", Assert.Single(_sessions).Description);
    }

    /// <summary>A shared resource for <paramref name="ctx"/>, its rings initialised as the guest does, and INIT:
    /// returns the guest's view of the pages once the session runs.</summary>
    private ContiguousMapping StartSession(uint ctx, uint resource)
    {
        var pages = SharedResource(resource, ctx);
        // The guest's view: the same pages, contiguous (what its kernel's mmap of the buffer gives it).
        var view = _g.Memory.MapContiguous(pages, out string? error);
        Assert.True(view is not null, error);
        SharedRing.Initialize(view.Pointer + 4096);
        SharedRing.Initialize(view.Pointer + 4096 + SharedRing.RegionSize(Ring));
        Assert.Equal(Gpu.RespOkNodata, Send(Cmd(ctx, GuestIcdContext.OpInit, resource, Ring, Heap)).Type);
        Assert.Equal(GuestIcdContext.ControlRunning, *(uint*)view.Pointer);
        return view;
    }

    [Fact]
    public void SessionRunsOnTheGuestPagesWithWakeUpsBothWays()
    {
        Assert.Equal(Gpu.RespOkNodata, Send(Req.CtxCreate(1, GuestIcdCapset.Id, "app")).Type);
        using var view = StartSession(1, 10);
        var host = Assert.Single(_sessions);
        Assert.Equal(Heap, ((ISharedHeap)host).HeapBytes);

        // Guest → host: bytes in the ring, then DOORBELL (what the guest's relay sends for the transport's doorbell).
        int* sv = stackalloc int[2];
        Assert.Equal(0, Libc.socketpair(1, 1, 0, sv));
        using var guest = new UnixRingTransport(sv[0], view.Pointer + 4096, (nuint)(Total - 4096), Ring, isHost: false, "test guest", Heap);
        guest.Write("hello, host"u8);
        guest.Flush();
        Assert.Equal(Gpu.RespOkNodata, Send(Cmd(1, GuestIcdContext.OpDoorbell)).Type);
        var got = new byte[11];
        Assert.True(host.ReadExactly(got, 3000));
        Assert.Equal("hello, host"u8.ToArray(), got);
        // The heap is the guest's pages too: zero copy both ways.
        ((ISharedHeap)host).HeapBase[5] = 0x5A;
        Assert.Equal(0x5A, guest.HeapBase[5]);

        // Host → guest: the guest's WAIT is held until the session rings.
        var (_, waitResp, answered) = Send(Cmd(1, GuestIcdContext.OpWait), fence: 41);
        Assert.False(answered);
        var wakes = new List<(int Fd, uint Context)>();
        _device.CollectWakeFds(wakes);
        var (fd, ctx) = Assert.Single(wakes);
        Assert.Equal(1u, ctx);
        var reply = new byte[5];
        bool read = false;
        var reading = new Thread(() => read = guest.ReadExactly(reply, 5000)); // the guest goes to sleep on its socket
        reading.Start();
        // Its consumer flag in the host → guest ring says it sleeps (1: on the socket); only then does Flush ring.
        int* sleeping = (int*)(view.Pointer + 4096 + (int)UnixRingTransport.SharedSize(Ring) / 2 + 128);
        for (var sw = System.Diagnostics.Stopwatch.StartNew(); Volatile.Read(ref *sleeping) == 0 && sw.ElapsedMilliseconds < 10_000;) Thread.Sleep(1);
        Assert.NotEqual(0, Volatile.Read(ref *sleeping));
        host.Write("reply"u8);
        host.Flush(); // the guest sleeps: the host rings its doorbell
        int wfd = fd;
        var pfd = new Libc.PollFd { fd = wfd, events = Libc.POLLIN };
        Assert.Equal(1, Libc.poll(&pfd, 1, 3000));
        Assert.True(_device.Wake(1));
        Assert.Single(_g.TakeUsed());
        Assert.Equal(Gpu.RespOkNodata, _g.ResponseType(waitResp));
        Assert.Equal(41UL, BinaryPrimitives.ReadUInt64LittleEndian(_g.At(waitResp + 8, 8)));
        // The relay turns the signalled fence into a byte on the guest transport's socket.
        byte one = 1;
        Assert.Equal(1, (int)Libc.send(sv[1], &one, 1, 0));
        Assert.True(reading.Join(5000) && read);
        Assert.Equal("reply"u8.ToArray(), reply);

        // The guest process goes right after its last message: its context is destroyed, the session still
        // reads that message, then sees its peer gone, and the pages are no longer the session's.
        guest.Write("goodbye"u8);
        guest.Flush();
        Assert.Equal(Gpu.RespOkNodata, Send(Req.With(Gpu.CmdCtxDestroy, 1)).Type);
        var last = new byte[7];
        Assert.True(host.ReadExactly(last, 3000));
        Assert.Equal("goodbye"u8.ToArray(), last);
        Assert.Equal(GuestIcdContext.ControlEnded, *(uint*)view.Pointer);
        long deadline = Environment.TickCount64 + 3000;
        while (!host.PeerClosed && Environment.TickCount64 < deadline) Thread.Sleep(10);
        Assert.True(host.PeerClosed);
        // Detached: the guest writing its (now freed) pages no longer reaches the session's view.
        view.Pointer[4096 + (int)UnixRingTransport.SharedSize(Ring) + 7] = 0x77;
        Assert.NotEqual(0x77, ((ISharedHeap)host).HeapBase[7]);
    }

    [Fact]
    public void InitIsRefusedForForeignOrBadResourcesWithoutHarmingOthers()
    {
        Assert.Equal(Gpu.RespOkNodata, Send(Req.CtxCreate(1, GuestIcdCapset.Id, "victim")).Type);
        Assert.Equal(Gpu.RespOkNodata, Send(Req.CtxCreate(2, GuestIcdCapset.Id, "thief")).Type);
        Assert.Equal(Gpu.RespOkNodata, Send(Req.CtxCreate(3, GuestIcdCapset.Id, "greedy")).Type);
        Assert.Equal(Gpu.RespOkNodata, Send(Req.CtxCreate(4, GuestIcdCapset.Id, "early")).Type);
        SharedResource(10, 1);
        // Another context's resource, a heap beyond the resource, a ring that is not a power of two, and a
        // WAIT before INIT: each ends that context only.
        Assert.Equal(Gpu.RespErrUnspec, Send(Cmd(2, GuestIcdContext.OpInit, 10, Ring, Heap)).Type);
        Assert.Equal(Gpu.RespOkNodata, Send(Req.With(Gpu.CmdCtxAttachResource, 3, 10, 0)).Type);
        Assert.Equal(Gpu.RespErrUnspec, Send(Cmd(3, GuestIcdContext.OpInit, 10, Ring, Heap + 4096)).Type);
        Assert.Equal(Gpu.RespErrUnspec, Send(Cmd(4, GuestIcdContext.OpWait)).Type);
        Assert.Empty(_sessions);
        Assert.Equal(1, _device.ContextCount);
        Assert.Equal(Gpu.RespErrUnspec, Send(Cmd(1, GuestIcdContext.OpInit, 10, 3000, Heap)).Type);
        Assert.Equal(0, _device.ContextCount);
        Assert.Equal(Gpu.RespOkNodata, Send(Req.CtxCreate(5, GuestIcdCapset.Id, "again")).Type);
        Assert.Equal(Gpu.RespOkNodata, Send(Req.With(Gpu.CmdCtxAttachResource, 5, 10, 0)).Type);
        Assert.Equal(Gpu.RespOkNodata, Send(Cmd(5, GuestIcdContext.OpInit, 10, Ring, Heap)).Type);
        Assert.Single(_sessions);
        // Releasing the resource under a live session ends it.
        Assert.Equal(Gpu.RespOkNodata, Send(Req.With(Gpu.CmdResourceUnref, 0, 10, 0)).Type);
        long deadline = Environment.TickCount64 + 3000;
        while (!_sessions[0].PeerClosed && Environment.TickCount64 < deadline) Thread.Sleep(10);
        Assert.True(_sessions[0].PeerClosed);
    }
}
