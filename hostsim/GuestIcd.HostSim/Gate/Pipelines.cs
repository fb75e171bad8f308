using GuestIcd.Protocol;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkStructureType;

namespace GuestIcd.HostSim.Gate;

internal sealed class PipelineState
{
    public ulong Device;
    public VkPipelineBindPoint BindPoint;
    public PipelineLayoutState? Layout;
    /// <summary>Descriptor sets the pipeline's shaders declare resources in (bit n: set n).</summary>
    public uint UsedSets;
    /// <summary>Vertex input bindings the pipeline reads (bit n: binding n); unknown with dynamic vertex input.</summary>
    public ulong VertexBindings;
    public bool DynamicVertexInput;
    public uint ColorCount;
}

/// <summary>Shader modules and pipelines: SPIR-V capabilities that would let a shader address host memory,
/// shader resources that the pipeline layout lacks (the driver looks each one up in the layout), limits on
/// vertex input, viewports and color attachments, and specialization data inside its buffer.</summary>
internal sealed unsafe partial class ValidUsageGate
{
    readonly Dictionary<ulong, ShaderModuleState> _modules = new();
    readonly Dictionary<ulong, PipelineState> _pipelines = new();

    /// <summary>One stage: its module's resources must be in the layout for that stage; returns the sets used.
    /// <paramref name="check"/>: before the driver (inline SPIR-V is validated then, not again after).</summary>
    uint CheckStage(int cmd, VkPipelineShaderStageCreateInfo* st, PipelineLayoutState layout, string vuidLayout, DeviceState dev, bool check)
    {
        ShaderModuleState module;
        if (st->module.Handle != 0) module = Lookup(_modules, cmd, st->module.Handle, "module");
        else
        {
            VkShaderModuleCreateInfo* inline = null;
            for (var n = (VkBaseInStructure*)st->pNext; n != null; n = n->pNext)
                if (n->sType == VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO) inline = (VkShaderModuleCreateInfo*)n;
            if (inline == null) Fail(cmd, "VUID-VkPipelineShaderStageCreateInfo-stage-06845", "a stage with neither a module nor SPIR-V");
            module = ParseSpirv(cmd, inline->pCode, inline->codeSize, dev, validate: check);
        }
        var resources = module.Resources;
        if (st->pSpecializationInfo != null)
        {
            var si = st->pSpecializationInfo;
            for (uint i = 0; i < si->mapEntryCount; i++)
            {
                var e = si->pMapEntries[i];
                if (e.offset >= si->dataSize && si->dataSize != 0 || e.offset > si->dataSize) Fail(cmd, "VUID-VkSpecializationInfo-offset-00773", $"constant at offset {e.offset} of {si->dataSize} bytes");
                if (e.size > si->dataSize - e.offset) Fail(cmd, "VUID-VkSpecializationInfo-pMapEntries-00774", $"constant [{e.offset}, +{e.size}) past {si->dataSize} bytes");
            }
        }
        if (check) CheckEntryPoint(cmd, st, module, dev); // after the bounds above: it reads specialization data
        uint used = 0;
        foreach (var (set, binding) in resources)
        {
            if (set >= layout.Sets.Length) Fail(cmd, vuidLayout, $"the shader uses set {set}, the layout has {layout.Sets.Length}");
            int bi = layout.Sets[set].IndexOf(binding);
            if (bi < 0) Fail(cmd, vuidLayout, $"the shader uses binding {binding} of set {set}, which the layout lacks");
            if ((layout.Sets[set].Bindings[bi].Stages & (VkShaderStageFlags)(uint)st->stage) == 0)
                Fail(cmd, vuidLayout, $"binding {binding} of set {set} is not visible to stage {st->stage}");
            if (set < 32) used |= 1u << (int)set;
        }
        return used;
    }

    void CheckComputePipelines(int cmd, ulong* a, DeviceState dev)
    {
        var infos = (VkComputePipelineCreateInfo*)a[3];
        for (uint i = 0; i < (uint)a[2]; i++)
        {
            var ci = &infos[i];
            if (ci->stage.stage != VkShaderStageFlagBits.VK_SHADER_STAGE_COMPUTE_BIT) Fail(cmd, "VUID-VkComputePipelineCreateInfo-stage-00701", $"stage {ci->stage.stage}");
            var layout = Lookup(_pipelineLayouts, cmd, ci->layout.Handle, "layout");
            CheckStage(cmd, &ci->stage, layout, "VUID-VkComputePipelineCreateInfo-layout-07988", dev, check: true);
        }
    }

    void RecordComputePipelines(ulong* a, DeviceState dev)
    {
        var infos = (VkComputePipelineCreateInfo*)a[3];
        var out_ = (ulong*)a[5];
        for (uint i = 0; i < (uint)a[2]; i++)
        {
            if (out_[i] == 0) continue;
            var layout = _pipelineLayouts[infos[i].layout.Handle];
            _pipelines[out_[i]] = new PipelineState
            {
                Device = dev.Handle, BindPoint = VkPipelineBindPoint.VK_PIPELINE_BIND_POINT_COMPUTE, Layout = layout,
                UsedSets = CheckStage(Tables.vkCreateComputePipelines, &infos[i].stage, layout, "", dev, check: false),
            };
        }
    }

    void CheckGraphicsPipelines(int cmd, ulong* a, DeviceState dev, bool record)
    {
        var infos = (VkGraphicsPipelineCreateInfo*)a[3];
        ref readonly var l = ref dev.Limits;
        for (uint i = 0; i < (uint)a[2]; i++)
        {
            var ci = &infos[i];
            if (ci->layout.Handle == 0) Fail(cmd, "VUID-VkGraphicsPipelineCreateInfo-layout-06602", "layout is VK_NULL_HANDLE");
            var layout = Lookup(_pipelineLayouts, cmd, ci->layout.Handle, "layout");
            uint colorCount;
            if (ci->renderPass.Handle != 0)
            {
                var rp = Lookup(_renderPasses, cmd, ci->renderPass.Handle, "renderPass");
                if (ci->subpass >= rp.ColorCounts.Length) Fail(cmd, "VUID-VkGraphicsPipelineCreateInfo-renderPass-06046", $"subpass {ci->subpass} of {rp.ColorCounts.Length}");
                colorCount = rp.ColorCounts[ci->subpass];
            }
            else
            {
                colorCount = 0;
                for (var n = (VkBaseInStructure*)ci->pNext; n != null; n = n->pNext)
                    if (n->sType == VK_STRUCTURE_TYPE_PIPELINE_RENDERING_CREATE_INFO) colorCount = ((VkPipelineRenderingCreateInfo*)n)->colorAttachmentCount;
                if (colorCount > l.maxColorAttachments) Fail(cmd, "VUID-VkPipelineRenderingCreateInfo-colorAttachmentCount-06055", $"{colorCount} color attachments exceed {l.maxColorAttachments}");
            }
            uint used = 0;
            for (uint s = 0; s < ci->stageCount; s++) used |= CheckStage(cmd, &ci->pStages[s], layout, "VUID-VkGraphicsPipelineCreateInfo-layout-07988", dev, check: !record);
            if (!record) CheckGraphicsStages(cmd, ci, dev);
            bool dynamicVertexInput = false;
            if (ci->pDynamicState != null)
                for (uint d = 0; d < ci->pDynamicState->dynamicStateCount; d++)
                    if (ci->pDynamicState->pDynamicStates[d] is VkDynamicState.VK_DYNAMIC_STATE_VERTEX_INPUT_EXT or VkDynamicState.VK_DYNAMIC_STATE_VERTEX_INPUT_BINDING_STRIDE)
                        dynamicVertexInput |= ci->pDynamicState->pDynamicStates[d] == VkDynamicState.VK_DYNAMIC_STATE_VERTEX_INPUT_EXT;
            ulong bindings = 0;
            var vi = ci->pVertexInputState;
            if (vi != null && !dynamicVertexInput)
                bindings = CheckVertexInput(cmd, dev, (byte*)vi->pVertexBindingDescriptions, vi->vertexBindingDescriptionCount, sizeof(VkVertexInputBindingDescription),
                    (byte*)vi->pVertexAttributeDescriptions, vi->vertexAttributeDescriptionCount, sizeof(VkVertexInputAttributeDescription));
            var vp = ci->pViewportState;
            if (vp != null && (ci->pRasterizationState == null || ci->pRasterizationState->rasterizerDiscardEnable == 0))
            {
                uint most = dev.Features.multiViewport != 0 ? l.maxViewports : 1;
                if (vp->viewportCount > most) Fail(cmd, dev.Features.multiViewport != 0 ? "VUID-VkPipelineViewportStateCreateInfo-viewportCount-01218" : "VUID-VkPipelineViewportStateCreateInfo-viewportCount-01216", $"{vp->viewportCount} viewports, at most {most}");
                if (vp->scissorCount > most) Fail(cmd, dev.Features.multiViewport != 0 ? "VUID-VkPipelineViewportStateCreateInfo-scissorCount-01219" : "VUID-VkPipelineViewportStateCreateInfo-scissorCount-01217", $"{vp->scissorCount} scissors, at most {most}");
            }
            var cb = ci->pColorBlendState;
            if (cb != null && (ci->pRasterizationState == null || ci->pRasterizationState->rasterizerDiscardEnable == 0))
            {
                if (cb->attachmentCount > l.maxColorAttachments) Fail(cmd, "VUID-VkSubpassDescription-colorAttachmentCount-00845", $"{cb->attachmentCount} blend attachments exceed {l.maxColorAttachments}");
                if (ci->renderPass.Handle != 0 && cb->attachmentCount != colorCount)
                    Fail(cmd, "VUID-VkGraphicsPipelineCreateInfo-renderPass-06042", $"{cb->attachmentCount} blend attachments for a subpass with {colorCount} colors");
            }
            if (record && ((ulong*)a[5])[i] != 0)
                _pipelines[((ulong*)a[5])[i]] = new PipelineState
                {
                    Device = dev.Handle, BindPoint = VkPipelineBindPoint.VK_PIPELINE_BIND_POINT_GRAPHICS, Layout = layout, UsedSets = used,
                    VertexBindings = bindings, DynamicVertexInput = dynamicVertexInput, ColorCount = colorCount,
                };
        }
    }
}
