using System.Buffers.Binary;
using GuestIcd.VirtioGpu;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace GuestIcd.VirtioGpu.Tests;

/// <summary>The virtio-gpu device model over a synthetic virtqueue in memory: what a guest console and our
/// guest ICD need, and every way a hostile driver can break a request, none of which reaches past guest
/// memory, spins, or harms another context.</summary>
public sealed unsafe class VirtqueueDeviceTests : IDisposable
{
    private readonly SyntheticGuest _g = new();
    private readonly RecordingHost _host = new();
    private readonly VirtioGpuDevice _device;
    private readonly SplitVirtqueue _q;

    public VirtqueueDeviceTests()
    {
        _device = new VirtioGpuDevice(new VirtioGpuOptions { Capset = GuestIcdCapset.Encode(1, 1, "hostsim on llvmpipe") }, NullLogger.Instance, _host);
        _device.Memory = _g.Memory;
        _q = _g.NewQueue();
    }

    public void Dispose()
    {
        _device.Dispose();
        _g.Dispose();
    }

    /// <summary>Consumer of contexts: records what each receives; a submission starting with 0xFF is one it rejects.</summary>
    private sealed class RecordingHost : IGpuContextHost
    {
        public readonly Dictionary<uint, List<byte[]>> Submits = [];
        public readonly Dictionary<uint, GpuContextResources> Views = [];
        public readonly List<uint> Disposed = [];
        public readonly List<(uint Context, uint Resource)> Released = [];

        public IGpuContext? Open(GpuContextInfo info, GpuContextResources resources, out string? refusal)
        {
            refusal = null;
            Submits[info.ContextId] = [];
            Views[info.ContextId] = resources;
            return new Ctx(this, info.ContextId);
        }

        private sealed class Ctx(RecordingHost h, uint id) : IGpuContext
        {
            public SubmitOutcome Submit(ReadOnlySpan<byte> commands, out string? failure)
            {
                h.Submits[id].Add(commands.ToArray());
                failure = commands.Length > 0 && commands[0] == 0xFF ? "the stream is malformed" : null;
                return failure is null ? SubmitOutcome.Done : SubmitOutcome.Failed;
            }

            public int WakeFd => -1;

            public bool OnWake(bool holding) => false;

            public void OnResourceReleased(uint resourceId) => h.Released.Add((id, resourceId));

            public void Dispose() => h.Disposed.Add(id);
        }
    }

    private uint Run(byte[] request, int responseBytes = 1024)
    {
        var (_, resp) = _g.Submit(request, responseBytes);
        Assert.True(_device.Process(VirtioGpuDevice.ControlQueue, _q, out bool signal));
        Assert.True(signal);
        var used = _g.TakeUsed();
        Assert.Single(used);
        return _g.ResponseType(resp);
    }

    private (uint Type, ulong Response) RunWithResponse(byte[] request, int responseBytes = 1024)
    {
        var (_, resp) = _g.Submit(request, responseBytes);
        Assert.True(_device.Process(VirtioGpuDevice.ControlQueue, _q, out _));
        Assert.Single(_g.TakeUsed());
        return (_g.ResponseType(resp), resp);
    }

    [Fact]
    public void DisplayInfoAndFenceAreAnswered()
    {
        var req = Req.Header(Gpu.CmdGetDisplayInfo, fence: 77);
        var (type, resp) = RunWithResponse(req, Gpu.DisplayInfoSize);
        Assert.Equal(Gpu.RespOkDisplayInfo, type);
        var r = _g.At(resp, Gpu.DisplayInfoSize);
        Assert.Equal(Gpu.FlagFence, BinaryPrimitives.ReadUInt32LittleEndian(r[4..]) & Gpu.FlagFence);
        Assert.Equal(77UL, BinaryPrimitives.ReadUInt64LittleEndian(r[8..]));
        Assert.Equal(1024u, BinaryPrimitives.ReadUInt32LittleEndian(r[(Gpu.HeaderSize + 8)..]));
        Assert.Equal(768u, BinaryPrimitives.ReadUInt32LittleEndian(r[(Gpu.HeaderSize + 12)..]));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(r[(Gpu.HeaderSize + 16)..]));
    }

    [Fact]
    public void OurCapsetCarriesTheProtocolVersionAndIdentity()
    {
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(_device.Config[12..])); // num_capsets
        var (type, resp) = RunWithResponse(Req.With(Gpu.CmdGetCapsetInfo, 0, 0, 0));
        Assert.Equal(Gpu.RespOkCapsetInfo, type);
        var info = _g.At(resp + Gpu.HeaderSize, 12);
        Assert.Equal(GuestIcdCapset.Id, BinaryPrimitives.ReadUInt32LittleEndian(info));
        Assert.Equal(GuestIcdCapset.Version, BinaryPrimitives.ReadUInt32LittleEndian(info[4..]));
        Assert.Equal((uint)GuestIcdCapset.Size, BinaryPrimitives.ReadUInt32LittleEndian(info[8..]));

        (type, resp) = RunWithResponse(Req.With(Gpu.CmdGetCapset, 0, GuestIcdCapset.Id, 1));
        Assert.Equal(Gpu.RespOkCapset, type);
        Assert.True(GuestIcdCapset.TryDecode(_g.At(resp + Gpu.HeaderSize, GuestIcdCapset.Size), out ushort major, out ushort minor, out _, out string identity));
        Assert.Equal((1, 1), (major, minor));
        Assert.Equal("hostsim on llvmpipe", identity);

        Assert.Equal(Gpu.RespErrInvalidParameter, Run(Req.With(Gpu.CmdGetCapsetInfo, 0, 1, 0)));
        Assert.Equal(Gpu.RespErrInvalidParameter, Run(Req.With(Gpu.CmdGetCapset, 0, 4 /* venus */, 1)));
        // A response buffer too small for the capset gets an error header, nothing written past it.
        var (t2, _) = RunWithResponse(Req.With(Gpu.CmdGetCapset, 0, GuestIcdCapset.Id, 1), Gpu.HeaderSize + 8);
        Assert.Equal(Gpu.RespErrUnspec, t2);
    }

    [Fact]
    public void ConsoleFlowCopiesGuestPixels()
    {
        const uint id = 5, w = 64, h = 8;
        Assert.Equal(Gpu.RespOkNodata, Run(Req.With(Gpu.CmdResourceCreate2D, 0, id, 2 /* B8G8R8X8 */, w, h)));
        ulong fb = _g.Alloc((int)(w * h * 4), pageAligned: true);
        var pixels = _g.At(fb, (int)(w * h * 4));
        for (int i = 0; i < pixels.Length; i++) pixels[i] = (byte)(i * 7);
        // Two backing entries: a split framebuffer, as scattered guest pages are.
        Assert.Equal(Gpu.RespOkNodata, Run(Req.AttachBacking(id, (fb, 1024), (fb + 1024, w * h * 4 - 1024))));
        Assert.Equal(Gpu.RespOkNodata, Run(Req.With(Gpu.CmdSetScanout, 0, 0, 0, w, h, 0, id)));
        Assert.Equal(Gpu.RespOkNodata, Run(Req.With(Gpu.CmdTransferToHost2D, 0, 0, 0, w, h, 0, 0, id, 0)));
        Assert.Equal(Gpu.RespOkNodata, Run(Req.With(Gpu.CmdResourceFlush, 0, 0, 0, w, h, id, 0)));
        Assert.Equal(pixels.ToArray(), _device.PixelsOf(id));
        Assert.Equal(id, _device.ScanoutResource);
        // Out of bounds: a rectangle past the resource, a transfer past the backing, a scanout that does not exist.
        Assert.Equal(Gpu.RespErrInvalidParameter, Run(Req.With(Gpu.CmdTransferToHost2D, 0, 0, 0, w + 1, h, 0, 0, id, 0)));
        Assert.Equal(Gpu.RespErrInvalidParameter, Run(Req.With(Gpu.CmdTransferToHost2D, 0, 0, 0, w, h, 4096, 0, id, 0)));
        Assert.Equal(Gpu.RespErrInvalidScanoutId, Run(Req.With(Gpu.CmdSetScanout, 0, 0, 0, w, h, 3, id)));
        Assert.Equal(Gpu.RespOkNodata, Run(Req.With(Gpu.CmdResourceUnref, 0, id, 0)));
        Assert.Equal(0u, _device.ScanoutResource);
        Assert.Equal(Gpu.RespErrInvalidResourceId, Run(Req.With(Gpu.CmdResourceUnref, 0, id, 0)));
        // Cursor commands belong on the cursor queue, and get no answer there.
        Assert.Equal(Gpu.RespErrUnspec, Run(Req.With(Gpu.CmdMoveCursor, 0, 0, 10, 10, 0)));
    }

    [Fact]
    public void BackingOutsideGuestMemoryIsRefused()
    {
        Assert.Equal(Gpu.RespOkNodata, Run(Req.CreateBuffer(9, 4096)));
        Assert.Equal(Gpu.RespErrInvalidParameter, Run(Req.AttachBacking(9, (SyntheticGuest.Base + SyntheticGuest.Bytes - 100, 4096))));
        Assert.Equal(Gpu.RespErrInvalidParameter, Run(Req.AttachBacking(9, (0x10, 4096))));
        Assert.Equal(Gpu.RespErrInvalidParameter, Run(Req.AttachBacking(9, (ulong.MaxValue - 10, 4096))));
        // A count larger than the entries in the request.
        var lying = Req.AttachBacking(9, (SyntheticGuest.Base + 0x100000, 4096));
        BinaryPrimitives.WriteUInt32LittleEndian(lying.AsSpan(Gpu.HeaderSize + 4), 1000);
        Assert.Equal(Gpu.RespErrInvalidParameter, Run(lying));
        Assert.Equal(Gpu.RespErrInvalidResourceId, Run(Req.AttachBacking(10, (SyntheticGuest.Base + 0x100000, 4096))));
    }

    [Fact]
    public void DescriptorOutsideGuestMemoryIsConsumedAndTheQueueGoesOn()
    {
        ushort a = _g.NextDesc(), b = _g.NextDesc();
        ulong req = _g.Put(Req.Header(Gpu.CmdGetDisplayInfo));
        _g.WriteDesc(a, req, Gpu.HeaderSize, SplitVirtqueue.DescFlagNext, b);
        _g.WriteDesc(b, SyntheticGuest.Base + SyntheticGuest.Bytes - 16, 4096, SplitVirtqueue.DescFlagWrite, 0); // runs past RAM
        _g.MakeAvailable(a);
        var (good, resp) = _g.Submit(Req.Header(Gpu.CmdGetDisplayInfo), Gpu.DisplayInfoSize);
        Assert.True(_device.Process(VirtioGpuDevice.ControlQueue, _q, out _));
        var used = _g.TakeUsed();
        Assert.Equal([(a, 0u), (good, (uint)Gpu.DisplayInfoSize)], used);
        Assert.Equal(Gpu.RespOkDisplayInfo, _g.ResponseType(resp));
        Assert.Equal(1, _device.Refusals);
    }

    [Fact]
    public void LoopingChainIsRefusedWithoutSpinning()
    {
        ushort a = _g.NextDesc(), b = _g.NextDesc();
        ulong req = _g.Put(Req.Header(Gpu.CmdGetDisplayInfo));
        _g.WriteDesc(a, req, Gpu.HeaderSize, SplitVirtqueue.DescFlagNext, b);
        _g.WriteDesc(b, req, Gpu.HeaderSize, SplitVirtqueue.DescFlagNext, a);
        _g.MakeAvailable(a);
        // A chain pointing at itself too.
        ushort c = _g.NextDesc();
        _g.WriteDesc(c, req, 8, SplitVirtqueue.DescFlagNext, c);
        _g.MakeAvailable(c);
        var (good, resp) = _g.Submit(Req.Header(Gpu.CmdGetDisplayInfo), Gpu.DisplayInfoSize);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        Assert.True(_device.Process(VirtioGpuDevice.ControlQueue, _q, out _));
        Assert.True(watch.ElapsedMilliseconds < 3000);
        Assert.Equal([(a, 0u), (c, 0u), (good, (uint)Gpu.DisplayInfoSize)], _g.TakeUsed());
        Assert.Equal(Gpu.RespOkDisplayInfo, _g.ResponseType(resp));
    }

    [Fact]
    public void OversizedAndMisorderedChainsAreRefused()
    {
        ulong req = _g.Put(Req.Header(Gpu.CmdGetDisplayInfo));
        // Readable length over the queue's cap (the whole of RAM in one descriptor and more).
        ushort a = _g.NextDesc();
        _g.WriteDesc(a, SyntheticGuest.Base, uint.MaxValue, 0, 0);
        _g.MakeAvailable(a);
        // Writable totals over the cap: 4 × 4 MiB descriptors inside RAM.
        ushort[] w = [_g.NextDesc(), _g.NextDesc(), _g.NextDesc(), _g.NextDesc(), _g.NextDesc()];
        _g.WriteDesc(w[0], req, Gpu.HeaderSize, SplitVirtqueue.DescFlagNext, w[1]);
        for (int i = 1; i < 5; i++)
            _g.WriteDesc(w[i], SyntheticGuest.Base, 1 << 20, (ushort)(SplitVirtqueue.DescFlagWrite | (i < 4 ? SplitVirtqueue.DescFlagNext : 0)), i < 4 ? w[i + 1] : (ushort)0);
        _g.MakeAvailable(w[0]);
        // Readable after writable.
        ushort x = _g.NextDesc(), y = _g.NextDesc();
        _g.WriteDesc(x, _g.Alloc(64), 64, SplitVirtqueue.DescFlagWrite | SplitVirtqueue.DescFlagNext, y);
        _g.WriteDesc(y, req, Gpu.HeaderSize, 0, 0);
        _g.MakeAvailable(x);
        // Indirect (never offered), and a next index outside the table.
        ushort ind = _g.NextDesc(), nx = _g.NextDesc();
        _g.WriteDesc(ind, req, 16, SplitVirtqueue.DescFlagIndirect, 0);
        _g.MakeAvailable(ind);
        _g.WriteDesc(nx, req, Gpu.HeaderSize, SplitVirtqueue.DescFlagNext, 999);
        _g.MakeAvailable(nx);
        // A head outside the table: nothing to mark used.
        _g.MakeAvailable(500);
        var (good, resp) = _g.Submit(Req.Header(Gpu.CmdGetDisplayInfo), Gpu.DisplayInfoSize);
        Assert.True(_device.Process(VirtioGpuDevice.ControlQueue, _q, out _));
        Assert.Equal([(a, 0u), (w[0], 0u), (x, 0u), (ind, 0u), (nx, 0u), (good, (uint)Gpu.DisplayInfoSize)], _g.TakeUsed());
        Assert.Equal(6, _device.Refusals);
        Assert.Equal(Gpu.RespOkDisplayInfo, _g.ResponseType(resp));
    }

    [Fact]
    public void UnknownShortAndMisplacedCommandsGetErrors()
    {
        Assert.Equal(Gpu.RespErrUnspec, Run(Req.Header(0x0999)));
        Assert.Equal(Gpu.RespErrUnspec, Run(Req.Header(Gpu.CmdSetScanoutBlob))); // not served
        Assert.Equal(Gpu.RespErrInvalidParameter, Run(Req.Header(Gpu.CmdResourceCreateBlob))); // offered, but no body
        Assert.Equal(Gpu.RespErrInvalidParameter, Run(Req.Header(Gpu.CmdResourceCreate2D, bodyBytes: 4)));
        // Shorter than a header: the answer says so.
        var (_, resp) = _g.Submit(new byte[10], 64);
        Assert.True(_device.Process(VirtioGpuDevice.ControlQueue, _q, out _));
        Assert.Single(_g.TakeUsed());
        Assert.Equal(Gpu.RespErrUnspec, _g.ResponseType(resp));
    }

    [Fact]
    public void AvailableIndexRunningAheadStopsTheQueue()
    {
        _g.SetAvailIndex(1000);
        Assert.False(_device.Process(VirtioGpuDevice.ControlQueue, _q, out _));
        Assert.Empty(_g.TakeUsed());
    }

    [Fact]
    public void ContextsSeeOnlyTheirOwnResources()
    {
        Assert.Equal(Gpu.RespOkNodata, Run(Req.CtxCreate(1, GuestIcdCapset.Id, "app-one")));
        Assert.Equal(Gpu.RespOkNodata, Run(Req.CtxCreate(2, GuestIcdCapset.Id, "app-two")));
        Assert.Equal(Gpu.RespErrInvalidContextId, Run(Req.CtxCreate(1, GuestIcdCapset.Id, "again")));
        Assert.Equal(Gpu.RespErrInvalidParameter, Run(Req.CtxCreate(3, 4 /* venus */, "venus")));
        Assert.Equal(2, _device.ContextCount);

        // A two-page buffer whose pages are not adjacent in guest memory.
        ulong p0 = _g.Alloc(4096, pageAligned: true), gap = _g.Alloc(4096, pageAligned: true), p1 = _g.Alloc(4096, pageAligned: true);
        Assert.NotEqual(p0 + 4096, p1);
        Assert.Equal(Gpu.RespOkNodata, Run(Req.CreateBuffer(7, 8192)));
        Assert.Equal(Gpu.RespOkNodata, Run(Req.AttachBacking(7, (p0, 4096), (p1, 4096))));
        Assert.Equal(Gpu.RespOkNodata, Run(Req.With(Gpu.CmdCtxAttachResource, 1, 7, 0)));

        Assert.Equal(Gpu.RespOkNodata, Run(Req.Transfer3D(Gpu.CmdTransferToHost3D, 1, 7)));
        Assert.Equal(Gpu.RespErrInvalidResourceId, Run(Req.Transfer3D(Gpu.CmdTransferToHost3D, 2, 7)));
        Assert.Equal(Gpu.RespErrInvalidResourceId, Run(Req.Transfer3D(Gpu.CmdTransferFromHost3D, 2, 7)));
        Assert.Equal(Gpu.RespErrInvalidResourceId, Run(Req.With(Gpu.CmdCtxDetachResource, 2, 7, 0)));
        Assert.Null(_host.Views[2].MapBacking(7, out string? refused));
        Assert.Contains("not attached to context 2", refused);

        // Context 1 maps it: one contiguous view of both pages, shared both ways with guest memory.
        using var m = _host.Views[1].MapBacking(7, out string? error);
        Assert.True(m is not null, error);
        Assert.Equal(8192UL, m.Length);
        _g.At(p1, 4)[0] = 0xAB;
        Assert.Equal(0xAB, m.Pointer[4096]);
        m.Pointer[5] = 0xCD;
        Assert.Equal(0xCD, _g.At(p0, 8)[5]);
        Assert.Equal(0, _g.At(gap, 8)[0]);

        Assert.Equal(Gpu.RespOkNodata, Run(Req.With(Gpu.CmdCtxDestroy, 1)));
        Assert.Contains(1u, _host.Disposed);
        Assert.False(_host.Views[1].IsAttached(7));
        Assert.Equal(Gpu.RespErrInvalidContextId, Run(Req.Transfer3D(Gpu.CmdTransferToHost3D, 1, 7)));
    }

    [Fact]
    public void ABadSubmissionEndsOnlyItsContext()
    {
        Assert.Equal(Gpu.RespOkNodata, Run(Req.CtxCreate(1, GuestIcdCapset.Id, "victim")));
        Assert.Equal(Gpu.RespOkNodata, Run(Req.CtxCreate(2, 0 /* a driver without CONTEXT_INIT */, "hostile")));
        Assert.Equal(Gpu.RespOkNodata, Run(Req.Submit(1, [1, 2, 3])));
        Assert.Equal(Gpu.RespErrUnspec, Run(Req.Submit(2, [0xFF, 0])));
        Assert.Equal([2u], _host.Disposed);
        Assert.Equal(Gpu.RespErrInvalidContextId, Run(Req.Submit(2, [1])));
        // A size larger than what the request carries, and a submission to no context.
        Assert.Equal(Gpu.RespErrInvalidParameter, Run(Req.Submit(1, [1, 2], claimedSize: 4096)));
        Assert.Equal(Gpu.RespErrInvalidContextId, Run(Req.Submit(9, [1])));
        Assert.Equal(Gpu.RespOkNodata, Run(Req.Submit(1, [4, 5])));
        Assert.Equal([new byte[] { 1, 2, 3 }, new byte[] { 4, 5 }], _host.Submits[1]);
        Assert.Equal(1, _device.ContextCount);
    }

    [Fact]
    public void SubmissionSpreadOverDescriptorsArrivesWhole()
    {
        Assert.Equal(Gpu.RespOkNodata, Run(Req.CtxCreate(4, GuestIcdCapset.Id, "split")));
        var payload = new byte[10000];
        new Random(3).NextBytes(payload);
        payload[0] = 1;
        var req = Req.Submit(4, payload);
        // Header and body in separate descriptors, as the kernel sends them; the body split once more.
        ushort a = _g.NextDesc(), b = _g.NextDesc(), c = _g.NextDesc(), d = _g.NextDesc();
        ulong hdr = _g.Put(req.AsSpan(0, Gpu.HeaderSize + 8)), body1 = _g.Put(req.AsSpan(Gpu.HeaderSize + 8, 3000)), body2 = _g.Put(req.AsSpan(Gpu.HeaderSize + 8 + 3000));
        ulong resp = _g.Alloc(Gpu.HeaderSize);
        _g.WriteDesc(a, hdr, (uint)(Gpu.HeaderSize + 8), SplitVirtqueue.DescFlagNext, b);
        _g.WriteDesc(b, body1, 3000, SplitVirtqueue.DescFlagNext, c);
        _g.WriteDesc(c, body2, 7000, SplitVirtqueue.DescFlagNext, d);
        _g.WriteDesc(d, resp, Gpu.HeaderSize, SplitVirtqueue.DescFlagWrite, 0);
        _g.MakeAvailable(a);
        Assert.True(_device.Process(VirtioGpuDevice.ControlQueue, _q, out _));
        Assert.Equal([(a, (uint)Gpu.HeaderSize)], _g.TakeUsed());
        Assert.Equal(Gpu.RespOkNodata, _g.ResponseType(resp));
        Assert.Equal(payload, _host.Submits[4][0]);
    }

    [Fact]
    public void IndirectTablesAreWalkedWithinBounds()
    {
        var q = _g.NewQueue(indirect: true, eventIndex: true);
        ulong req = _g.Put(Req.Header(Gpu.CmdGetDisplayInfo)), resp = _g.Alloc(Gpu.DisplayInfoSize);
        // Good: header and response through an indirect table, as Linux sends them with INDIRECT_DESC.
        ulong good = _g.IndirectTable((req, Gpu.HeaderSize, SplitVirtqueue.DescFlagNext, 1), (resp, Gpu.DisplayInfoSize, SplitVirtqueue.DescFlagWrite, 0));
        ushort a = _g.NextDesc();
        _g.WriteDesc(a, good, 32, SplitVirtqueue.DescFlagIndirect, 0);
        _g.MakeAvailable(a);
        // Bad: an indirect table that loops, one nested in another, one outside memory, one of a ragged size.
        ulong loop = _g.IndirectTable((req, Gpu.HeaderSize, SplitVirtqueue.DescFlagNext, 1), (req, 8, SplitVirtqueue.DescFlagNext, 0));
        ulong nested = _g.IndirectTable((loop, 32, SplitVirtqueue.DescFlagIndirect, 0));
        ushort[] bad = [_g.NextDesc(), _g.NextDesc(), _g.NextDesc(), _g.NextDesc(), _g.NextDesc()];
        _g.WriteDesc(bad[0], loop, 32, SplitVirtqueue.DescFlagIndirect, 0);
        _g.WriteDesc(bad[1], nested, 16, SplitVirtqueue.DescFlagIndirect, 0);
        _g.WriteDesc(bad[2], SyntheticGuest.Base + SyntheticGuest.Bytes - 16, 64, SplitVirtqueue.DescFlagIndirect, 0);
        _g.WriteDesc(bad[3], good, 24, SplitVirtqueue.DescFlagIndirect, 0);
        _g.WriteDesc(bad[4], good, 32, SplitVirtqueue.DescFlagIndirect | SplitVirtqueue.DescFlagNext, 0);
        foreach (ushort b in bad) _g.MakeAvailable(b);
        Assert.True(_device.Process(VirtioGpuDevice.ControlQueue, q, out _));
        var used = _g.TakeUsed();
        Assert.Equal((a, (uint)Gpu.DisplayInfoSize), used[0]);
        Assert.Equal(bad.Select(b => ((uint)b, 0u)), used.Skip(1));
        Assert.Equal(Gpu.RespOkDisplayInfo, _g.ResponseType(resp));
        Assert.Equal(5, _device.Refusals);
        // EVENT_IDX: the device says it has read all six, so the driver's next addition kicks.
        Assert.Equal(6, _g.AvailEvent);
    }
}
