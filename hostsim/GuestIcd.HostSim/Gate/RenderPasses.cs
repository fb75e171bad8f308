using GuestIcd.Protocol;
using GuestIcd.Vulkan;

namespace GuestIcd.HostSim.Gate;

internal sealed class RenderPassState
{
    public ulong Device;
    public uint Attachments;
    /// <summary>Color attachments of each subpass.</summary>
    public uint[] ColorCounts = [];
    /// <summary>Clear values the begin must supply: one past the highest attachment that is cleared.</summary>
    public uint ClearNeeded;
}

internal sealed class FramebufferState
{
    public ulong Device;
    public RenderPassState? RenderPass;
    public uint Width, Height, Layers, Attachments;
    public bool Imageless;
}

/// <summary>Render passes and framebuffers: attachment references inside the pass, framebuffers that match
/// their pass and fit in their views, and begins whose framebuffer, render area and clear values match.</summary>
internal sealed unsafe partial class ValidUsageGate
{
    readonly Dictionary<ulong, RenderPassState> _renderPasses = new();
    readonly Dictionary<ulong, FramebufferState> _framebuffers = new();

    static void Reference(int cmd, uint attachment, uint count, string vuid)
    {
        if (attachment != VkConstants.VK_ATTACHMENT_UNUSED && attachment >= count)
            Fail(cmd, vuid, $"attachment {attachment} of {count}");
    }

    void CheckCreateRenderPass(int cmd, ulong* a, DeviceState dev, bool record)
    {
        var ci = (VkRenderPassCreateInfo*)a[1];
        uint n = ci->attachmentCount;
        var colors = new uint[ci->subpassCount];
        for (uint s = 0; s < ci->subpassCount; s++)
        {
            var sp = &ci->pSubpasses[s];
            CheckSubpass(cmd, dev, n, "VUID-VkRenderPassCreateInfo-attachment-00834", "VUID-VkSubpassDescription-colorAttachmentCount-00845",
                sp->colorAttachmentCount, sp->pColorAttachments, sp->pResolveAttachments, sp->inputAttachmentCount, sp->pInputAttachments,
                sp->pDepthStencilAttachment, sp->preserveAttachmentCount, sp->pPreserveAttachments, &Attachment);
            colors[s] = sp->colorAttachmentCount;
        }
        for (uint d = 0; d < ci->dependencyCount; d++)
            CheckDependency(cmd, ci->pDependencies[d].srcSubpass, ci->pDependencies[d].dstSubpass, ci->subpassCount,
                "VUID-VkRenderPassCreateInfo-pDependencies-06866", "VUID-VkRenderPassCreateInfo-pDependencies-06867");
        if (!record) return;
        uint clear = 0;
        for (uint i = 0; i < n; i++)
            if (Clears(ci->pAttachments[i].loadOp, ci->pAttachments[i].stencilLoadOp)) clear = i + 1;
        RecordRenderPass(a, dev, n, colors, clear);
    }

    void CheckCreateRenderPass2(int cmd, ulong* a, DeviceState dev, bool record)
    {
        var ci = (VkRenderPassCreateInfo2*)a[1];
        uint n = ci->attachmentCount;
        var colors = new uint[ci->subpassCount];
        for (uint s = 0; s < ci->subpassCount; s++)
        {
            var sp = &ci->pSubpasses[s];
            CheckSubpass(cmd, dev, n, "VUID-VkRenderPassCreateInfo2-attachment-03051", "VUID-VkSubpassDescription2-colorAttachmentCount-03063",
                sp->colorAttachmentCount, sp->pColorAttachments, sp->pResolveAttachments, sp->inputAttachmentCount, sp->pInputAttachments,
                sp->pDepthStencilAttachment, sp->preserveAttachmentCount, sp->pPreserveAttachments, &Attachment2);
            colors[s] = sp->colorAttachmentCount;
        }
        for (uint d = 0; d < ci->dependencyCount; d++)
            CheckDependency(cmd, ci->pDependencies[d].srcSubpass, ci->pDependencies[d].dstSubpass, ci->subpassCount,
                "VUID-VkRenderPassCreateInfo2-srcSubpass-02526", "VUID-VkRenderPassCreateInfo2-dstSubpass-02527");
        if (!record) return;
        uint clear = 0;
        for (uint i = 0; i < n; i++)
            if (Clears(ci->pAttachments[i].loadOp, ci->pAttachments[i].stencilLoadOp)) clear = i + 1;
        RecordRenderPass(a, dev, n, colors, clear);
    }

    static uint Attachment(VkAttachmentReference* r) => r->attachment;
    static uint Attachment2(VkAttachmentReference2* r) => r->attachment;

    /// <summary>One subpass of either creation command (VkSubpassDescription or VkSubpassDescription2, whose
    /// references differ only in type): every attachment it names is one of the pass's.</summary>
    static void CheckSubpass<TRef>(int cmd, DeviceState dev, uint n, string vuid, string colorVuid, uint colorCount, TRef* color, TRef* resolve,
        uint inputCount, TRef* input, TRef* depthStencil, uint preserveCount, uint* preserve, delegate*<TRef*, uint> attachment) where TRef : unmanaged
    {
        if (colorCount > dev.Limits.maxColorAttachments)
            Fail(cmd, colorVuid, $"{colorCount} color attachments exceed {dev.Limits.maxColorAttachments}");
        for (uint i = 0; i < inputCount; i++) Reference(cmd, attachment(&input[i]), n, vuid);
        for (uint i = 0; i < colorCount; i++) Reference(cmd, attachment(&color[i]), n, vuid);
        if (resolve != null) for (uint i = 0; i < colorCount; i++) Reference(cmd, attachment(&resolve[i]), n, vuid);
        if (depthStencil != null) Reference(cmd, attachment(depthStencil), n, vuid);
        for (uint i = 0; i < preserveCount; i++) Reference(cmd, preserve[i], n, vuid);
    }

    static void CheckDependency(int cmd, uint src, uint dst, uint subpasses, string srcVuid, string dstVuid)
    {
        if (src != VkConstants.VK_SUBPASS_EXTERNAL && src >= subpasses) Fail(cmd, srcVuid, $"srcSubpass {src} of {subpasses}");
        if (dst != VkConstants.VK_SUBPASS_EXTERNAL && dst >= subpasses) Fail(cmd, dstVuid, $"dstSubpass {dst} of {subpasses}");
    }

    static bool Clears(VkAttachmentLoadOp load, VkAttachmentLoadOp stencilLoad) =>
        load == VkAttachmentLoadOp.VK_ATTACHMENT_LOAD_OP_CLEAR || stencilLoad == VkAttachmentLoadOp.VK_ATTACHMENT_LOAD_OP_CLEAR;

    void RecordRenderPass(ulong* a, DeviceState dev, uint attachments, uint[] colors, uint clear)
    {
        ulong h = *(ulong*)a[3];
        if (h != 0) _renderPasses[h] = new RenderPassState { Device = dev.Handle, Attachments = attachments, ColorCounts = colors, ClearNeeded = clear };
    }

    void CheckCreateFramebuffer(int cmd, ulong* a, DeviceState dev, bool record)
    {
        var ci = (VkFramebufferCreateInfo*)a[1];
        var rp = Lookup(_renderPasses, cmd, ci->renderPass.Handle, "renderPass");
        ref readonly var l = ref dev.Limits;
        if (ci->width == 0 || ci->width > l.maxFramebufferWidth) Fail(cmd, "VUID-VkFramebufferCreateInfo-width-00886", $"width {ci->width} of at most {l.maxFramebufferWidth}");
        if (ci->height == 0 || ci->height > l.maxFramebufferHeight) Fail(cmd, "VUID-VkFramebufferCreateInfo-height-00888", $"height {ci->height} of at most {l.maxFramebufferHeight}");
        if (ci->layers == 0 || ci->layers > l.maxFramebufferLayers) Fail(cmd, "VUID-VkFramebufferCreateInfo-layers-00890", $"{ci->layers} layers of at most {l.maxFramebufferLayers}");
        if (ci->attachmentCount != rp.Attachments) Fail(cmd, "VUID-VkFramebufferCreateInfo-attachmentCount-00876", $"{ci->attachmentCount} attachments for a render pass of {rp.Attachments}");
        bool imageless = (ci->flags & VkFramebufferCreateFlags.VK_FRAMEBUFFER_CREATE_IMAGELESS_BIT) != 0;
        if (!imageless)
            for (uint i = 0; i < ci->attachmentCount; i++)
            {
                var v = Lookup(_imageViews, cmd, ci->pAttachments[i].Handle, "pAttachments");
                if (v.Width < ci->width || v.Height < ci->height)
                    Fail(cmd, "VUID-VkFramebufferCreateInfo-flags-04533", $"attachment {i} is {v.Width}x{v.Height}, the framebuffer {ci->width}x{ci->height}");
                if (v.Layers < ci->layers) Fail(cmd, "VUID-VkFramebufferCreateInfo-flags-04535", $"attachment {i} has {v.Layers} layers, the framebuffer {ci->layers}");
            }
        if (!record) return;
        ulong h = *(ulong*)a[3];
        if (h != 0)
            _framebuffers[h] = new FramebufferState { Device = dev.Handle, RenderPass = rp, Width = ci->width, Height = ci->height, Layers = ci->layers, Attachments = ci->attachmentCount, Imageless = imageless };
    }

    void CheckBeginRenderPass(int cmd, CommandBufferState cb, VkRenderPassBeginInfo* bi)
    {
        if (cb.InRenderPass || cb.InRendering) Fail(cmd, $"VUID-{N(cmd)}-renderpass", "already inside a render pass");
        var rp = Lookup(_renderPasses, cmd, bi->renderPass.Handle, "renderPass");
        var fb = Lookup(_framebuffers, cmd, bi->framebuffer.Handle, "framebuffer");
        if (fb.Attachments != rp.Attachments) Fail(cmd, "VUID-VkRenderPassBeginInfo-renderPass-00904", $"a framebuffer of {fb.Attachments} attachments for a render pass of {rp.Attachments}");
        var ra = bi->renderArea;
        if (ra.offset.x < 0 || ra.offset.y < 0 || (ulong)ra.offset.x + ra.extent.width > fb.Width || (ulong)ra.offset.y + ra.extent.height > fb.Height)
            Fail(cmd, "VUID-VkRenderPassBeginInfo-pNext-02852", $"render area ({ra.offset.x},{ra.offset.y})+{ra.extent.width}x{ra.extent.height} outside the {fb.Width}x{fb.Height} framebuffer");
        if (bi->clearValueCount < rp.ClearNeeded || rp.ClearNeeded > 0 && bi->pClearValues == null)
            Fail(cmd, "VUID-VkRenderPassBeginInfo-clearValueCount-00902", $"{bi->clearValueCount} clear values, attachment {rp.ClearNeeded - 1} is cleared");
        if (fb.Imageless)
        {
            uint given = 0;
            for (var n = (VkBaseInStructure*)bi->pNext; n != null; n = n->pNext)
                if (n->sType == VkStructureType.VK_STRUCTURE_TYPE_RENDER_PASS_ATTACHMENT_BEGIN_INFO)
                {
                    var ab = (VkRenderPassAttachmentBeginInfo*)n;
                    given = ab->attachmentCount;
                    for (uint i = 0; i < ab->attachmentCount; i++) Lookup(_imageViews, cmd, ab->pAttachments[i].Handle, "pAttachments");
                }
            if (given != fb.Attachments) Fail(cmd, "VUID-VkRenderPassBeginInfo-framebuffer-03207", $"{given} attachments for an imageless framebuffer of {fb.Attachments}");
        }
        cb.PendingRenderPass = rp;
        cb.PendingArea = ra;
    }

    void CheckBeginRendering(int cmd, CommandBufferState cb, VkRenderingInfo* ri, DeviceState dev)
    {
        if (cb.InRenderPass || cb.InRendering) Fail(cmd, "VUID-vkCmdBeginRendering-renderpass", "already inside a render pass");
        if (ri->colorAttachmentCount > dev.Limits.maxColorAttachments)
            Fail(cmd, "VUID-VkRenderingInfo-colorAttachmentCount-06106", $"{ri->colorAttachmentCount} color attachments exceed {dev.Limits.maxColorAttachments}");
        if (ri->layerCount == 0 && ri->viewMask == 0) Fail(cmd, "VUID-VkRenderingInfo-viewMask-06069", "layerCount is 0");
        cb.PendingArea = ri->renderArea;
        cb.PendingColors = ri->colorAttachmentCount;
    }
}
