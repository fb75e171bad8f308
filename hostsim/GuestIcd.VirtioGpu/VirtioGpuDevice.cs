using System.Buffers.Binary;
using Microsoft.Extensions.Logging;

namespace GuestIcd.VirtioGpu;

/// <summary>Limits on what one guest can make the device hold.</summary>
public sealed record VirtioGpuOptions
{
    /// <summary>Our capset's bytes (<see cref="GuestIcdCapset.Encode"/>).</summary>
    public byte[] Capset { get; init; } = GuestIcdCapset.Encode(1, 1, "guesticd-hostsim");
    public uint DisplayWidth { get; init; } = 1024;
    public uint DisplayHeight { get; init; } = 768;
    public int MaxResources { get; init; } = 16384;
    public int MaxContexts { get; init; } = 256;
    /// <summary>Host memory for 2D resources' pixels (the console's framebuffer lives there).</summary>
    public ulong MaxHostPixelBytes { get; init; } = 256UL << 20;
    public int MaxBackingEntries { get; init; } = 1 << 18;
    public int MaxSubmitBytes { get; init; } = 1 << 20;
    /// <summary>Offer VIRTIO_GPU_F_CONTEXT_INIT (a context names its capset at creation).</summary>
    public bool ContextInit { get; init; } = true;
    /// <summary>Offer VIRTIO_GPU_F_RESOURCE_BLOB (guest-memory blobs only: there is no host-visible region).</summary>
    public bool ResourceBlob { get; init; } = true;
}

/// <summary>
/// The virtio-gpu device model behind the vhost-user socket: resources, contexts, the control and
/// cursor queues. The 2D commands are those a guest console needs (no display is shown: scanout and flush
/// are checked and accepted); the 3D commands are those of a context of our capset. Every request is
/// guest-controlled and checked; a bad one gets an error response (or, when its chain is malformed, is
/// consumed with nothing written) and never affects another context.
/// </summary>
public sealed partial class VirtioGpuDevice : IDisposable
{
    public const int ControlQueue = 0, CursorQueue = 1, QueueCount = 2;

    private sealed class Resource
    {
        public uint Id;
        public bool Is3D;
        public uint Format, Width, Height, Depth, Target, Bind;
        public byte[]? Pixels;          // 2D only: host copy the console transfers into
        public Segment[]? Backing;      // guest pages, checked against guest RAM when attached
        public ulong BackingBytes;
        /// <summary>A blob's VIRTIO_GPU_BLOB_MEM_* (0: a classic resource); its pages are fixed at creation.</summary>
        public uint BlobMem, BlobFlags;
        public readonly HashSet<uint> Contexts = [];
    }

    private sealed class Context
    {
        public uint Id;
        public string Name = "";
        public IGpuContext? Handler;
        public readonly HashSet<uint> Resources = [];
    }

    /// <summary>A SUBMIT_3D whose answer waits for its context (<see cref="SubmitOutcome.Hold"/>).</summary>
    private sealed record Held(SplitVirtqueue Queue, ushort Head, Segment[] Writable, ulong WritableBytes, RequestHeader Header);

    private readonly Dictionary<uint, Held> _held = [];
    private bool _holdCurrent;

    private readonly VirtioGpuOptions _options;
    private readonly ILogger _log;
    private IGpuContextHost? _host;
    private readonly Dictionary<uint, Resource> _resources = [];
    private readonly Dictionary<uint, Context> _contexts = [];
    private readonly byte[] _request;
    private readonly byte[] _response;
    private readonly byte[] _config = new byte[Gpu.ConfigSize];
    private readonly Dictionary<uint, int> _served = [];
    private ulong _pixelBytes;
    private uint _scanoutResource;

    public VirtioGpuDevice(VirtioGpuOptions options, ILogger log, IGpuContextHost? host)
    {
        _options = options;
        _log = log;
        _host = host;
        MaxRequestBytes = Math.Max(Gpu.HeaderSize + 8 + options.MaxSubmitBytes, Gpu.HeaderSize + BlobRequestBytes + 16 * options.MaxBackingEntries);
        _request = new byte[MaxRequestBytes];
        _response = new byte[Math.Max(Gpu.DisplayInfoSize, Gpu.HeaderSize + Math.Max(options.Capset.Length, 8 + 1024))];
        BinaryPrimitives.WriteUInt32LittleEndian(_config.AsSpan(8), 1); // num_scanouts
        BinaryPrimitives.WriteUInt32LittleEndian(_config.AsSpan(12), 1); // num_capsets
    }

    /// <summary>Where contexts of our capset go (set before the guest creates any).</summary>
    public void SetHost(IGpuContextHost host) => _host = host;

    /// <summary>The guest's RAM; replaced when the frontend sends a new memory table.</summary>
    public GuestMemory Memory { get; set; } = GuestMemory.Empty;

    /// <summary>The longest request chain accepted (a queue's readable cap).</summary>
    public int MaxRequestBytes { get; }

    /// <summary>Device feature bits (virtio-gpu's; the transport adds its own).</summary>
    public ulong Features => (1UL << Gpu.FeatureVirgl) | (_options.ContextInit ? 1UL << Gpu.FeatureContextInit : 0)
        | (_options.ResourceBlob ? 1UL << Gpu.FeatureResourceBlob : 0);

    public int ContextCount => _contexts.Count;
    public int ResourceCount => _resources.Count;

    /// <summary>Commands answered with success so far, by name and count (logged when a connection ends).</summary>
    public string ServedSummary => _served.Count == 0 ? "none" :
        string.Join(", ", _served.OrderBy(e => e.Key).Select(e => $"{Gpu.CommandName(e.Key)} {e.Value}"));

    /// <summary>Bad chains and requests refused so far (for tests and logs).</summary>
    public int Refusals { get; private set; }

    public ReadOnlySpan<byte> Config => _config;

    /// <summary>A write to config space: only events_clear is writable.</summary>
    public void WriteConfig(uint offset, ReadOnlySpan<byte> data)
    {
        if (offset <= 4 && offset + data.Length >= 8)
        {
            uint clear = BinaryPrimitives.ReadUInt32LittleEndian(data[(int)(4 - offset)..]);
            uint read = BinaryPrimitives.ReadUInt32LittleEndian(_config);
            BinaryPrimitives.WriteUInt32LittleEndian(_config, read & ~clear);
        }
    }

    /// <summary>Handles everything available on a queue. Returns false when the queue is broken and must
    /// not be used again until the frontend sets it up anew; <paramref name="signal"/> says whether the
    /// driver should be interrupted.</summary>
    public bool Process(int queue, SplitVirtqueue q, out bool signal)
    {
        signal = false;
        while (true)
        {
            PopResult r = q.Pop(out var chain, out string? error);
            switch (r)
            {
                case PopResult.Empty:
                    if (q.PublishAvailEvent())
                        continue;
                    return true;
                case PopResult.Broken:
                    Refusals++;
                    _log.LogError("virtio-gpu: {Queue} queue stopped: {Reason}", QueueName(queue), error);
                    return false;
                case PopResult.BadChain:
                    Refusals++;
                    signal = true;
                    _log.LogWarning("virtio-gpu: {Queue} queue: refused a descriptor chain: {Reason}", QueueName(queue), error);
                    continue;
            }
            uint written;
            try
            {
                _holdCurrent = false;
                written = Handle(queue, q, chain);
                if (_holdCurrent)
                {
                    signal |= HoldCurrent(q, chain);
                    continue;
                }
            }
            catch (Exception e)
            {
                // A device bug must cost this request, not the process that serves every other guest.
                _log.LogError(e, "virtio-gpu: {Queue} queue: request failed inside the device", QueueName(queue));
                written = WriteHeaderOnly(q, chain, Gpu.RespErrUnspec, default);
            }
            q.PushUsed(chain.Head, written);
            signal = true;
        }
    }

    private RequestHeader _lastHeader;

    private bool HoldCurrent(SplitVirtqueue q, DescriptorChain chain)
    {
        var h = _lastHeader;
        bool answered = _held.Remove(h.ContextId, out var old) && Answer(old);
        _held[h.ContextId] = new Held(q, chain.Head, chain.Writable.ToArray(), chain.WritableBytes, h);
        return answered;
    }

    /// <summary>Answers a held submission (success; its fence signals).</summary>
    private bool Answer(Held held)
    {
        Span<byte> r = stackalloc byte[Gpu.HeaderSize];
        r.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(r, Gpu.RespOkNodata);
        var h = held.Header;
        if ((h.Flags & Gpu.FlagFence) != 0)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(r[4..], Gpu.FlagFence | (h.Flags & Gpu.FlagInfoRingIdx));
            BinaryPrimitives.WriteUInt64LittleEndian(r[8..], h.FenceId);
            BinaryPrimitives.WriteUInt32LittleEndian(r[16..], h.ContextId);
            r[20] = (h.Flags & Gpu.FlagInfoRingIdx) != 0 ? h.RingIndex : (byte)0;
        }
        uint written = 0;
        if (held.WritableBytes >= Gpu.HeaderSize)
        {
            ReadOnlySpan<byte> src = r;
            foreach (var s in held.Writable)
            {
                if (src.IsEmpty) break;
                int n = (int)Math.Min(s.Length, (uint)src.Length);
                if (!Memory.Write(s.Gpa, src[..n])) break;
                src = src[n..];
            }
            written = src.IsEmpty ? (uint)Gpu.HeaderSize : 0;
        }
        held.Queue.PushUsed(held.Head, written);
        return true;
    }

    /// <summary>Descriptors to poll for the contexts (their wake-ups), with the context each belongs to.</summary>
    public void CollectWakeFds(List<(int Fd, uint Context)> into)
    {
        into.Clear();
        foreach (var c in _contexts.Values)
            if (c.Handler is { WakeFd: >= 0 } handler)
                into.Add((handler.WakeFd, c.Id));
    }

    /// <summary>A context's wake descriptor fired: answers its held submission when it says so. Returns
    /// true when something was put on the used ring (the driver is to be interrupted).</summary>
    public bool Wake(uint contextId)
    {
        if (!_contexts.TryGetValue(contextId, out var ctx) || ctx.Handler is null)
            return false;
        bool holding = _held.ContainsKey(contextId);
        if (!ctx.Handler.OnWake(holding) || !holding)
            return false;
        _held.Remove(contextId, out var held);
        return Answer(held!);
    }

    /// <summary>Answers every held submission (before the rings change hands or the memory table changes).</summary>
    public bool AnswerAllHeld()
    {
        bool any = false;
        foreach (var held in _held.Values)
            any |= Answer(held);
        _held.Clear();
        return any;
    }

    private static string QueueName(int queue) => queue == ControlQueue ? "control" : "cursor";

    private readonly record struct RequestHeader(uint Type, uint Flags, ulong FenceId, uint ContextId, byte RingIndex);

    private uint Handle(int queue, SplitVirtqueue q, DescriptorChain chain)
    {
        int length = q.GatherReadable(chain, _request);
        ReadOnlySpan<byte> req = _request.AsSpan(0, length);
        if (length < Gpu.HeaderSize)
        {
            Refusals++;
            _log.LogWarning("virtio-gpu: {Queue} queue: a {Length}-byte request is shorter than its header", QueueName(queue), length);
            return WriteHeaderOnly(q, chain, Gpu.RespErrUnspec, default);
        }
        var h = new RequestHeader(BinaryPrimitives.ReadUInt32LittleEndian(req), BinaryPrimitives.ReadUInt32LittleEndian(req[4..]),
            BinaryPrimitives.ReadUInt64LittleEndian(req[8..]), BinaryPrimitives.ReadUInt32LittleEndian(req[16..]), req[20]);
        ReadOnlySpan<byte> body = req[Gpu.HeaderSize..];
        _lastHeader = h;
        bool cursor = queue == CursorQueue;
        if (cursor != (h.Type is Gpu.CmdUpdateCursor or Gpu.CmdMoveCursor))
            return Refuse(q, chain, h, Gpu.RespErrUnspec, $"{Gpu.CommandName(h.Type)} does not belong on the {QueueName(queue)} queue");

        int dataLength = 0;
        uint type;
        string? why = null;
        switch (h.Type)
        {
            case Gpu.CmdGetDisplayInfo:
                type = DisplayInfo(out dataLength);
                break;
            case Gpu.CmdResourceCreate2D:
                type = Need(body, 16, ref why) ? Create2D(body, ref why) : Gpu.RespErrInvalidParameter;
                break;
            case Gpu.CmdResourceUnref:
                type = Need(body, 8, ref why) ? Unref(U32(body, 0), ref why) : Gpu.RespErrInvalidParameter;
                break;
            case Gpu.CmdSetScanout:
                type = Need(body, 24, ref why) ? SetScanout(body, ref why) : Gpu.RespErrInvalidParameter;
                break;
            case Gpu.CmdResourceFlush:
                type = Need(body, 24, ref why) ? Flush(body, ref why) : Gpu.RespErrInvalidParameter;
                break;
            case Gpu.CmdTransferToHost2D:
                type = Need(body, 32, ref why) ? Transfer2D(body, ref why) : Gpu.RespErrInvalidParameter;
                break;
            case Gpu.CmdResourceAttachBacking:
                type = Need(body, 8, ref why) ? AttachBacking(body, ref why) : Gpu.RespErrInvalidParameter;
                break;
            case Gpu.CmdResourceDetachBacking:
                type = Need(body, 8, ref why) ? DetachBacking(U32(body, 0), ref why) : Gpu.RespErrInvalidParameter;
                break;
            case Gpu.CmdGetCapsetInfo:
                type = Need(body, 8, ref why) ? CapsetInfo(U32(body, 0), out dataLength, ref why) : Gpu.RespErrInvalidParameter;
                break;
            case Gpu.CmdGetCapset:
                type = Need(body, 8, ref why) ? GetCapset(U32(body, 0), U32(body, 4), out dataLength, ref why) : Gpu.RespErrInvalidParameter;
                break;
            case Gpu.CmdCtxCreate:
                type = Need(body, 72, ref why) ? CreateContext(h, body, ref why) : Gpu.RespErrInvalidParameter;
                break;
            case Gpu.CmdCtxDestroy:
                type = DestroyContext(h.ContextId, "the guest destroyed it", ref why);
                break;
            case Gpu.CmdCtxAttachResource:
                type = Need(body, 8, ref why) ? Attach(h.ContextId, U32(body, 0), ref why) : Gpu.RespErrInvalidParameter;
                break;
            case Gpu.CmdCtxDetachResource:
                type = Need(body, 8, ref why) ? Detach(h.ContextId, U32(body, 0), ref why) : Gpu.RespErrInvalidParameter;
                break;
            case Gpu.CmdResourceCreate3D:
                type = Need(body, 48, ref why) ? Create3D(body, ref why) : Gpu.RespErrInvalidParameter;
                break;
            case Gpu.CmdTransferToHost3D:
            case Gpu.CmdTransferFromHost3D:
                type = Need(body, 48, ref why) ? Transfer3D(h.ContextId, body, ref why) : Gpu.RespErrInvalidParameter;
                break;
            case Gpu.CmdSubmit3D:
                type = Need(body, 8, ref why) ? Submit(h.ContextId, body, ref why) : Gpu.RespErrInvalidParameter;
                break;
            case Gpu.CmdResourceCreateBlob when _options.ResourceBlob:
                type = Need(body, BlobRequestBytes, ref why) ? CreateBlob(body, ref why) : Gpu.RespErrInvalidParameter;
                break;
            case Gpu.CmdResourceMapBlob when _options.ResourceBlob:
            case Gpu.CmdResourceUnmapBlob when _options.ResourceBlob:
                type = Need(body, 8, ref why) ? MapBlob(h.Type, U32(body, 0), ref why) : Gpu.RespErrInvalidParameter;
                break;
            case Gpu.CmdUpdateCursor:
                type = Need(body, 32, ref why) ? UpdateCursor(body, ref why) : Gpu.RespErrInvalidParameter;
                break;
            case Gpu.CmdMoveCursor:
                type = Need(body, 16, ref why) ? Gpu.RespOkNodata : Gpu.RespErrInvalidParameter;
                break;
            default:
                type = Gpu.RespErrUnspec;
                why = "unknown or unoffered command";
                break;
        }
        if (why is not null)
            return Refuse(q, chain, h, type == Gpu.RespOkNodata ? Gpu.RespErrUnspec : type, why);
        _served[h.Type] = _served.GetValueOrDefault(h.Type) + 1;
        return Respond(q, chain, h, type, dataLength);
    }

    private static bool Need(ReadOnlySpan<byte> body, int bytes, ref string? why)
    {
        if (body.Length >= bytes)
            return true;
        why = $"the request body has {body.Length} bytes, {bytes} needed";
        return false;
    }

    private static uint U32(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt32LittleEndian(b[at..]);

    private uint Refuse(SplitVirtqueue q, DescriptorChain chain, RequestHeader h, uint type, string why)
    {
        Refusals++;
        _log.LogWarning("virtio-gpu: refused {Command} (context {Context}): {Reason}", Gpu.CommandName(h.Type), h.ContextId, why);
        return Respond(q, chain, h, type, 0);
    }

    private uint Respond(SplitVirtqueue q, DescriptorChain chain, RequestHeader h, uint type, int dataLength)
    {
        if (chain.WritableBytes < Gpu.HeaderSize)
            return 0; // cursor commands and fire-and-forget requests have no room for an answer
        Span<byte> r = _response;
        r[..Gpu.HeaderSize].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(r, type);
        if ((h.Flags & Gpu.FlagFence) != 0)
        {
            // The fence completes with this response: every command is finished when it is answered.
            BinaryPrimitives.WriteUInt32LittleEndian(r[4..], Gpu.FlagFence | (h.Flags & Gpu.FlagInfoRingIdx));
            BinaryPrimitives.WriteUInt64LittleEndian(r[8..], h.FenceId);
            BinaryPrimitives.WriteUInt32LittleEndian(r[16..], h.ContextId);
            r[20] = (h.Flags & Gpu.FlagInfoRingIdx) != 0 ? h.RingIndex : (byte)0;
        }
        int total = Gpu.HeaderSize + dataLength;
        if ((ulong)total > chain.WritableBytes)
        {
            // Too small for the data: say so in the header alone rather than write past what was offered.
            BinaryPrimitives.WriteUInt32LittleEndian(r, Gpu.RespErrUnspec);
            total = Gpu.HeaderSize;
            Refusals++;
        }
        return q.ScatterWritable(chain, r[..total]) ? (uint)total : 0;
    }

    private uint WriteHeaderOnly(SplitVirtqueue q, DescriptorChain chain, uint type, RequestHeader h) => Respond(q, chain, h, type, 0);

    private Span<byte> Data => _response.AsSpan(Gpu.HeaderSize);

    // ---- 2D ----------------------------------------------------------------------------------------

    private uint DisplayInfo(out int dataLength)
    {
        Span<byte> d = Data[..(Gpu.MaxScanouts * 24)];
        d.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(d[8..], _options.DisplayWidth);
        BinaryPrimitives.WriteUInt32LittleEndian(d[12..], _options.DisplayHeight);
        BinaryPrimitives.WriteUInt32LittleEndian(d[16..], 1); // enabled
        dataLength = d.Length;
        return Gpu.RespOkDisplayInfo;
    }

    private bool NewResourceId(uint id, ref string? why)
    {
        if (id == 0)
            why = "resource id 0 is reserved";
        else if (_resources.ContainsKey(id))
            why = $"resource {id} already exists";
        else if (_resources.Count >= _options.MaxResources)
            why = $"the device holds {_options.MaxResources} resources already";
        return why is null;
    }

    private uint Create2D(ReadOnlySpan<byte> b, ref string? why)
    {
        uint id = U32(b, 0), format = U32(b, 4), width = U32(b, 8), height = U32(b, 12);
        if (!NewResourceId(id, ref why))
            return _resources.Count >= _options.MaxResources ? Gpu.RespErrOutOfMemory : Gpu.RespErrInvalidResourceId;
        if (width == 0 || height == 0 || width > 16384 || height > 16384)
        {
            why = $"a {width}x{height} 2D resource";
            return Gpu.RespErrInvalidParameter;
        }
        if (format is not (1 or 2 or 3 or 4 or 67 or 68 or 121 or 134))
        {
            why = $"unknown 2D format {format}";
            return Gpu.RespErrInvalidParameter;
        }
        ulong bytes = (ulong)width * height * 4;
        if (_pixelBytes + bytes > _options.MaxHostPixelBytes)
        {
            why = $"2D resources would hold more than {_options.MaxHostPixelBytes >> 20} MiB";
            return Gpu.RespErrOutOfMemory;
        }
        _pixelBytes += bytes;
        _resources[id] = new Resource { Id = id, Format = format, Width = width, Height = height, Depth = 1, Pixels = new byte[bytes] };
        return Gpu.RespOkNodata;
    }

    private uint Unref(uint id, ref string? why)
    {
        if (!_resources.Remove(id, out var r))
        {
            why = $"no resource {id}";
            return Gpu.RespErrInvalidResourceId;
        }
        foreach (uint c in r.Contexts)
            if (_contexts.TryGetValue(c, out var ctx))
            {
                ctx.Resources.Remove(id);
                ctx.Handler?.OnResourceReleased(id);
            }
        if (r.Pixels is not null)
            _pixelBytes -= (ulong)r.Pixels.Length;
        if (_scanoutResource == id)
            _scanoutResource = 0;
        return Gpu.RespOkNodata;
    }

    private static bool RectInside(ReadOnlySpan<byte> rect, Resource r)
    {
        ulong x = U32(rect, 0), y = U32(rect, 4), w = U32(rect, 8), h = U32(rect, 12);
        return x + w <= r.Width && y + h <= r.Height;
    }

    private uint SetScanout(ReadOnlySpan<byte> b, ref string? why)
    {
        uint scanout = U32(b, 16), id = U32(b, 20);
        if (scanout != 0)
        {
            why = $"no scanout {scanout}";
            return Gpu.RespErrInvalidScanoutId;
        }
        if (id == 0)
        {
            _scanoutResource = 0;
            return Gpu.RespOkNodata;
        }
        if (!_resources.TryGetValue(id, out var r) || r.Is3D)
        {
            why = $"no 2D resource {id}";
            return Gpu.RespErrInvalidResourceId;
        }
        if (!RectInside(b, r))
        {
            why = $"the scanout rectangle lies outside resource {id}";
            return Gpu.RespErrInvalidParameter;
        }
        _scanoutResource = id;
        return Gpu.RespOkNodata;
    }

    private uint Flush(ReadOnlySpan<byte> b, ref string? why)
    {
        uint id = U32(b, 16);
        if (!_resources.TryGetValue(id, out var r))
        {
            why = $"no resource {id}";
            return Gpu.RespErrInvalidResourceId;
        }
        if (!RectInside(b, r))
        {
            why = $"the flushed rectangle lies outside resource {id}";
            return Gpu.RespErrInvalidParameter;
        }
        return Gpu.RespOkNodata;
    }

    private uint Transfer2D(ReadOnlySpan<byte> b, ref string? why)
    {
        ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(b[16..]);
        uint id = U32(b, 24);
        if (!_resources.TryGetValue(id, out var r) || r.Pixels is null)
        {
            why = $"no 2D resource {id}";
            return Gpu.RespErrInvalidResourceId;
        }
        if (r.Backing is null)
        {
            why = $"resource {id} has no backing";
            return Gpu.RespErrUnspec;
        }
        if (!RectInside(b, r))
        {
            why = $"the transfer rectangle lies outside resource {id}";
            return Gpu.RespErrInvalidParameter;
        }
        uint x = U32(b, 0), y = U32(b, 4), w = U32(b, 8), hgt = U32(b, 12);
        ulong stride = (ulong)r.Width * 4;
        for (uint row = 0; row < hgt; row++)
        {
            ulong src = offset + stride * row;
            int dst = (int)((y + row) * stride + (ulong)x * 4);
            if (!ReadBacking(r, src, r.Pixels.AsSpan(dst, (int)(w * 4))))
            {
                why = $"the transfer reads past resource {id}'s backing";
                return Gpu.RespErrInvalidParameter;
            }
        }
        return Gpu.RespOkNodata;
    }

    private bool ReadBacking(Resource r, ulong offset, Span<byte> destination)
    {
        foreach (var s in r.Backing!)
        {
            if (destination.IsEmpty)
                return true;
            if (offset >= s.Length)
            {
                offset -= s.Length;
                continue;
            }
            int n = (int)Math.Min(s.Length - offset, (ulong)destination.Length);
            if (!Memory.Read(s.Gpa + offset, destination[..n]))
                return false;
            destination = destination[n..];
            offset = 0;
        }
        return destination.IsEmpty;
    }

    private uint AttachBacking(ReadOnlySpan<byte> b, ref string? why)
    {
        uint id = U32(b, 0), count = U32(b, 4);
        if (!_resources.TryGetValue(id, out var r))
        {
            why = $"no resource {id}";
            return Gpu.RespErrInvalidResourceId;
        }
        if (r.BlobMem != 0)
        {
            why = $"resource {id} is a blob: its pages were given at creation";
            return Gpu.RespErrUnspec;
        }
        if (r.Backing is not null)
        {
            why = $"resource {id} has backing already";
            return Gpu.RespErrUnspec;
        }
        var entries = ReadEntries(b[8..], count, out ulong total, ref why);
        if (entries is null)
            return Gpu.RespErrInvalidParameter;
        r.Backing = entries;
        r.BackingBytes = total;
        return Gpu.RespOkNodata;
    }

    /// <summary>The <paramref name="count"/> struct virtio_gpu_mem_entry {u64 addr, u32 length, u32 padding} at
    /// the start of <paramref name="b"/>, each checked to lie in guest RAM; null with the reason otherwise.</summary>
    private Segment[]? ReadEntries(ReadOnlySpan<byte> b, uint count, out ulong total, ref string? why)
    {
        total = 0;
        if (count == 0 || count > _options.MaxBackingEntries || (ulong)b.Length < 16UL * count)
        {
            why = $"{count} backing entries (at most {_options.MaxBackingEntries}, all within the request)";
            return null;
        }
        var entries = new Segment[count];
        for (int i = 0; i < count; i++)
        {
            ulong addr = BinaryPrimitives.ReadUInt64LittleEndian(b[(16 * i)..]);
            uint len = U32(b, 16 * i + 8);
            if (len == 0 || !Memory.Covers(addr, len))
            {
                why = $"backing entry {i} (0x{addr:x}+{len}) is not guest memory";
                return null;
            }
            entries[i] = new Segment(addr, len);
            total += len;
        }
        return entries;
    }

    private uint DetachBacking(uint id, ref string? why)
    {
        if (!_resources.TryGetValue(id, out var r))
        {
            why = $"no resource {id}";
            return Gpu.RespErrInvalidResourceId;
        }
        r.Backing = null;
        r.BackingBytes = 0;
        foreach (uint c in r.Contexts)
            if (_contexts.TryGetValue(c, out var ctx))
                ctx.Handler?.OnResourceReleased(id);
        return Gpu.RespOkNodata;
    }

    private uint CapsetInfo(uint index, out int dataLength, ref string? why)
    {
        dataLength = 0;
        if (index != 0)
        {
            why = $"no capset at index {index}";
            return Gpu.RespErrInvalidParameter;
        }
        Span<byte> d = Data[..16];
        d.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(d, GuestIcdCapset.Id);
        BinaryPrimitives.WriteUInt32LittleEndian(d[4..], GuestIcdCapset.Version);
        BinaryPrimitives.WriteUInt32LittleEndian(d[8..], (uint)_options.Capset.Length);
        dataLength = 16;
        return Gpu.RespOkCapsetInfo;
    }

    private uint GetCapset(uint id, uint version, out int dataLength, ref string? why)
    {
        dataLength = 0;
        if (id != GuestIcdCapset.Id || version == 0 || version > GuestIcdCapset.Version)
        {
            why = $"no capset {id} version {version}";
            return Gpu.RespErrInvalidParameter;
        }
        _options.Capset.CopyTo(Data);
        dataLength = _options.Capset.Length;
        return Gpu.RespOkCapset;
    }

    private uint UpdateCursor(ReadOnlySpan<byte> b, ref string? why)
    {
        uint scanout = U32(b, 0), id = U32(b, 16);
        if (scanout != 0)
        {
            why = $"no scanout {scanout}";
            return Gpu.RespErrInvalidScanoutId;
        }
        if (id != 0 && !_resources.ContainsKey(id))
        {
            why = $"no cursor resource {id}";
            return Gpu.RespErrInvalidResourceId;
        }
        return Gpu.RespOkNodata;
    }

    // ---- 3D ----------------------------------------------------------------------------------------

    private uint CreateContext(RequestHeader h, ReadOnlySpan<byte> b, ref string? why)
    {
        uint nameLength = U32(b, 0), init = U32(b, 4);
        uint capset = init & Gpu.ContextInitCapsetMask;
        if (h.ContextId == 0 || _contexts.ContainsKey(h.ContextId))
        {
            why = h.ContextId == 0 ? "context id 0 is reserved" : $"context {h.ContextId} already exists";
            return Gpu.RespErrInvalidContextId;
        }
        if (nameLength > 64)
        {
            why = $"a {nameLength}-byte debug name (at most 64)";
            return Gpu.RespErrInvalidParameter;
        }
        // Without CONTEXT_INIT the driver names no capset: ours is the only one this device has.
        if (capset != 0 && capset != GuestIcdCapset.Id)
        {
            why = $"capset {capset} is not offered";
            return Gpu.RespErrInvalidParameter;
        }
        if (_contexts.Count >= _options.MaxContexts)
        {
            why = $"the device holds {_options.MaxContexts} contexts already";
            return Gpu.RespErrOutOfMemory;
        }
        string name = System.Text.Encoding.UTF8.GetString(b.Slice(8, (int)nameLength)).TrimEnd('\0');
        var ctx = new Context { Id = h.ContextId, Name = name };
        if (_host is not null)
        {
            ctx.Handler = _host.Open(new GpuContextInfo(h.ContextId, capset == 0 ? GuestIcdCapset.Id : capset, name),
                new GpuContextResources(this, h.ContextId), out string? refusal);
            if (ctx.Handler is null)
            {
                why = refusal ?? "the host refused the context";
                return Gpu.RespErrUnspec;
            }
        }
        _contexts[h.ContextId] = ctx;
        _log.LogInformation("virtio-gpu: context {Context} ({Name}) created", h.ContextId, name);
        return Gpu.RespOkNodata;
    }

    private uint DestroyContext(uint id, string reason, ref string? why)
    {
        if (!_contexts.Remove(id, out var ctx))
        {
            why = $"no context {id}";
            return Gpu.RespErrInvalidContextId;
        }
        if (_held.Remove(id, out var held))
            Answer(held);
        foreach (uint rid in ctx.Resources)
            if (_resources.TryGetValue(rid, out var r))
                r.Contexts.Remove(id);
        ctx.Handler?.Dispose();
        _log.LogInformation("virtio-gpu: context {Context} ({Name}) destroyed: {Reason}", id, ctx.Name, reason);
        return Gpu.RespOkNodata;
    }

    private uint Attach(uint ctxId, uint id, ref string? why)
    {
        if (!_contexts.TryGetValue(ctxId, out var ctx))
        {
            why = $"no context {ctxId}";
            return Gpu.RespErrInvalidContextId;
        }
        if (!_resources.TryGetValue(id, out var r))
        {
            why = $"no resource {id}";
            return Gpu.RespErrInvalidResourceId;
        }
        ctx.Resources.Add(id);
        r.Contexts.Add(ctxId);
        return Gpu.RespOkNodata;
    }

    private uint Detach(uint ctxId, uint id, ref string? why)
    {
        if (!_contexts.TryGetValue(ctxId, out var ctx))
        {
            why = $"no context {ctxId}";
            return Gpu.RespErrInvalidContextId;
        }
        if (!ctx.Resources.Remove(id))
        {
            why = $"resource {id} is not attached to context {ctxId}";
            return Gpu.RespErrInvalidResourceId;
        }
        if (_resources.TryGetValue(id, out var r))
            r.Contexts.Remove(ctxId);
        return Gpu.RespOkNodata;
    }

    private uint Create3D(ReadOnlySpan<byte> b, ref string? why)
    {
        uint id = U32(b, 0), target = U32(b, 4), format = U32(b, 8), bind = U32(b, 12), width = U32(b, 16), height = U32(b, 20), depth = U32(b, 24);
        if (!NewResourceId(id, ref why))
            return _resources.Count >= _options.MaxResources ? Gpu.RespErrOutOfMemory : Gpu.RespErrInvalidResourceId;
        if (width == 0 || height == 0 || depth == 0 || (ulong)width * height * depth > 1UL << 34)
        {
            why = $"a {width}x{height}x{depth} resource";
            return Gpu.RespErrInvalidParameter;
        }
        // No host storage: our contexts use the resource's guest pages directly.
        _resources[id] = new Resource { Id = id, Is3D = true, Target = target, Format = format, Bind = bind, Width = width, Height = height, Depth = depth };
        return Gpu.RespOkNodata;
    }

    private uint Transfer3D(uint ctxId, ReadOnlySpan<byte> b, ref string? why)
    {
        uint id = U32(b, 32);
        if (!_contexts.ContainsKey(ctxId))
        {
            why = $"no context {ctxId}";
            return Gpu.RespErrInvalidContextId;
        }
        if (!IsAttached(ctxId, id))
        {
            why = $"resource {id} is not attached to context {ctxId}";
            return Gpu.RespErrInvalidResourceId;
        }
        // Host and guest share the pages: a transfer has nothing to move.
        return Gpu.RespOkNodata;
    }

    private uint Submit(uint ctxId, ReadOnlySpan<byte> b, ref string? why)
    {
        uint size = U32(b, 0);
        if (!_contexts.TryGetValue(ctxId, out var ctx))
        {
            why = $"no context {ctxId}";
            return Gpu.RespErrInvalidContextId;
        }
        if (size > _options.MaxSubmitBytes || size > (uint)(b.Length - 8))
        {
            why = $"a {size}-byte submission (the request carries {b.Length - 8}, at most {_options.MaxSubmitBytes})";
            return Gpu.RespErrInvalidParameter;
        }
        if (ctx.Handler is null)
            return Gpu.RespOkNodata;
        var outcome = ctx.Handler.Submit(b.Slice(8, (int)size), out string? failure);
        if (outcome == SubmitOutcome.Hold)
            _holdCurrent = true;
        if (outcome != SubmitOutcome.Failed)
            return Gpu.RespOkNodata;
        failure ??= "the context's stream is malformed";
        string? ignored = null;
        DestroyContext(ctxId, failure, ref ignored);
        why = $"context {ctxId} ended: {failure}";
        return Gpu.RespErrUnspec;
    }

    /// <summary>The host's copy of a 2D resource's pixels (what a display would show); null when there is none.</summary>
    public byte[]? PixelsOf(uint resourceId) => _resources.TryGetValue(resourceId, out var r) ? r.Pixels?.ToArray() : null;

    /// <summary>The resource shown on scanout 0 (0: none).</summary>
    public uint ScanoutResource => _scanoutResource;

    internal bool IsAttached(uint ctxId, uint resourceId) =>
        _contexts.TryGetValue(ctxId, out var ctx) && ctx.Resources.Contains(resourceId) && _resources.ContainsKey(resourceId);

    internal ContiguousMapping? MapBacking(uint ctxId, uint resourceId, ulong offset, ulong length, out string? error)
    {
        var runs = BackingRuns(ctxId, resourceId, offset, length, out error);
        return runs is null ? null : Memory.MapContiguous(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(runs), out error);
    }

    internal FileRun[]? BackingFileRuns(uint ctxId, uint resourceId, ulong offset, ulong length, out string? error)
    {
        var runs = BackingRuns(ctxId, resourceId, offset, length, out error);
        return runs is null ? null : Memory.FileRuns(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(runs), out error);
    }

    /// <summary>The guest-physical runs of bytes [offset, +length) of a resource attached to the context.</summary>
    private List<(ulong, ulong)>? BackingRuns(uint ctxId, uint resourceId, ulong offset, ulong length, out string? error)
    {
        error = null;
        if (!IsAttached(ctxId, resourceId))
        {
            error = $"resource {resourceId} is not attached to context {ctxId}";
            return null;
        }
        var r = _resources[resourceId];
        if (r.Backing is null)
        {
            error = $"resource {resourceId} has no backing";
            return null;
        }
        if (length == ulong.MaxValue)
            length = r.BackingBytes - Math.Min(offset, r.BackingBytes);
        if (offset > r.BackingBytes || length > r.BackingBytes - offset)
        {
            error = $"bytes {offset}+{length} lie outside resource {resourceId}'s {r.BackingBytes}-byte backing";
            return null;
        }
        var runs = new List<(ulong, ulong)>();
        foreach (var s in r.Backing)
        {
            if (length == 0) break;
            if (offset >= s.Length) { offset -= s.Length; continue; }
            ulong n = Math.Min(s.Length - offset, length);
            runs.Add((s.Gpa + offset, n));
            length -= n;
            offset = 0;
        }
        return runs;
    }

    /// <summary>Forgets every resource and context (device reset, or the frontend went away).</summary>
    public void Reset(string reason)
    {
        AnswerAllHeld();
        foreach (uint id in _contexts.Keys.ToArray())
        {
            string? ignored = null;
            DestroyContext(id, reason, ref ignored);
        }
        _resources.Clear();
        _pixelBytes = 0;
        _scanoutResource = 0;
    }

    public void Dispose() => Reset("the device closed");
}
