using GuestIcd.Protocol;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkStructureType;

namespace GuestIcd.HostSim.Gate;

/// <summary>What a device enabled of the extensions whose commands name buffers, strides and counts
/// (multi-draw, dynamic vertex input, vertex attribute divisors, transform feedback), and their limits.</summary>
internal sealed partial class DeviceState
{
    public bool MultiDraw, VertexInputDynamicState, InstanceRateDivisor, InstanceRateZeroDivisor, TransformFeedback, GeometryStreams;
    public uint MaxMultiDrawCount, MaxVertexAttribDivisor;
    /// <summary>Physical devices behind the device (VkDeviceGroupDeviceCreateInfo; 1 without it).</summary>
    public uint GroupSize = 1;
    public VkPhysicalDeviceTransformFeedbackPropertiesEXT Xfb;
    readonly Dictionary<VkFormat, VkFormatFeatureFlags> _bufferFormats = new();

    public VkFormatFeatureFlags BufferFeatures(VkFormat format, Func<string, nint> instanceProc)
    {
        if (_bufferFormats.TryGetValue(format, out var f)) return f;
        VkFormatProperties p;
        unsafe { ((delegate* unmanaged<VkPhysicalDevice, VkFormat, VkFormatProperties*, void>)instanceProc("vkGetPhysicalDeviceFormatProperties"))(Physical, format, &p); }
        return _bufferFormats[format] = p.bufferFeatures;
    }
}

/// <summary>The extension commands that hand the driver arrays, buffers and vertex layouts, and the dynamic
/// state whose indices the driver uses into fixed arrays: each one's
/// feature must be enabled, its counts within the device's limits, its ranges inside their buffers, and
/// the draw state it relies on in place, as for the core commands (CommandBuffers.cs).</summary>
internal sealed unsafe partial class ValidUsageGate
{
    void RecordExtensionFeatures(DeviceState dev, VkDeviceCreateInfo* ci)
    {
        for (var node = (VkBaseOutStructure*)ci->pNext; node != null; node = node->pNext)
            switch (node->sType)
            {
                case VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MULTI_DRAW_FEATURES_EXT:
                    dev.MultiDraw = ((VkPhysicalDeviceMultiDrawFeaturesEXT*)node)->multiDraw != 0;
                    break;
                case VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VERTEX_INPUT_DYNAMIC_STATE_FEATURES_EXT:
                    dev.VertexInputDynamicState = ((VkPhysicalDeviceVertexInputDynamicStateFeaturesEXT*)node)->vertexInputDynamicState != 0;
                    break;
                case VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VERTEX_ATTRIBUTE_DIVISOR_FEATURES_EXT:
                {
                    var f = (VkPhysicalDeviceVertexAttributeDivisorFeaturesEXT*)node;
                    dev.InstanceRateDivisor = f->vertexAttributeInstanceRateDivisor != 0;
                    dev.InstanceRateZeroDivisor = f->vertexAttributeInstanceRateZeroDivisor != 0;
                    break;
                }
                case VK_STRUCTURE_TYPE_DEVICE_GROUP_DEVICE_CREATE_INFO:
                    dev.GroupSize = Math.Max(1u, ((VkDeviceGroupDeviceCreateInfo*)node)->physicalDeviceCount);
                    break;
                case VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_TRANSFORM_FEEDBACK_FEATURES_EXT:
                {
                    var f = (VkPhysicalDeviceTransformFeedbackFeaturesEXT*)node;
                    dev.TransformFeedback = f->transformFeedback != 0;
                    dev.GeometryStreams = f->geometryStreams != 0;
                    break;
                }
            }
        if (!dev.MultiDraw && !dev.TransformFeedback && !dev.InstanceRateDivisor) return;
        // The limits that bound these features, read only where one is enabled.
        var multi = new VkPhysicalDeviceMultiDrawPropertiesEXT { sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MULTI_DRAW_PROPERTIES_EXT };
        var divisor = new VkPhysicalDeviceVertexAttributeDivisorPropertiesEXT { sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VERTEX_ATTRIBUTE_DIVISOR_PROPERTIES_EXT };
        var xfb = new VkPhysicalDeviceTransformFeedbackPropertiesEXT { sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_TRANSFORM_FEEDBACK_PROPERTIES_EXT };
        void* chain = null;
        if (dev.MultiDraw) { multi.pNext = chain; chain = &multi; }
        if (dev.InstanceRateDivisor) { divisor.pNext = chain; chain = &divisor; }
        if (dev.TransformFeedback) { xfb.pNext = chain; chain = &xfb; }
        var props2 = new VkPhysicalDeviceProperties2 { sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, pNext = chain };
        var get = _instanceProc("vkGetPhysicalDeviceProperties2");
        if (get == 0) get = _instanceProc("vkGetPhysicalDeviceProperties2KHR");
        // Without the query the limits stay 0 and every use of the feature is refused: safe, and precise in the log.
        if (get != 0) ((delegate* unmanaged<VkPhysicalDevice, VkPhysicalDeviceProperties2*, void>)get)(dev.Physical, &props2);
        dev.MaxMultiDrawCount = multi.maxMultiDrawCount;
        dev.MaxVertexAttribDivisor = divisor.maxVertexAttribDivisor;
        dev.Xfb = xfb;
    }

    /// <summary>Returns false for commands this file does not model.</summary>
    bool CheckExtensionRecording(int cmd, ulong* a, CommandBufferState cb, DeviceState dev)
    {
        switch (cmd)
        {
            case Tables.vkCmdDrawMultiEXT or Tables.vkCmdDrawMultiIndexedEXT:
            {
                bool indexed = cmd == Tables.vkCmdDrawMultiIndexedEXT;
                if (!dev.MultiDraw) Fail(cmd, $"VUID-{N(cmd)}-None-04933", "the multiDraw feature is not enabled");
                uint count = (uint)a[1];
                if (count > dev.MaxMultiDrawCount) Fail(cmd, $"VUID-{N(cmd)}-drawCount-04934", $"drawCount {count} exceeds maxMultiDrawCount {dev.MaxMultiDrawCount}");
                CheckDraw(cmd, cb, indexed);
                if (indexed && a[2] != 0)
                {
                    // The decoder packed the array and set the stride to its element size (CommandCodec.DecodeRequest).
                    var draws = (VkMultiDrawIndexedInfoEXT*)a[2];
                    for (uint i = 0; i < count; i++)
                        if (((ulong)draws[i].firstIndex + draws[i].indexCount) * cb.IndexSize > cb.IndexBytes)
                            Fail(cmd, "VUID-vkCmdDrawMultiIndexedEXT-firstIndex-04938", $"draw {i}: indices [{draws[i].firstIndex}, +{draws[i].indexCount}) run past the {cb.IndexBytes} bytes of the bound index buffer");
                }
                return true;
            }
            case Tables.vkCmdSetVertexInputEXT:
                if (!dev.VertexInputDynamicState) Fail(cmd, "VUID-vkCmdSetVertexInputEXT-None-08546", "the vertexInputDynamicState feature is not enabled");
                cb.DynamicVertexBindings = CheckVertexInput(cmd, dev, (byte*)a[2], (uint)a[1], sizeof(VkVertexInputBindingDescription2EXT),
                    (byte*)a[4], (uint)a[3], sizeof(VkVertexInputAttributeDescription2EXT));
                cb.VertexInputSet = true;
                return true;
            case Tables.vkCmdBindTransformFeedbackBuffersEXT:
            {
                RequireTransformFeedback(cmd, dev);
                if (cb.XfbActive) Fail(cmd, "VUID-vkCmdBindTransformFeedbackBuffersEXT-None-02365", "transform feedback is active");
                uint first = (uint)a[1], count = (uint)a[2];
                CheckXfbBindings(cmd, first, count, dev, "VUID-vkCmdBindTransformFeedbackBuffersEXT-firstBinding-02356", "VUID-vkCmdBindTransformFeedbackBuffersEXT-firstBinding-02357");
                var buffers = (ulong*)a[3];
                var offsets = (ulong*)a[4];
                var sizes = (ulong*)a[5];
                for (uint i = 0; i < count; i++)
                {
                    var b = UsedBuffer(cmd, buffers[i], "pBuffers");
                    if ((b.Usage & VkBufferUsageFlags.VK_BUFFER_USAGE_TRANSFORM_FEEDBACK_BUFFER_BIT_EXT) == 0)
                        Fail(cmd, "VUID-vkCmdBindTransformFeedbackBuffersEXT-pBuffers-02360", "the buffer lacks VK_BUFFER_USAGE_TRANSFORM_FEEDBACK_BUFFER_BIT_EXT");
                    if (offsets[i] >= b.Size) Fail(cmd, "VUID-vkCmdBindTransformFeedbackBuffersEXT-pOffsets-02358", $"offset {offsets[i]} is outside the {b.Size}-byte buffer");
                    if (offsets[i] % 4 != 0) Fail(cmd, "VUID-vkCmdBindTransformFeedbackBuffersEXT-pOffsets-02359", $"offset {offsets[i]} is not a multiple of 4");
                    if (sizes != null && sizes[i] != VkConstants.VK_WHOLE_SIZE)
                    {
                        if (sizes[i] > dev.Xfb.maxTransformFeedbackBufferSize)
                            Fail(cmd, "VUID-vkCmdBindTransformFeedbackBuffersEXT-pSize-02361", $"size {sizes[i]} exceeds maxTransformFeedbackBufferSize {dev.Xfb.maxTransformFeedbackBufferSize}");
                        if (sizes[i] > b.Size - offsets[i])
                            Fail(cmd, "VUID-vkCmdBindTransformFeedbackBuffersEXT-pSizes-02362", $"[{offsets[i]}, +{sizes[i]}) runs past the {b.Size}-byte buffer");
                    }
                }
                return true;
            }
            case Tables.vkCmdBeginTransformFeedbackEXT or Tables.vkCmdEndTransformFeedbackEXT:
            {
                RequireTransformFeedback(cmd, dev);
                bool begin = cmd == Tables.vkCmdBeginTransformFeedbackEXT;
                if (begin == cb.XfbActive)
                    Fail(cmd, begin ? "VUID-vkCmdBeginTransformFeedbackEXT-None-02367" : "VUID-vkCmdEndTransformFeedbackEXT-None-02375", begin ? "transform feedback is already active" : "transform feedback is not active");
                uint first = (uint)a[1], count = (uint)a[2];
                CheckXfbBindings(cmd, first, count, dev, begin ? "VUID-vkCmdBeginTransformFeedbackEXT-firstCounterBuffer-02368" : "VUID-vkCmdEndTransformFeedbackEXT-firstCounterBuffer-02376",
                    begin ? "VUID-vkCmdBeginTransformFeedbackEXT-firstCounterBuffer-02369" : "VUID-vkCmdEndTransformFeedbackEXT-firstCounterBuffer-02377");
                var counters = (ulong*)a[3];
                var offsets = (ulong*)a[4];
                for (uint i = 0; counters != null && i < count; i++)
                {
                    if (counters[i] == 0) continue; // the spec's "no counter": the driver starts from 0
                    var b = UsedBuffer(cmd, counters[i], "pCounterBuffers");
                    if ((b.Usage & VkBufferUsageFlags.VK_BUFFER_USAGE_TRANSFORM_FEEDBACK_COUNTER_BUFFER_BIT_EXT) == 0)
                        Fail(cmd, begin ? "VUID-vkCmdBeginTransformFeedbackEXT-pCounterBuffers-02372" : "VUID-vkCmdEndTransformFeedbackEXT-pCounterBuffers-02380", "the counter buffer lacks VK_BUFFER_USAGE_TRANSFORM_FEEDBACK_COUNTER_BUFFER_BIT_EXT");
                    ulong at = offsets == null ? 0 : offsets[i];
                    if (at >= b.Size || 4 > b.Size - at)
                        Fail(cmd, begin ? "VUID-vkCmdBeginTransformFeedbackEXT-pCounterBufferOffsets-02370" : "VUID-vkCmdEndTransformFeedbackEXT-pCounterBufferOffsets-02378", $"the 4-byte counter at {at} is outside the {b.Size}-byte buffer");
                }
                return true;
            }
            case Tables.vkCmdDrawIndirectByteCountEXT:
            {
                RequireTransformFeedback(cmd, dev);
                if (dev.Xfb.transformFeedbackDraw == 0) Fail(cmd, "VUID-vkCmdDrawIndirectByteCountEXT-transformFeedbackDraw-02288", "the device lacks transformFeedbackDraw");
                CheckDraw(cmd, cb, false);
                var b = UsedBuffer(cmd, a[3], "counterBuffer");
                if ((b.Usage & VkBufferUsageFlags.VK_BUFFER_USAGE_INDIRECT_BUFFER_BIT) == 0) Fail(cmd, "VUID-vkCmdDrawIndirectByteCountEXT-counterBuffer-02290", "the counter buffer lacks VK_BUFFER_USAGE_INDIRECT_BUFFER_BIT");
                if (a[4] % 4 != 0 || a[4] >= b.Size || 4 > b.Size - a[4]) Fail(cmd, "VUID-vkCmdDrawIndirectByteCountEXT-counterBufferOffset-04568", $"the 4-byte count at {a[4]} is not aligned or outside the {b.Size}-byte buffer");
                uint stride = (uint)a[6];
                if (stride == 0 || stride > dev.Xfb.maxTransformFeedbackBufferDataStride || stride % 4 != 0)
                    Fail(cmd, "VUID-vkCmdDrawIndirectByteCountEXT-vertexStride-02289", $"vertexStride {stride} is 0, unaligned, or above maxTransformFeedbackBufferDataStride {dev.Xfb.maxTransformFeedbackBufferDataStride}");
                return true;
            }
            // Dynamic state with per-attachment or per-viewport arrays: drivers keep them in fixed arrays of the
            // limit's size (lavapipe: 8 color attachments), so a range past the limit writes past the array.
            case Tables.vkCmdSetColorWriteEnableEXT:
                if ((uint)a[1] > dev.Limits.maxColorAttachments)
                    Fail(cmd, "VUID-vkCmdSetColorWriteEnableEXT-attachmentCount-06656", $"{(uint)a[1]} attachments exceed maxColorAttachments {dev.Limits.maxColorAttachments}");
                return true;
            case Tables.vkCmdSetColorBlendEnableEXT or Tables.vkCmdSetColorBlendEquationEXT or Tables.vkCmdSetColorWriteMaskEXT or Tables.vkCmdSetColorBlendAdvancedEXT:
                if ((ulong)(uint)a[1] + (uint)a[2] > dev.Limits.maxColorAttachments)
                    Fail(cmd, "limit maxColorAttachments", $"attachments [{(uint)a[1]}, +{(uint)a[2]}) of maxColorAttachments {dev.Limits.maxColorAttachments}");
                return true;
            case Tables.vkCmdSetViewportWScalingNV or Tables.vkCmdSetViewportSwizzleNV or Tables.vkCmdSetExclusiveScissorNV:
                if ((ulong)(uint)a[1] + (uint)a[2] > dev.Limits.maxViewports)
                    Fail(cmd, cmd == Tables.vkCmdSetViewportWScalingNV ? "VUID-vkCmdSetViewportWScalingNV-firstViewport-01324" : cmd == Tables.vkCmdSetExclusiveScissorNV ? "VUID-vkCmdSetExclusiveScissorNV-firstExclusiveScissor-02034" : "limit maxViewports",
                        $"viewports [{(uint)a[1]}, +{(uint)a[2]}) of maxViewports {dev.Limits.maxViewports}");
                return true;
            case Tables.vkCmdSetPatchControlPointsEXT:
                if ((uint)a[1] == 0 || (uint)a[1] > dev.Limits.maxTessellationPatchSize)
                    Fail(cmd, "VUID-vkCmdSetPatchControlPointsEXT-patchControlPoints-04874", $"{(uint)a[1]} control points, not in [1, maxTessellationPatchSize {dev.Limits.maxTessellationPatchSize}]");
                return true;
            case Tables.vkCmdSetRasterizationStreamEXT:
                RequireTransformFeedback(cmd, dev);
                if ((uint)a[1] >= dev.Xfb.maxTransformFeedbackStreams)
                    Fail(cmd, "VUID-vkCmdSetRasterizationStreamEXT-rasterizationStream-07398", $"stream {(uint)a[1]} of maxTransformFeedbackStreams {dev.Xfb.maxTransformFeedbackStreams}");
                return true;
            case Tables.vkCmdSetDeviceMask:
                if ((uint)a[1] == 0) Fail(cmd, "VUID-vkCmdSetDeviceMask-deviceMask-00110", "deviceMask is 0");
                if (((uint)a[1] >> (int)Math.Min(dev.GroupSize, 31u)) != 0) Fail(cmd, "VUID-vkCmdSetDeviceMask-deviceMask-00108", $"deviceMask 0x{(uint)a[1]:X} names devices beyond the group's {dev.GroupSize}");
                return true;
            case Tables.vkCmdBeginQueryIndexedEXT or Tables.vkCmdEndQueryIndexedEXT:
            {
                var q = Query(cmd, a[1], (uint)a[2], 1, cmd == Tables.vkCmdBeginQueryIndexedEXT ? "VUID-vkCmdBeginQueryIndexedEXT-query-00802" : "VUID-vkCmdEndQueryIndexedEXT-query-02343");
                uint index = (uint)a[cmd == Tables.vkCmdBeginQueryIndexedEXT ? 4 : 3];
                if (q.Type == VkQueryType.VK_QUERY_TYPE_TRANSFORM_FEEDBACK_STREAM_EXT ? index >= dev.Xfb.maxTransformFeedbackStreams : index != 0)
                    Fail(cmd, $"VUID-{N(cmd)}-queryType-0{(cmd == Tables.vkCmdBeginQueryIndexedEXT ? "2339" : "2346")}", $"index {index} for a {q.Type} query (streams: {dev.Xfb.maxTransformFeedbackStreams})");
                return true;
            }
        }
        return false;
    }

    void RecordExtensionRecording(int cmd, CommandBufferState cb)
    {
        if (cmd == Tables.vkCmdBeginTransformFeedbackEXT) cb.XfbActive = true;
        else if (cmd == Tables.vkCmdEndTransformFeedbackEXT) cb.XfbActive = false;
    }

    static void RequireTransformFeedback(int cmd, DeviceState dev)
    {
        if (!dev.TransformFeedback) Fail(cmd, $"VUID-{N(cmd)}-transformFeedback-02355", "the transformFeedback feature is not enabled");
    }

    static void CheckXfbBindings(int cmd, uint first, uint count, DeviceState dev, string vuidFirst, string vuidRange)
    {
        uint most = dev.Xfb.maxTransformFeedbackBuffers;
        if (first >= most) Fail(cmd, vuidFirst, $"first binding {first} of maxTransformFeedbackBuffers {most}");
        if ((ulong)first + count > most) Fail(cmd, vuidRange, $"bindings [{first}, +{count}) of maxTransformFeedbackBuffers {most}");
    }

    /// <summary>A vertex layout, from a pipeline's VkPipelineVertexInputStateCreateInfo or from
    /// vkCmdSetVertexInputEXT: both structs' members from <c>binding</c> on are laid out alike, so one walk
    /// reads either (<paramref name="bindingSize"/> and <paramref name="attributeSize"/> are the element sizes).
    /// Returns the bindings it describes (bit n: binding n).</summary>
    ulong CheckVertexInput(int cmd, DeviceState dev, byte* bindings, uint bindingCount, int bindingSize, byte* attributes, uint attributeCount, int attributeSize)
    {
        bool dynamic = cmd == Tables.vkCmdSetVertexInputEXT;
        int skip = dynamic ? 16 : 0; // sType and pNext of the *2EXT structs
        string bs = dynamic ? "VkVertexInputBindingDescription2EXT" : "VkVertexInputBindingDescription";
        string at = dynamic ? "VkVertexInputAttributeDescription2EXT" : "VkVertexInputAttributeDescription";
        string owner = dynamic ? "vkCmdSetVertexInputEXT" : "VkPipelineVertexInputStateCreateInfo";
        ref readonly var l = ref dev.Limits;
        if (bindingCount > l.maxVertexInputBindings)
            Fail(cmd, dynamic ? "VUID-vkCmdSetVertexInputEXT-vertexBindingDescriptionCount-04791" : "VUID-VkPipelineVertexInputStateCreateInfo-vertexBindingDescriptionCount-00613", $"{bindingCount} bindings exceed {l.maxVertexInputBindings}");
        if (attributeCount > l.maxVertexInputAttributes)
            Fail(cmd, dynamic ? "VUID-vkCmdSetVertexInputEXT-vertexAttributeDescriptionCount-04792" : "VUID-VkPipelineVertexInputStateCreateInfo-vertexAttributeDescriptionCount-00614", $"{attributeCount} attributes exceed {l.maxVertexInputAttributes}");
        ulong described = 0;
        for (uint i = 0; i < bindingCount; i++)
        {
            var bd = (VkVertexInputBindingDescription*)(bindings + i * (ulong)bindingSize + (ulong)skip);
            if (bd->binding >= l.maxVertexInputBindings || bd->binding >= 64) Fail(cmd, dynamic ? $"VUID-{bs}-binding-04796" : $"VUID-{bs}-binding-00618", $"binding {bd->binding} of {l.maxVertexInputBindings}");
            if (bd->stride > l.maxVertexInputBindingStride) Fail(cmd, dynamic ? $"VUID-{bs}-stride-04797" : $"VUID-{bs}-stride-00619", $"stride {bd->stride} exceeds {l.maxVertexInputBindingStride}");
            if ((described & (1UL << (int)bd->binding)) != 0) Fail(cmd, dynamic ? $"VUID-{owner}-pVertexBindingDescriptions-04794" : $"VUID-{owner}-pVertexBindingDescriptions-00616", $"binding {bd->binding} named twice");
            described |= 1UL << (int)bd->binding;
            if (dynamic)
            {
                uint divisor = ((VkVertexInputBindingDescription2EXT*)(bindings + i * (ulong)bindingSize))->divisor;
                if (divisor == 0 && !dev.InstanceRateZeroDivisor) Fail(cmd, $"VUID-{bs}-divisor-04798", "divisor 0 without vertexAttributeInstanceRateZeroDivisor");
                if (divisor > 1 && !dev.InstanceRateDivisor) Fail(cmd, $"VUID-{bs}-divisor-04799", $"divisor {divisor} without vertexAttributeInstanceRateDivisor");
                if (divisor > 1 && divisor > dev.MaxVertexAttribDivisor) Fail(cmd, $"VUID-{bs}-divisor-06226", $"divisor {divisor} exceeds maxVertexAttribDivisor {dev.MaxVertexAttribDivisor}");
                if (divisor != 1 && bd->inputRate != VkVertexInputRate.VK_VERTEX_INPUT_RATE_INSTANCE) Fail(cmd, $"VUID-{bs}-divisor-06227", $"divisor {divisor} for a per-vertex binding");
            }
        }
        ulong locations = 0;
        for (uint k = 0; k < attributeCount; k++)
        {
            var ad = (VkVertexInputAttributeDescription*)(attributes + k * (ulong)attributeSize + (ulong)skip);
            if (ad->location >= l.maxVertexInputAttributes || ad->location >= 64) Fail(cmd, dynamic ? $"VUID-{at}-location-06228" : $"VUID-{at}-location-00620", $"location {ad->location} of {l.maxVertexInputAttributes}");
            if (ad->binding >= 64 || (described & (1UL << (int)ad->binding)) == 0) Fail(cmd, dynamic ? $"VUID-{owner}-binding-04793" : $"VUID-{owner}-binding-00615", $"attribute {ad->location} reads binding {ad->binding}, which is not described");
            if (ad->offset > l.maxVertexInputAttributeOffset) Fail(cmd, dynamic ? $"VUID-{at}-offset-06230" : $"VUID-{at}-offset-00622", $"offset {ad->offset} exceeds {l.maxVertexInputAttributeOffset}");
            if ((locations & (1UL << (int)ad->location)) != 0) Fail(cmd, dynamic ? $"VUID-{owner}-pVertexAttributeDescriptions-04795" : $"VUID-{owner}-pVertexAttributeDescriptions-00617", $"location {ad->location} named twice");
            locations |= 1UL << (int)ad->location;
            if ((dev.BufferFeatures(ad->format, _instanceProc) & VkFormatFeatureFlags.VK_FORMAT_FEATURE_VERTEX_BUFFER_BIT) == 0)
                Fail(cmd, dynamic ? $"VUID-{at}-format-04805" : $"VUID-{at}-format-00623", $"format {ad->format} is not a vertex buffer format on this device");
        }
        return described;
    }
}
