using GuestIcd.Transport.Native;
using System.Buffers.Binary;
using GuestIcd.Transport;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace GuestIcd.VirtioGpu.Tests;

/// <summary>Guest-memory blob resources (VIRTIO_GPU_F_RESOURCE_BLOB, BLOB_MEM_GUEST), what a kernel with blobs
/// creates for the ICD's ring and heap: a session runs on a blob's scattered pages as on a classic backed
/// resource, and every hostile blob command is refused with its response type while another context goes on.</summary>
public sealed unsafe partial class BlobResourceTests : ContextDeviceTests
{
    private uint Send(byte[] request)
    {
        var (_, resp) = _g.Submit(request, 64);
        Assert.True(_device.Process(VirtioGpuDevice.ControlQueue, _q, out _));
        Assert.Single(_g.TakeUsed());
        return _g.ResponseType(resp);
    }

    /// <summary><see cref="Total"/> bytes of scattered guest pages (a gap after each).</summary>
    private (ulong Addr, uint Len)[] Pages()
    {
        var pages = new (ulong, uint)[Total / 4096];
        for (int i = 0; i < pages.Length; i++)
        {
            pages[i] = (_g.Alloc(4096, pageAligned: true), 4096);
            _g.Alloc(4096, pageAligned: true);
        }
        return pages;
    }

    /// <summary>A context whose ring and heap are a guest-memory blob, INIT done: the guest's transport on the same pages.</summary>
    private (UnixRingTransport Guest, ITransport Host, ContiguousMapping View, int Relay) BlobSession(uint ctx, uint resource)
    {
        Assert.Equal(Gpu.RespOkNodata, Send(Req.CtxCreate(ctx, GuestIcdCapset.Id, $"blob{ctx}")));
        var pages = Pages();
        Assert.Equal(Gpu.RespOkNodata, Send(Req.CreateBlob(resource, Gpu.BlobMemGuest, Gpu.BlobFlagUseMappable, (ulong)Total, pages)));
        Assert.Equal(Gpu.RespOkNodata, Send(Req.With(Gpu.CmdCtxAttachResource, ctx, resource, 0)));
        var view = _g.Memory.MapContiguous(pages.Select(p => (p.Addr, (ulong)p.Len)).ToArray(), out string? error);
        Assert.True(view is not null, error);
        SharedRing.Initialize(view.Pointer + 4096);
        SharedRing.Initialize(view.Pointer + 4096 + SharedRing.RegionSize(Ring));
        int before = _sessions.Count;
        Assert.Equal(Gpu.RespOkNodata, Send(Cmd(ctx, GuestIcdContext.OpInit, resource)));
        Assert.Equal(GuestIcdContext.ControlRunning, *(uint*)view.Pointer);
        Assert.Equal(before + 1, _sessions.Count);
        int* sv = stackalloc int[2];
        Assert.Equal(0, Libc.socketpair(1, 1, 0, sv));
        var guest = new UnixRingTransport(sv[0], view.Pointer + 4096, (nuint)(Total - 4096), Ring, isHost: false, $"guest {ctx}", Heap);
        return (guest, _sessions[^1], view, sv[1]);
    }

    private void RoundTrip(uint ctx, UnixRingTransport guest, ITransport host, string text)
    {
        var bytes = System.Text.Encoding.ASCII.GetBytes(text);
        guest.Write(bytes);
        guest.Flush();
        Assert.Equal(Gpu.RespOkNodata, Send(Cmd(ctx, GuestIcdContext.OpDoorbell)));
        var got = new byte[bytes.Length];
        Assert.True(host.ReadExactly(got, 3000), $"context {ctx}'s session did not read its ring");
        Assert.Equal(bytes, got);
    }

    [Fact]
    public void TheFeatureIsOfferedAndNotServedWhenTurnedOff()
    {
        Assert.NotEqual(0UL, _device.Features & (1UL << Gpu.FeatureResourceBlob));
        using var off = new VirtioGpuDevice(new VirtioGpuOptions { ResourceBlob = false }, NullLogger.Instance, null) { Memory = _g.Memory };
        Assert.Equal(0UL, off.Features & (1UL << Gpu.FeatureResourceBlob));
        var q = _g.NewQueue();
        var (_, resp) = _g.Submit(Req.CreateBlob(7, Gpu.BlobMemGuest, 0, 4096, [(_g.Alloc(4096, pageAligned: true), 4096)]), 64);
        Assert.True(off.Process(VirtioGpuDevice.ControlQueue, q, out _));
        Assert.Equal(Gpu.RespErrUnspec, _g.ResponseType(resp)); // a command of a feature not offered
        Assert.Equal(0, off.ResourceCount);
    }

    [Fact]
    public void ASessionRunsOnABlobsGuestPagesZeroCopyAndEndsWhenTheBlobGoes()
    {
        var (guest, host, view, relay) = BlobSession(1, 10);
        using (guest)
        using (view)
        {
            RoundTrip(1, guest, host, "hello over a blob");
            // The heap is the blob's pages: the host's writes are the guest's.
            ((ISharedHeap)host).HeapBase[9] = 0xA5;
            Assert.Equal(0xA5, guest.HeapBase[9]);
            // A blob's pages were given at creation: ATTACH_BACKING on it is refused.
            Assert.Equal(Gpu.RespErrUnspec, Send(Req.AttachBacking(10, (_g.Alloc(4096, pageAligned: true), 4096))));
            // The guest frees the blob under a live session (RESOURCE_UNREF): the session lets go of the pages and ends.
            Assert.Equal(Gpu.RespOkNodata, Send(Req.With(Gpu.CmdResourceUnref, 0, 10, 0)));
            long deadline = Environment.TickCount64 + 3000;
            while (!host.PeerClosed && Environment.TickCount64 < deadline) Thread.Sleep(10);
            Assert.True(host.PeerClosed);
            Assert.Equal(GuestIcdContext.ControlEnded, *(uint*)view.Pointer);
            view.Pointer[4096 + (int)UnixRingTransport.SharedSize(Ring) + 3] = 0x33;
            Assert.NotEqual(0x33, ((ISharedHeap)host).HeapBase[3]);
            Assert.Equal(0, _device.ResourceCount);
        }
        Libc.close(relay);
    }

    [Fact]
    public void HostileBlobCommandsAreRefusedAndAnotherContextGoesOn()
    {
        var (guest, host, view, relay) = BlobSession(1, 10);
        using (guest)
        using (view)
        {
            Assert.Equal(Gpu.RespOkNodata, Send(Req.CtxCreate(2, GuestIcdCapset.Id, "hostile")));
            ulong page = _g.Alloc(4096, pageAligned: true);
            (ulong, uint)[] one = [(page, 4096)];
            int resources = _device.ResourceCount;

            // Entries outside guest memory: past its end, straddling it, at address 0.
            ulong end = SyntheticGuest.Base + SyntheticGuest.Bytes;
            Assert.Equal(Gpu.RespErrInvalidParameter, Send(Req.CreateBlob(20, Gpu.BlobMemGuest, 0, 4096, [(end, 4096)])));
            Assert.Equal(Gpu.RespErrInvalidParameter, Send(Req.CreateBlob(20, Gpu.BlobMemGuest, 0, 8192, [(end - 4096, 8192)])));
            Assert.Equal(Gpu.RespErrInvalidParameter, Send(Req.CreateBlob(20, Gpu.BlobMemGuest, 0, 4096, [(0, 4096)])));
            // nr_entries past the command's end, zero entries, and more than the device takes.
            Assert.Equal(Gpu.RespErrInvalidParameter, Send(Req.CreateBlob(20, Gpu.BlobMemGuest, 0, 4096, one, claimedEntries: 2)));
            Assert.Equal(Gpu.RespErrInvalidParameter, Send(Req.CreateBlob(20, Gpu.BlobMemGuest, 0, 4096, one, claimedEntries: 0x1000_0000)));
            Assert.Equal(Gpu.RespErrInvalidParameter, Send(Req.CreateBlob(20, Gpu.BlobMemGuest, 0, 0, [])));
            // A size the entries do not hold, one a page short of them, and zero.
            Assert.Equal(Gpu.RespErrInvalidParameter, Send(Req.CreateBlob(20, Gpu.BlobMemGuest, 0, 8192, one)));
            Assert.Equal(Gpu.RespErrInvalidParameter, Send(Req.CreateBlob(20, Gpu.BlobMemGuest, 0, 4096, [(page, 4096), (page, 4096)])));
            Assert.Equal(Gpu.RespErrInvalidParameter, Send(Req.CreateBlob(20, Gpu.BlobMemGuest, 0, 0, one)));
            // A truncated command: the fixed part alone is 32 bytes.
            Assert.Equal(Gpu.RespErrInvalidParameter, Send(Req.With(Gpu.CmdResourceCreateBlob, 0, 20, Gpu.BlobMemGuest, 0)));
            // Host memory (no host-visible region), an unknown blob_mem, CROSS_DEVICE, and a blob_id on guest memory.
            Assert.Equal(Gpu.RespErrInvalidParameter, Send(Req.CreateBlob(20, Gpu.BlobMemHost3D, Gpu.BlobFlagUseMappable, 4096, [], blobId: 1, ctx: 2)));
            Assert.Equal(Gpu.RespErrInvalidParameter, Send(Req.CreateBlob(20, Gpu.BlobMemHost3DGuest, Gpu.BlobFlagUseMappable, 4096, one, blobId: 1, ctx: 2)));
            Assert.Equal(Gpu.RespErrInvalidParameter, Send(Req.CreateBlob(20, 0, 0, 4096, one)));
            Assert.Equal(Gpu.RespErrInvalidParameter, Send(Req.CreateBlob(20, Gpu.BlobMemGuest, Gpu.BlobFlagUseCrossDevice, 4096, one)));
            Assert.Equal(Gpu.RespErrInvalidParameter, Send(Req.CreateBlob(20, Gpu.BlobMemGuest, 0, 4096, one, blobId: 10)));
            // Another context's resource id (context 1's blob), and the reserved id 0.
            Assert.Equal(Gpu.RespErrInvalidResourceId, Send(Req.CreateBlob(10, Gpu.BlobMemGuest, 0, 4096, one, ctx: 2)));
            Assert.Equal(Gpu.RespErrInvalidResourceId, Send(Req.CreateBlob(0, Gpu.BlobMemGuest, 0, 4096, one)));
            // MAP_BLOB / UNMAP_BLOB: no shared-memory region to map into; an unknown resource is named as such.
            var map = Req.With(Gpu.CmdResourceMapBlob, 2, 10, 0, 0, 0);
            Assert.Equal(Gpu.RespErrInvalidParameter, Send(map));
            Assert.Equal(Gpu.RespErrInvalidParameter, Send(Req.With(Gpu.CmdResourceUnmapBlob, 2, 10, 0)));
            Assert.Equal(Gpu.RespErrInvalidResourceId, Send(Req.With(Gpu.CmdResourceMapBlob, 2, 99, 0, 0, 0)));
            Assert.Equal(resources, _device.ResourceCount);

            // Context 2 names context 1's blob, never attached to it, in INIT: context 2 ends, context 1 does not.
            Assert.Equal(Gpu.RespErrUnspec, Send(Cmd(2, GuestIcdContext.OpInit, 10)));
            Assert.Equal(1, _device.ContextCount);
            Assert.Single(_sessions);

            // A good blob of context 2's own still works after all that; context 1's session is untouched.
            Assert.Equal(Gpu.RespOkNodata, Send(Req.CreateBlob(20, Gpu.BlobMemGuest, Gpu.BlobFlagUseMappable | Gpu.BlobFlagUseShareable, 4000, one)));
            Assert.Equal(GuestIcdContext.ControlRunning, *(uint*)view.Pointer);
            RoundTrip(1, guest, host, "still here");
            Assert.False(host.PeerClosed);
        }
        Libc.close(relay);
    }
}
