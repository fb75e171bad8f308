using GuestIcd.Protocol;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkPipelineBindPoint;

namespace GuestIcd.HostSim.Gate;

internal enum RecordState : byte { Initial, Recording, Executable, Invalid }

internal sealed class CommandBufferState(ulong device, ulong pool, bool secondary, int maxSets)
{
    public readonly ulong Device = device, Pool = pool;
    public readonly bool Secondary = secondary;
    public RecordState State;
    public bool OneTime;
    public bool InRenderPass, InRendering;
    public RenderPassState? RenderPass;
    public uint Subpass, Colors;
    public VkRect2D Area;
    public PipelineState? Compute, Graphics;
    readonly ulong[] _computeSets = new ulong[maxSets], _graphicsSets = new ulong[maxSets];
    public bool IndexBound;
    public ulong IndexBytes, IndexSize;
    public ulong VertexBound;
    /// <summary>vkCmdSetVertexInputEXT: whether it was called, and the bindings it described (bit n: binding n).</summary>
    public bool VertexInputSet;
    public ulong DynamicVertexBindings;
    public bool XfbActive;
    /// <summary>Every object a recorded command names: destroying one of them invalidates this buffer.</summary>
    public readonly HashSet<(int, ulong)> Refs = new();

    // Set by the checks of a begin, applied when the driver has recorded it.
    public RenderPassState? PendingRenderPass;
    public VkRect2D PendingArea;
    public uint PendingColors;

    public ulong[] Sets(VkPipelineBindPoint bp) => bp == VK_PIPELINE_BIND_POINT_COMPUTE ? _computeSets : _graphicsSets;

    public void Reset(RecordState state)
    {
        State = state;
        OneTime = InRenderPass = InRendering = IndexBound = false;
        RenderPass = null;
        Subpass = Colors = 0;
        Compute = Graphics = null;
        Array.Clear(_computeSets);
        Array.Clear(_graphicsSets);
        VertexBound = DynamicVertexBindings = 0;
        VertexInputSet = XfbActive = false;
        Refs.Clear();
    }
}

internal sealed class QueryPoolState(ulong device, uint count, VkQueryType type, int statistics)
{
    public readonly ulong Device = device;
    public readonly uint Count = count;
    public readonly VkQueryType Type = type;
    public readonly int Statistics = statistics;
}

/// <summary>Command buffers: commands only while recording, render-pass-only commands inside one and the
/// others outside, draws and dispatches only with a pipeline, its descriptor sets, vertex and index
/// buffers bound, indirect and index ranges inside their buffers, counts within the device's limits,
/// and only executable buffers submitted. Each buffer remembers what it names, so that destroying any of
/// it makes the buffer unsubmittable instead of a use-after-free in the driver's queue.</summary>
internal sealed unsafe partial class ValidUsageGate
{
    readonly Dictionary<ulong, CommandBufferState> _commandBuffers = new();
    readonly Dictionary<ulong, QueryPoolState> _queryPools = new();

    /// <summary>The command buffer the current vkCmd* records into: the ownership walk adds to its references.</summary>
    CommandBufferState? _recording;

    static readonly bool[] s_insideOnly = Tables.Commands.Select(c => c.Name.StartsWith("vkCmdDraw", StringComparison.Ordinal)
        || c.Name is "vkCmdClearAttachments" or "vkCmdNextSubpass" or "vkCmdNextSubpass2" or "vkCmdEndRenderPass" or "vkCmdEndRenderPass2" or "vkCmdEndRendering").ToArray();

    static readonly bool[] s_outsideOnly = Tables.Commands.Select(c => c.Name.StartsWith("vkCmdDispatch", StringComparison.Ordinal)
        || c.Name.StartsWith("vkCmdCopy", StringComparison.Ordinal) || c.Name.StartsWith("vkCmdBlitImage", StringComparison.Ordinal)
        || c.Name.StartsWith("vkCmdResolveImage", StringComparison.Ordinal) || c.Name.StartsWith("vkCmdBeginRenderPass", StringComparison.Ordinal)
        || c.Name is "vkCmdFillBuffer" or "vkCmdUpdateBuffer" or "vkCmdClearColorImage" or "vkCmdClearDepthStencilImage" or "vkCmdBeginRendering"
            or "vkCmdResetQueryPool" or "vkCmdSetEvent" or "vkCmdResetEvent" or "vkCmdSetEvent2" or "vkCmdResetEvent2").ToArray();

    /// <summary>Commands after which the host waits for the device before the driver frees what its queue may read.</summary>
    static readonly bool[] s_drains = Tables.Commands.Select(c => c.Name.StartsWith("vkDestroy", StringComparison.Ordinal) && c.Name != "vkDestroyDevice"
        || c.Name.StartsWith("vkFree", StringComparison.Ordinal) || c.Name is "vkResetCommandPool" or "vkResetDescriptorPool" or "vkResetCommandBuffer"
            or "vkBeginCommandBuffer" or "vkResetQueryPool").ToArray();

    void Invalidate(int type, ulong handle, ulong device)
    {
        foreach (var cb in _commandBuffers.Values)
            if (cb.Device == device && cb.State is RecordState.Recording or RecordState.Executable && cb.Refs.Contains((type, handle)))
                cb.State = RecordState.Invalid;
    }

    /// <summary>A deferred recording went wrong on the host (its begin or end failed, or it named an object
    /// destroyed since it was recorded): the command buffer is invalid until it is begun or reset again.</summary>
    public void InvalidateRecording(ulong commandBuffer)
    {
        if (_commandBuffers.TryGetValue(commandBuffer, out var cb)) cb.State = RecordState.Invalid;
    }

    bool CheckRecording(int cmd, ulong* a, DeviceState dev)
    {
        var cb = _recording!;
        if (s_insideOnly[cmd] && !cb.InRenderPass && !cb.InRendering) Fail(cmd, $"VUID-{N(cmd)}-renderpass", "outside a render pass");
        if (s_outsideOnly[cmd] && (cb.InRenderPass || cb.InRendering)) Fail(cmd, $"VUID-{N(cmd)}-renderpass", "inside a render pass");
        ref readonly var l = ref dev.Limits;
        switch (cmd)
        {
            case Tables.vkCmdBindPipeline:
            {
                var p = Lookup(_pipelines, cmd, a[2], "pipeline");
                if (p.BindPoint != (VkPipelineBindPoint)(int)a[1])
                    Fail(cmd, p.BindPoint == VK_PIPELINE_BIND_POINT_COMPUTE ? "VUID-vkCmdBindPipeline-pipelineBindPoint-00777" : "VUID-vkCmdBindPipeline-pipelineBindPoint-00778",
                        $"a {p.BindPoint} pipeline bound at {(VkPipelineBindPoint)(int)a[1]}");
                break;
            }
            case Tables.vkCmdBindDescriptorSets: CheckBindSets(cmd, a, cb, dev); break;
            case Tables.vkCmdPushConstants: CheckPushConstants(cmd, a, dev); break;
            case Tables.vkCmdBindIndexBuffer:
            {
                var b = UsedBuffer(cmd, a[1], "buffer");
                ulong size = (VkIndexType)(int)a[3] switch
                {
                    VkIndexType.VK_INDEX_TYPE_UINT16 => 2, VkIndexType.VK_INDEX_TYPE_UINT32 => 4, VkIndexType.VK_INDEX_TYPE_UINT8_EXT => 1,
                    _ => 0,
                };
                if (size == 0) Fail(cmd, "VUID-vkCmdBindIndexBuffer-indexType-02507", $"index type {(VkIndexType)(int)a[3]}");
                if (a[2] >= b.Size) Fail(cmd, "VUID-vkCmdBindIndexBuffer-offset-00431", $"offset {a[2]} is outside the {b.Size}-byte buffer");
                if (a[2] % size != 0) Fail(cmd, "VUID-vkCmdBindIndexBuffer-offset-00432", $"offset {a[2]} is not aligned to the {size}-byte index");
                if ((b.Usage & VkBufferUsageFlags.VK_BUFFER_USAGE_INDEX_BUFFER_BIT) == 0) Fail(cmd, "VUID-vkCmdBindIndexBuffer-buffer-00433", "the buffer lacks VK_BUFFER_USAGE_INDEX_BUFFER_BIT");
                cb.IndexBound = true;
                cb.IndexBytes = b.Size - a[2];
                cb.IndexSize = size;
                break;
            }
            case Tables.vkCmdBindVertexBuffers or Tables.vkCmdBindVertexBuffers2:
            {
                uint first = (uint)a[1], count = (uint)a[2];
                var buffers = (ulong*)a[3];
                var offsets = (ulong*)a[4];
                ulong* sizes = cmd == Tables.vkCmdBindVertexBuffers2 ? (ulong*)a[5] : null;
                ulong* strides = cmd == Tables.vkCmdBindVertexBuffers2 ? (ulong*)a[6] : null;
                if (first >= l.maxVertexInputBindings) Fail(cmd, $"VUID-{N(cmd)}-firstBinding-00624", $"firstBinding {first} of {l.maxVertexInputBindings}");
                if ((ulong)first + count > l.maxVertexInputBindings) Fail(cmd, $"VUID-{N(cmd)}-firstBinding-00625", $"bindings [{first}, +{count}) of {l.maxVertexInputBindings}");
                for (uint i = 0; i < count; i++)
                {
                    if (buffers[i] == 0)
                    {
                        if (!dev.NullDescriptor) Fail(cmd, $"VUID-{N(cmd)}-pBuffers-04001", "a VK_NULL_HANDLE vertex buffer without nullDescriptor");
                    }
                    else
                    {
                        var b = UsedBuffer(cmd, buffers[i], "pBuffers");
                        if (offsets[i] >= b.Size) Fail(cmd, $"VUID-{N(cmd)}-pOffsets-00626", $"offset {offsets[i]} is outside the {b.Size}-byte buffer");
                        if ((b.Usage & VkBufferUsageFlags.VK_BUFFER_USAGE_VERTEX_BUFFER_BIT) == 0) Fail(cmd, $"VUID-{N(cmd)}-pBuffers-00627", "the buffer lacks VK_BUFFER_USAGE_VERTEX_BUFFER_BIT");
                        if (sizes != null && sizes[i] != VkConstants.VK_WHOLE_SIZE && sizes[i] > b.Size - offsets[i])
                            Fail(cmd, "VUID-vkCmdBindVertexBuffers2-pSizes-03358", $"[{offsets[i]}, +{sizes[i]}) runs past the {b.Size}-byte buffer");
                    }
                    if (strides != null && strides[i] > l.maxVertexInputBindingStride) Fail(cmd, "VUID-vkCmdBindVertexBuffers2-pStrides-03362", $"stride {strides[i]} exceeds {l.maxVertexInputBindingStride}");
                    if (first + i < 64) cb.VertexBound |= 1UL << (int)(first + i);
                }
                break;
            }
            case Tables.vkCmdDraw: CheckDraw(cmd, cb, false); break;
            case Tables.vkCmdDrawIndexed:
                CheckDraw(cmd, cb, true);
                if (((ulong)(uint)a[3] + (uint)a[1]) * cb.IndexSize > cb.IndexBytes)
                    Fail(cmd, "VUID-vkCmdDrawIndexed-firstIndex-04932", $"indices [{(uint)a[3]}, +{(uint)a[1]}) run past the {cb.IndexBytes} bytes of the bound index buffer");
                break;
            case Tables.vkCmdDrawIndirect: CheckDraw(cmd, cb, false); CheckIndirect(cmd, a[1], a[2], (uint)a[3], (uint)a[4], 16, dev, false); break;
            case Tables.vkCmdDrawIndexedIndirect: CheckDraw(cmd, cb, true); CheckIndirect(cmd, a[1], a[2], (uint)a[3], (uint)a[4], 20, dev, false); break;
            case Tables.vkCmdDrawIndirectCount or Tables.vkCmdDrawIndexedIndirectCount:
            {
                bool indexed = cmd == Tables.vkCmdDrawIndexedIndirectCount;
                CheckDraw(cmd, cb, indexed);
                CheckIndirect(cmd, a[1], a[2], (uint)a[5], (uint)a[6], indexed ? 20u : 16u, dev, true);
                var c = UsedBuffer(cmd, a[3], "countBuffer");
                if (a[4] % 4 != 0) Fail(cmd, $"VUID-{N(cmd)}-countBufferOffset-02716", $"countBufferOffset {a[4]} is not a multiple of 4");
                if (a[4] >= c.Size || 4 > c.Size - a[4]) Fail(cmd, $"VUID-{N(cmd)}-countBufferOffset-04129", $"the count at {a[4]} is outside the {c.Size}-byte buffer");
                break;
            }
            case Tables.vkCmdDispatch:
                CheckDispatch(cmd, cb);
                for (int i = 0; i < 3; i++)
                    if ((uint)a[1 + i] > l.maxComputeWorkGroupCount[i])
                        Fail(cmd, "VUID-vkCmdDispatch-groupCount" + "XYZ"[i] + "-0038" + (6 + i), $"{(uint)a[1 + i]} groups exceed maxComputeWorkGroupCount[{i}] {l.maxComputeWorkGroupCount[i]}");
                break;
            case Tables.vkCmdDispatchBase:
                CheckDispatch(cmd, cb);
                for (int i = 0; i < 3; i++)
                    if ((uint)a[1 + i] >= l.maxComputeWorkGroupCount[i] || (uint)a[4 + i] > l.maxComputeWorkGroupCount[i] - (uint)a[1 + i])
                        Fail(cmd, "VUID-vkCmdDispatchBase-groupCount" + "XYZ"[i] + "-0042" + (4 + i), $"groups [{(uint)a[1 + i]}, +{(uint)a[4 + i]}) exceed maxComputeWorkGroupCount[{i}] {l.maxComputeWorkGroupCount[i]}");
                break;
            case Tables.vkCmdDispatchIndirect:
            {
                CheckDispatch(cmd, cb);
                var b = UsedBuffer(cmd, a[1], "buffer");
                if ((b.Usage & VkBufferUsageFlags.VK_BUFFER_USAGE_INDIRECT_BUFFER_BIT) == 0) Fail(cmd, "VUID-vkCmdDispatchIndirect-buffer-02709", "the buffer lacks VK_BUFFER_USAGE_INDIRECT_BUFFER_BIT");
                if (a[2] % 4 != 0) Fail(cmd, "VUID-vkCmdDispatchIndirect-offset-02710", $"offset {a[2]} is not a multiple of 4");
                if (a[2] >= b.Size || 12 > b.Size - a[2]) Fail(cmd, "VUID-vkCmdDispatchIndirect-offset-00407", $"the 12-byte command at {a[2]} is outside the {b.Size}-byte buffer");
                break;
            }
            case Tables.vkCmdCopyBuffer: CheckCopyBuffer(cmd, a[1], a[2], (uint)a[3], (VkBufferCopy*)a[4]); break;
            case Tables.vkCmdCopyBuffer2: CheckCopyBuffer2(cmd, (VkCopyBufferInfo2*)a[1]); break;
            case Tables.vkCmdFillBuffer: CheckFillBuffer(cmd, a); break;
            case Tables.vkCmdUpdateBuffer: CheckUpdateBuffer(cmd, a); break;
            case Tables.vkCmdCopyBufferToImage: CheckBufferImageCopies(cmd, a[1], a[2], (uint)a[4], (VkBufferImageCopy*)a[5], true); break;
            case Tables.vkCmdCopyImageToBuffer: CheckBufferImageCopies(cmd, a[3], a[1], (uint)a[4], (VkBufferImageCopy*)a[5], false); break;
            case Tables.vkCmdCopyBufferToImage2:
            {
                var i = (VkCopyBufferToImageInfo2*)a[1];
                CheckBufferImageCopies2(cmd, i->srcBuffer.Handle, i->dstImage.Handle, i->regionCount, i->pRegions, true);
                break;
            }
            case Tables.vkCmdCopyImageToBuffer2:
            {
                var i = (VkCopyImageToBufferInfo2*)a[1];
                CheckBufferImageCopies2(cmd, i->dstBuffer.Handle, i->srcImage.Handle, i->regionCount, i->pRegions, false);
                break;
            }
            case Tables.vkCmdCopyImage: CheckCopyImage(cmd, a[1], a[3], (uint)a[5], (VkImageCopy*)a[6]); break;
            case Tables.vkCmdCopyImage2: CheckCopyImage2(cmd, (VkCopyImageInfo2*)a[1]); break;
            case Tables.vkCmdBlitImage: CheckBlitImage(cmd, a); break;
            case Tables.vkCmdBlitImage2: CheckBlitImage2(cmd, (VkBlitImageInfo2*)a[1]); break;
            case Tables.vkCmdResolveImage: CheckResolve(cmd, a[1], a[3], (uint)a[5], (VkImageResolve*)a[6]); break;
            case Tables.vkCmdResolveImage2: CheckResolve2(cmd, (VkResolveImageInfo2*)a[1]); break;
            case Tables.vkCmdClearColorImage: CheckClearImage(cmd, a, false); break;
            case Tables.vkCmdClearDepthStencilImage: CheckClearImage(cmd, a, true); break;
            case Tables.vkCmdClearAttachments:
            {
                uint colors = cb.InRenderPass && cb.RenderPass != null ? cb.RenderPass.ColorCounts[cb.Subpass] : cb.Colors;
                var atts = (VkClearAttachment*)a[2];
                for (uint i = 0; i < (uint)a[1]; i++)
                    if ((atts[i].aspectMask & VkImageAspectFlags.VK_IMAGE_ASPECT_COLOR_BIT) != 0 && atts[i].colorAttachment >= colors)
                        Fail(cmd, "VUID-vkCmdClearAttachments-aspectMask-07271", $"color attachment {atts[i].colorAttachment} of {colors}");
                var rects = (VkClearRect*)a[4];
                for (uint i = 0; i < (uint)a[3]; i++)
                {
                    var r = rects[i].rect;
                    if (r.offset.x < cb.Area.offset.x || r.offset.y < cb.Area.offset.y
                        || (long)r.offset.x + r.extent.width > (long)cb.Area.offset.x + cb.Area.extent.width
                        || (long)r.offset.y + r.extent.height > (long)cb.Area.offset.y + cb.Area.extent.height)
                        Fail(cmd, "VUID-vkCmdClearAttachments-pRects-00016", "a clear rectangle outside the render area");
                    if (rects[i].layerCount == 0) Fail(cmd, "VUID-vkCmdClearAttachments-layerCount-01934", "layerCount is 0");
                }
                break;
            }
            case Tables.vkCmdBeginRenderPass or Tables.vkCmdBeginRenderPass2:
                if (cb.Secondary) Fail(cmd, $"VUID-{N(cmd)}-bufferlevel", "a secondary command buffer");
                CheckBeginRenderPass(cmd, cb, (VkRenderPassBeginInfo*)a[1]);
                break;
            case Tables.vkCmdNextSubpass or Tables.vkCmdNextSubpass2:
                if (!cb.InRenderPass || cb.RenderPass == null) Fail(cmd, $"VUID-{N(cmd)}-renderpass", "outside a render pass");
                if (cb.Subpass + 1 >= cb.RenderPass.ColorCounts.Length) Fail(cmd, $"VUID-{N(cmd)}-None-00909", $"subpass {cb.Subpass} is the last");
                break;
            case Tables.vkCmdEndRenderPass or Tables.vkCmdEndRenderPass2:
                if (!cb.InRenderPass || cb.RenderPass == null || cb.Secondary) Fail(cmd, $"VUID-{N(cmd)}-renderpass", "no render pass of this command buffer to end");
                if (cb.Subpass + 1 != cb.RenderPass.ColorCounts.Length) Fail(cmd, $"VUID-{N(cmd)}-None-00910", $"ended in subpass {cb.Subpass} of {cb.RenderPass.ColorCounts.Length}");
                break;
            case Tables.vkCmdBeginRendering: CheckBeginRendering(cmd, cb, (VkRenderingInfo*)a[1], dev); break;
            case Tables.vkCmdEndRendering:
                if (!cb.InRendering) Fail(cmd, "VUID-vkCmdEndRendering-None-06161", "no vkCmdBeginRendering to end");
                break;
            case Tables.vkCmdSetViewport or Tables.vkCmdSetScissor:
            {
                uint first = (uint)a[1], count = (uint)a[2];
                bool vp = cmd == Tables.vkCmdSetViewport;
                if ((ulong)first + count > l.maxViewports) Fail(cmd, vp ? "VUID-vkCmdSetViewport-firstViewport-01223" : "VUID-vkCmdSetScissor-firstScissor-00592", $"[{first}, +{count}) of {l.maxViewports}");
                if (dev.Features.multiViewport == 0 && (first != 0 || count > 1)) Fail(cmd, vp ? "VUID-vkCmdSetViewport-firstViewport-01224" : "VUID-vkCmdSetScissor-firstScissor-00593", "several viewports without multiViewport");
                break;
            }
            case Tables.vkCmdSetViewportWithCount or Tables.vkCmdSetScissorWithCount:
            {
                uint most = dev.Features.multiViewport != 0 ? l.maxViewports : 1;
                if ((uint)a[1] > most) Fail(cmd, cmd == Tables.vkCmdSetViewportWithCount ? "VUID-vkCmdSetViewportWithCount-viewportCount-03394" : "VUID-vkCmdSetScissorWithCount-scissorCount-03397", $"{(uint)a[1]} of at most {most}");
                break;
            }
            case Tables.vkCmdExecuteCommands:
            {
                if (cb.Secondary) Fail(cmd, "VUID-vkCmdExecuteCommands-bufferlevel", "a secondary command buffer executes others");
                var list = (ulong*)a[2];
                for (uint i = 0; i < (uint)a[1]; i++)
                {
                    var s = Lookup(_commandBuffers, cmd, list[i], "pCommandBuffers");
                    if (!s.Secondary) Fail(cmd, "VUID-vkCmdExecuteCommands-pCommandBuffers-00088", "a primary command buffer");
                    if (s.State != RecordState.Executable) Fail(cmd, "VUID-vkCmdExecuteCommands-pCommandBuffers-00089", $"a secondary command buffer in the {s.State} state");
                }
                break;
            }
            case Tables.vkCmdPipelineBarrier or Tables.vkCmdWaitEvents:
            {
                int at = cmd == Tables.vkCmdPipelineBarrier ? 7 : 8;
                var bufs = (VkBufferMemoryBarrier*)a[at];
                for (uint i = 0; i < (uint)a[at - 1]; i++) CheckBufferBarrier(cmd, bufs[i].buffer.Handle, bufs[i].offset, bufs[i].size);
                var imgs = (VkImageMemoryBarrier*)a[at + 2];
                for (uint i = 0; i < (uint)a[at + 1]; i++) CheckImageBarrier(cmd, imgs[i].image.Handle, imgs[i].subresourceRange);
                break;
            }
            case Tables.vkCmdPipelineBarrier2: CheckDependency(cmd, (VkDependencyInfo*)a[1]); break;
            case Tables.vkCmdWaitEvents2:
                for (uint i = 0; i < (uint)a[1]; i++) CheckDependency(cmd, &((VkDependencyInfo*)a[3])[i]);
                break;
            case Tables.vkCmdSetEvent2: CheckDependency(cmd, (VkDependencyInfo*)a[2]); break;
            case Tables.vkCmdBeginQuery or Tables.vkCmdEndQuery: Query(cmd, a[1], (uint)a[2], 1, cmd == Tables.vkCmdBeginQuery ? "VUID-vkCmdBeginQuery-query-00802" : "VUID-vkCmdEndQuery-query-00810"); break;
            case Tables.vkCmdResetQueryPool: Query(cmd, a[1], (uint)a[2], (uint)a[3], "VUID-vkCmdResetQueryPool-firstQuery-00797"); break;
            case Tables.vkCmdWriteTimestamp or Tables.vkCmdWriteTimestamp2: Query(cmd, a[2], (uint)a[3], 1, "query-04904"); break;
            case Tables.vkCmdCopyQueryPoolResults:
            {
                var q = Query(cmd, a[1], (uint)a[2], (uint)a[3], "VUID-vkCmdCopyQueryPoolResults-firstQuery-00821");
                var b = UsedBuffer(cmd, a[4], "dstBuffer");
                ulong elem = QueryElement(q, (VkQueryResultFlags)(uint)a[7]);
                ulong stride = a[6];
                if (((VkQueryResultFlags)(uint)a[7] & VkQueryResultFlags.VK_QUERY_RESULT_64_BIT) != 0 ? a[5] % 8 != 0 || stride % 8 != 0 : a[5] % 4 != 0 || stride % 4 != 0)
                    Fail(cmd, "VUID-vkCmdCopyQueryPoolResults-flags-00822", "dstOffset or stride is not aligned to the result size");
                if (a[5] >= b.Size) Fail(cmd, "VUID-vkCmdCopyQueryPoolResults-dstOffset-00819", $"dstOffset {a[5]} is outside the {b.Size}-byte buffer");
                if ((uint)a[3] > 0 && (UInt128)((uint)a[3] - 1) * stride + elem > b.Size - a[5])
                    Fail(cmd, "VUID-vkCmdCopyQueryPoolResults-dstBuffer-00824", $"{(uint)a[3]} results of stride {stride} run past the {b.Size}-byte buffer");
                break;
            }
            case Tables.vkCmdBeginConditionalRenderingEXT:
            {
                var ci = (VkConditionalRenderingBeginInfoEXT*)a[1];
                var b = UsedBuffer(cmd, ci->buffer.Handle, "buffer");
                if (ci->offset % 4 != 0 || ci->offset >= b.Size || 4 > b.Size - ci->offset) Fail(cmd, "VUID-VkConditionalRenderingBeginInfoEXT-offset-01984", $"the predicate at {ci->offset} is outside the {b.Size}-byte buffer");
                break;
            }
            case Tables.vkCmdPushDescriptorSetKHR: CheckPushDescriptors(cmd, a, cb, dev); break;
            default:
                // Other extension commands: their command is enabled (checked above), their handles are live objects
                // of this device; those the gate does not model in detail are the layer's job (--strict).
                CheckExtensionRecording(cmd, a, cb, dev);
                break;
        }
        return true;
    }

    void CheckDependency(int cmd, VkDependencyInfo* d)
    {
        for (uint i = 0; i < d->bufferMemoryBarrierCount; i++)
            CheckBufferBarrier(cmd, d->pBufferMemoryBarriers[i].buffer.Handle, d->pBufferMemoryBarriers[i].offset, d->pBufferMemoryBarriers[i].size);
        for (uint i = 0; i < d->imageMemoryBarrierCount; i++)
            CheckImageBarrier(cmd, d->pImageMemoryBarriers[i].image.Handle, d->pImageMemoryBarriers[i].subresourceRange);
    }

    QueryPoolState Query(int cmd, ulong pool, uint first, uint count, string vuid)
    {
        var q = Lookup(_queryPools, cmd, pool, "queryPool");
        if (first >= q.Count || count > q.Count - first) Fail(cmd, V(cmd, vuid), $"queries [{first}, +{count}) of a pool of {q.Count}");
        return q;
    }

    static ulong QueryElement(QueryPoolState q, VkQueryResultFlags flags)
    {
        ulong values = q.Type == VkQueryType.VK_QUERY_TYPE_PIPELINE_STATISTICS ? (ulong)Math.Max(1, q.Statistics) : 1;
        if ((flags & VkQueryResultFlags.VK_QUERY_RESULT_WITH_AVAILABILITY_BIT) != 0) values++;
        return values * ((flags & VkQueryResultFlags.VK_QUERY_RESULT_64_BIT) != 0 ? 8u : 4u);
    }

    void CheckPushDescriptors(int cmd, ulong* a, CommandBufferState cb, DeviceState dev)
    {
        var layout = Lookup(_pipelineLayouts, cmd, a[2], "layout");
        uint set = (uint)a[3];
        if (set >= layout.Sets.Length) Fail(cmd, "VUID-vkCmdPushDescriptorSetKHR-set-00364", $"set {set} of a layout with {layout.Sets.Length}");
        var sl = layout.Sets[set];
        var virtualSet = new SetState(dev.Handle, 0, sl, uint.MaxValue);
        var writes = (VkWriteDescriptorSet*)a[5];
        for (uint i = 0; i < (uint)a[4]; i++) CheckWrite(cmd, virtualSet, &writes[i], dev);
        cb.Sets((VkPipelineBindPoint)(int)a[1])[set] = sl.Signature;
    }

    void CheckIndirect(int cmd, ulong buffer, ulong offset, uint count, uint stride, uint structSize, DeviceState dev, bool countVariant)
    {
        var b = UsedBuffer(cmd, buffer, "buffer");
        if ((b.Usage & VkBufferUsageFlags.VK_BUFFER_USAGE_INDIRECT_BUFFER_BIT) == 0) Fail(cmd, $"VUID-{N(cmd)}-buffer-02709", "the buffer lacks VK_BUFFER_USAGE_INDIRECT_BUFFER_BIT");
        if (offset % 4 != 0) Fail(cmd, $"VUID-{N(cmd)}-offset-02710", $"offset {offset} is not a multiple of 4");
        if (!countVariant)
        {
            if (count > 1 && dev.Features.multiDrawIndirect == 0) Fail(cmd, $"VUID-{N(cmd)}-drawCount-02718", $"drawCount {count} without multiDrawIndirect");
            if (count > dev.Limits.maxDrawIndirectCount) Fail(cmd, $"VUID-{N(cmd)}-drawCount-02719", $"drawCount {count} exceeds maxDrawIndirectCount {dev.Limits.maxDrawIndirectCount}");
        }
        if ((count > 1 || countVariant) && (stride % 4 != 0 || stride < structSize))
            Fail(cmd, countVariant ? $"VUID-{N(cmd)}-stride-03110" : $"VUID-{N(cmd)}-drawCount-00476", $"stride {stride} is not a multiple of 4 of at least {structSize}");
        if (count == 0) return;
        UInt128 end = (UInt128)offset + (UInt128)(count - 1) * stride + structSize;
        if (end > b.Size) Fail(cmd, countVariant ? $"VUID-{N(cmd)}-maxDrawCount-03111" : $"VUID-{N(cmd)}-drawCount-00487", $"{count} commands of stride {stride} at {offset} reach byte {end} of the {b.Size}-byte buffer");
    }

    void CheckSetsBound(int cmd, PipelineState p, ulong[] bound)
    {
        if (p.Layout == null) return;
        for (int s = 0; s < 32 && (p.UsedSets >> s) != 0; s++)
            if ((p.UsedSets & (1u << s)) != 0 && (s >= bound.Length || bound[s] != p.Layout.Sets[s].Signature))
                Fail(cmd, $"VUID-{N(cmd)}-None-02697", $"descriptor set {s}, which the pipeline's shaders use, is not bound with a compatible layout");
    }

    void CheckDispatch(int cmd, CommandBufferState cb)
    {
        var p = cb.Compute;
        if (p == null) Fail(cmd, $"VUID-{N(cmd)}-None-08606", "no compute pipeline is bound");
        CheckSetsBound(cmd, p, cb.Sets(VK_PIPELINE_BIND_POINT_COMPUTE));
    }

    void CheckDraw(int cmd, CommandBufferState cb, bool indexed)
    {
        var p = cb.Graphics;
        if (p == null) Fail(cmd, $"VUID-{N(cmd)}-None-08606", "no graphics pipeline is bound");
        uint colors = cb.InRenderPass && cb.RenderPass != null ? cb.RenderPass.ColorCounts[cb.Subpass] : cb.Colors;
        if (p.ColorCount != colors) Fail(cmd, $"VUID-{N(cmd)}-renderPass-02684", $"the pipeline writes {p.ColorCount} color attachments, the current subpass has {colors}");
        CheckSetsBound(cmd, p, cb.Sets(VK_PIPELINE_BIND_POINT_GRAPHICS));
        if (p.DynamicVertexInput && !cb.VertexInputSet) Fail(cmd, $"VUID-{N(cmd)}-None-04914", "the pipeline's vertex input is dynamic and vkCmdSetVertexInputEXT was not called");
        ulong reads = p.DynamicVertexInput ? cb.DynamicVertexBindings : p.VertexBindings;
        if ((reads & ~cb.VertexBound) != 0)
            Fail(cmd, $"VUID-{N(cmd)}-None-04007", $"vertex bindings 0x{reads & ~cb.VertexBound:X} the pipeline reads have no buffer bound");
        if (indexed && !cb.IndexBound) Fail(cmd, $"VUID-{N(cmd)}-None-07312", "no index buffer is bound");
    }

    void RecordRecording(int cmd, ulong* a, DeviceState dev)
    {
        var cb = _commandBuffers[a[0]];
        RecordExtensionRecording(cmd, cb);
        switch (cmd)
        {
            case Tables.vkCmdBindPipeline:
                if ((VkPipelineBindPoint)(int)a[1] == VK_PIPELINE_BIND_POINT_COMPUTE) cb.Compute = _pipelines[a[2]];
                else cb.Graphics = _pipelines[a[2]];
                break;
            case Tables.vkCmdBeginRenderPass or Tables.vkCmdBeginRenderPass2:
                cb.InRenderPass = true;
                cb.RenderPass = cb.PendingRenderPass;
                cb.Subpass = 0;
                cb.Area = cb.PendingArea;
                break;
            case Tables.vkCmdNextSubpass or Tables.vkCmdNextSubpass2: cb.Subpass++; break;
            case Tables.vkCmdEndRenderPass or Tables.vkCmdEndRenderPass2:
                cb.InRenderPass = false;
                cb.RenderPass = null;
                break;
            case Tables.vkCmdBeginRendering:
                cb.InRendering = true;
                cb.Area = cb.PendingArea;
                cb.Colors = cb.PendingColors;
                break;
            case Tables.vkCmdEndRendering: cb.InRendering = false; cb.Colors = 0; break;
        }
    }

    // ------------------------------------------------------------------ lifecycle (device-level commands on command buffers)

    void RecordAllocateCommandBuffers(ulong* a, DeviceState dev)
    {
        var ai = (VkCommandBufferAllocateInfo*)a[1];
        var list = (ulong*)a[2];
        int maxSets = (int)Math.Clamp(dev.Limits.maxBoundDescriptorSets, 32u, 64u);
        for (uint i = 0; i < ai->commandBufferCount; i++)
            if (list[i] != 0)
            {
                _commandBuffers[list[i]] = new CommandBufferState(dev.Handle, ai->commandPool.Handle, ai->level == VkCommandBufferLevel.VK_COMMAND_BUFFER_LEVEL_SECONDARY, maxSets);
                _owner[(TypeCommandBuffer, list[i])] = dev.Handle;
            }
    }

    void CheckBegin(int cmd, ulong* a)
    {
        var cb = Lookup(_commandBuffers, cmd, a[0], "commandBuffer");
        if (cb.State == RecordState.Recording) Fail(cmd, "VUID-vkBeginCommandBuffer-commandBuffer-00049", "the command buffer is already recording");
        var bi = (VkCommandBufferBeginInfo*)a[1];
        if (cb.Secondary && (bi->flags & VkCommandBufferUsageFlags.VK_COMMAND_BUFFER_USAGE_RENDER_PASS_CONTINUE_BIT) != 0)
        {
            if (bi->pInheritanceInfo == null) Fail(cmd, "VUID-vkBeginCommandBuffer-commandBuffer-00051", "a secondary command buffer without inheritance info");
            var ii = bi->pInheritanceInfo;
            if (ii->renderPass.Handle != 0)
            {
                var rp = Lookup(_renderPasses, cmd, ii->renderPass.Handle, "renderPass");
                if (ii->subpass >= rp.ColorCounts.Length) Fail(cmd, "VUID-VkCommandBufferBeginInfo-flags-06001", $"subpass {ii->subpass} of {rp.ColorCounts.Length}");
                cb.PendingRenderPass = rp;
            }
            else cb.PendingRenderPass = null;
        }
    }

    void RecordBegin(ulong* a)
    {
        var cb = _commandBuffers[a[0]];
        var bi = (VkCommandBufferBeginInfo*)a[1];
        var pending = cb.PendingRenderPass;
        Invalidate(TypeCommandBuffer, a[0], cb.Device);
        cb.Reset(RecordState.Recording);
        cb.OneTime = (bi->flags & VkCommandBufferUsageFlags.VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT) != 0;
        if (cb.Secondary && (bi->flags & VkCommandBufferUsageFlags.VK_COMMAND_BUFFER_USAGE_RENDER_PASS_CONTINUE_BIT) != 0 && bi->pInheritanceInfo != null)
        {
            var ii = bi->pInheritanceInfo;
            if (pending != null) { cb.InRenderPass = true; cb.RenderPass = pending; cb.Subpass = ii->subpass; cb.Area = new VkRect2D { extent = new VkExtent2D { width = uint.MaxValue / 2, height = uint.MaxValue / 2 } }; }
            else
            {
                cb.InRendering = true;
                cb.Area = new VkRect2D { extent = new VkExtent2D { width = uint.MaxValue / 2, height = uint.MaxValue / 2 } };
                for (var n = (VkBaseInStructure*)ii->pNext; n != null; n = n->pNext)
                    if (n->sType == VkStructureType.VK_STRUCTURE_TYPE_COMMAND_BUFFER_INHERITANCE_RENDERING_INFO)
                        cb.Colors = ((VkCommandBufferInheritanceRenderingInfo*)n)->colorAttachmentCount;
            }
        }
        cb.PendingRenderPass = null;
    }

    void CheckEnd(int cmd, ulong* a)
    {
        var cb = Lookup(_commandBuffers, cmd, a[0], "commandBuffer");
        if (cb.State != RecordState.Recording) Fail(cmd, "VUID-vkEndCommandBuffer-commandBuffer-00059", $"the command buffer is {cb.State}, not recording");
        if (!cb.Secondary && (cb.InRenderPass || cb.InRendering)) Fail(cmd, "VUID-vkEndCommandBuffer-commandBuffer-00060", "a render pass is still open");
    }

    void CheckSubmit(int cmd, ulong* a)
    {
        uint n = (uint)a[1];
        if (cmd == Tables.vkQueueSubmit)
        {
            var submits = (VkSubmitInfo*)a[2];
            for (uint s = 0; s < n; s++)
                for (uint i = 0; i < submits[s].commandBufferCount; i++) Submittable(cmd, (ulong)submits[s].pCommandBuffers[i].Handle);
        }
        else
        {
            var submits = (VkSubmitInfo2*)a[2];
            for (uint s = 0; s < n; s++)
                for (uint i = 0; i < submits[s].commandBufferInfoCount; i++) Submittable(cmd, (ulong)submits[s].pCommandBufferInfos[i].commandBuffer.Handle);
        }
    }

    void Submittable(int cmd, ulong handle)
    {
        var cb = Lookup(_commandBuffers, cmd, (ulong)handle, "pCommandBuffers");
        if (cb.Secondary) Fail(cmd, "VUID-VkSubmitInfo-pCommandBuffers-00075", "a secondary command buffer is submitted");
        if (cb.State != RecordState.Executable)
            Fail(cmd, "VUID-vkQueueSubmit-pCommandBuffers-00070", cb.State == RecordState.Invalid
                ? "the command buffer is invalid: something it recorded was destroyed, or it was one-time and already submitted"
                : $"the command buffer is {cb.State}, not executable");
    }

    void RecordSubmit(int cmd, ulong* a, DeviceState dev)
    {
        dev.Busy = true;
        uint n = (uint)a[1];
        for (uint s = 0; s < n; s++)
        {
            uint count = cmd == Tables.vkQueueSubmit ? ((VkSubmitInfo*)a[2])[s].commandBufferCount : ((VkSubmitInfo2*)a[2])[s].commandBufferInfoCount;
            for (uint i = 0; i < count; i++)
            {
                ulong h = cmd == Tables.vkQueueSubmit ? (ulong)((VkSubmitInfo*)a[2])[s].pCommandBuffers[i].Handle : (ulong)((VkSubmitInfo2*)a[2])[s].pCommandBufferInfos[i].commandBuffer.Handle;
                if (_commandBuffers.TryGetValue((ulong)h, out var cb) && cb.OneTime) cb.State = RecordState.Invalid;
            }
        }
    }
}
