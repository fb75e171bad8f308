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
        const string vuid = "VUID-VkRenderPassCreateInfo-attachment-00834";
        var colors = new uint[ci->subpassCount];
        for (uint s = 0; s < ci->subpassCount; s++)
        {
            var sp = ci->pSubpasses[s];
            if (sp.colorAttachmentCount > dev.Limits.maxColorAttachments)
                Fail(cmd, "VUID-VkSubpassDescription-colorAttachmentCount-00845", $"{sp.colorAttachmentCount} color attachments exceed {dev.Limits.maxColorAttachments}");
            for (uint i = 0; i < sp.inputAttachmentCount; i++) Reference(cmd, sp.pInputAttachments[i].attachment, n, vuid);
            for (uint i = 0; i < sp.colorAttachmentCount; i++) Reference(cmd, sp.pColorAttachments[i].attachment, n, vuid);
            if (sp.pResolveAttachments != null) for (uint i = 0; i < sp.colorAttachmentCount; i++) Reference(cmd, sp.pResolveAttachments[i].attachment, n, vuid);
            if (sp.pDepthStencilAttachment != null) Reference(cmd, sp.pDepthStencilAttachment->attachment, n, vuid);
            for (uint i = 0; i < sp.preserveAttachmentCount; i++) Reference(cmd, sp.pPreserveAttachments[i], n, vuid);
            colors[s] = sp.colorAttachmentCount;
        }
        for (uint d = 0; d < ci->dependencyCount; d++)
        {
            var dep = ci->pDependencies[d];
            if (dep.srcSubpass != VkConstants.VK_SUBPASS_EXTERNAL && dep.srcSubpass >= ci->subpassCount) Fail(cmd, "VUID-VkRenderPassCreateInfo-pDependencies-06866", $"srcSubpass {dep.srcSubpass} of {ci->subpassCount}");
            if (dep.dstSubpass != VkConstants.VK_SUBPASS_EXTERNAL && dep.dstSubpass >= ci->subpassCount) Fail(cmd, "VUID-VkRenderPassCreateInfo-pDependencies-06867", $"dstSubpass {dep.dstSubpass} of {ci->subpassCount}");
        }
        if (!record) return;
        ulong h = *(ulong*)a[3];
        if (h == 0) return;
        uint clear = 0;
        for (uint i = 0; i < n; i++)
            if (ci->pAttachments[i].loadOp == VkAttachmentLoadOp.VK_ATTACHMENT_LOAD_OP_CLEAR || ci->pAttachments[i].stencilLoadOp == VkAttachmentLoadOp.VK_ATTACHMENT_LOAD_OP_CLEAR) clear = i + 1;
        _renderPasses[h] = new RenderPassState { Device = dev.Handle, Attachments = n, ColorCounts = colors, ClearNeeded = clear };
    }

    void CheckCreateRenderPass2(int cmd, ulong* a, DeviceState dev, bool record)
    {
        var ci = (VkRenderPassCreateInfo2*)a[1];
        uint n = ci->attachmentCount;
        const string vuid = "VUID-VkRenderPassCreateInfo2-attachment-03051";
        var colors = new uint[ci->subpassCount];
        for (uint s = 0; s < ci->subpassCount; s++)
        {
            var sp = ci->pSubpasses[s];
            if (sp.colorAttachmentCount > dev.Limits.maxColorAttachments)
                Fail(cmd, "VUID-VkSubpassDescription2-colorAttachmentCount-03063", $"{sp.colorAttachmentCount} color attachments exceed {dev.Limits.maxColorAttachments}");
            for (uint i = 0; i < sp.inputAttachmentCount; i++) Reference(cmd, sp.pInputAttachments[i].attachment, n, vuid);
            for (uint i = 0; i < sp.colorAttachmentCount; i++) Reference(cmd, sp.pColorAttachments[i].attachment, n, vuid);
            if (sp.pResolveAttachments != null) for (uint i = 0; i < sp.colorAttachmentCount; i++) Reference(cmd, sp.pResolveAttachments[i].attachment, n, vuid);
            if (sp.pDepthStencilAttachment != null) Reference(cmd, sp.pDepthStencilAttachment->attachment, n, vuid);
            for (uint i = 0; i < sp.preserveAttachmentCount; i++) Reference(cmd, sp.pPreserveAttachments[i], n, vuid);
            colors[s] = sp.colorAttachmentCount;
        }
        for (uint d = 0; d < ci->dependencyCount; d++)
        {
            var dep = ci->pDependencies[d];
            if (dep.srcSubpass != VkConstants.VK_SUBPASS_EXTERNAL && dep.srcSubpass >= ci->subpassCount) Fail(cmd, "VUID-VkRenderPassCreateInfo2-srcSubpass-02526", $"srcSubpass {dep.srcSubpass} of {ci->subpassCount}");
            if (dep.dstSubpass != VkConstants.VK_SUBPASS_EXTERNAL && dep.dstSubpass >= ci->subpassCount) Fail(cmd, "VUID-VkRenderPassCreateInfo2-dstSubpass-02527", $"dstSubpass {dep.dstSubpass} of {ci->subpassCount}");
        }
        if (!record) return;
        ulong h = *(ulong*)a[3];
        if (h == 0) return;
        uint clear = 0;
        for (uint i = 0; i < n; i++)
            if (ci->pAttachments[i].loadOp == VkAttachmentLoadOp.VK_ATTACHMENT_LOAD_OP_CLEAR || ci->pAttachments[i].stencilLoadOp == VkAttachmentLoadOp.VK_ATTACHMENT_LOAD_OP_CLEAR) clear = i + 1;
        _renderPasses[h] = new RenderPassState { Device = dev.Handle, Attachments = n, ColorCounts = colors, ClearNeeded = clear };
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
