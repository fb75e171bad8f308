using GuestIcd.Protocol;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkDescriptorType;

namespace GuestIcd.HostSim.Gate;

internal readonly record struct LayoutBinding(uint Binding, VkDescriptorType Type, uint Count, VkShaderStageFlags Stages, bool ImmutableSamplers);

internal sealed class SetLayoutState
{
    public ulong Device;
    /// <summary>Sorted by binding number (dynamic offsets follow that order).</summary>
    public LayoutBinding[] Bindings = [];
    public int DynamicCount;
    /// <summary>Two layouts with the same signature are "identically defined" (the compatibility rule).</summary>
    public ulong Signature;

    public int IndexOf(uint binding)
    {
        for (int i = 0; i < Bindings.Length; i++) if (Bindings[i].Binding == binding) return i;
        return -1;
    }
}

internal sealed class SetState(ulong device, ulong pool, SetLayoutState layout, uint variableCount)
{
    public readonly ulong Device = device, Pool = pool;
    public readonly SetLayoutState Layout = layout;
    public readonly uint VariableCount = variableCount;
    /// <summary>Per dynamic descriptor, in binding order: the buffer's size and the written offset and range.</summary>
    public readonly (ulong Size, ulong Offset, ulong Range)[] Dynamic = new (ulong, ulong, ulong)[layout.DynamicCount];

    /// <summary>What each descriptor holds (two handles: a combined image sampler has both), flat in
    /// binding order; a slot whose object was destroyed is dead until it is written again.</summary>
    public readonly int[] Prefix = Prefixes(layout, variableCount);
    public ulong[] Slots = [];
    public bool[] DeadSlots = [];
    public int DeadCount;

    static int[] Prefixes(SetLayoutState layout, uint variableCount)
    {
        var p = new int[layout.Bindings.Length + 1];
        for (int i = 0; i < layout.Bindings.Length; i++)
        {
            uint c = i == layout.Bindings.Length - 1 && variableCount != uint.MaxValue ? variableCount : layout.Bindings[i].Count;
            if (layout.Bindings[i].Type == VK_DESCRIPTOR_TYPE_INLINE_UNIFORM_BLOCK) c = 0;
            p[i + 1] = (int)Math.Min((long)p[i] + c, 1 << 20);
        }
        return p;
    }

    public void Hold(int bindingIndex, uint element, ulong first, ulong second)
    {
        int slot = Prefix[bindingIndex] + (int)element;
        if (slot >= Prefix[^1]) return;
        if (Slots.Length == 0) { Slots = new ulong[2 * Prefix[^1]]; DeadSlots = new bool[Prefix[^1]]; }
        if (DeadSlots[slot]) { DeadSlots[slot] = false; DeadCount--; }
        Slots[2 * slot] = first;
        Slots[2 * slot + 1] = second;
    }

    /// <returns>Whether the set held <paramref name="handle"/>.</returns>
    public bool Kill(ulong handle)
    {
        bool held = false;
        for (int s = 0; s < DeadSlots.Length; s++)
            if (!DeadSlots[s] && (Slots[2 * s] == handle || Slots[2 * s + 1] == handle)) { DeadSlots[s] = true; DeadCount++; held = true; }
        return held;
    }

    public uint CountOf(int index) =>
        index == Layout.Bindings.Length - 1 && VariableCount != uint.MaxValue ? VariableCount : Layout.Bindings[index].Count;
}

internal sealed class PipelineLayoutState
{
    public ulong Device;
    public SetLayoutState[] Sets = [];
    public (uint Offset, uint Size, VkShaderStageFlags Stages)[] PushRanges = [];
}

/// <summary>Descriptor set layouts, sets and pipeline layouts: layouts against the device's per-stage and
/// per-layout limits (the driver sizes fixed arrays by them), writes and copies inside the set's bindings
/// with buffer ranges inside their buffers, and push constants inside the bound layout's ranges.</summary>
internal sealed unsafe partial class ValidUsageGate
{
    readonly Dictionary<ulong, SetLayoutState> _setLayouts = new();
    readonly Dictionary<ulong, SetState> _sets = new();
    readonly Dictionary<ulong, PipelineLayoutState> _pipelineLayouts = new();

    bool CheckCreateSetLayout(int cmd, ulong* a, ref ulong result)
    {
        var ci = (VkDescriptorSetLayoutCreateInfo*)a[1];
        for (uint i = 0; i < ci->bindingCount; i++)
            for (uint j = i + 1; j < ci->bindingCount; j++)
                if (ci->pBindings[i].binding == ci->pBindings[j].binding)
                    Fail(cmd, "VUID-VkDescriptorSetLayoutCreateInfo-binding-00279", $"binding {ci->pBindings[i].binding} named twice");
        // The driver sizes (and zeroes) the layout's storage by its highest binding number and its descriptor
        // count: a fuzzed binding number of 2^26 made lavapipe's vkCreateDescriptorSetLayout zero gigabytes
        // (seconds of page faults, a hang for the fuzzer). Both bounds are far above what applications use.
        ulong total = 0;
        uint highest = 0;
        for (uint i = 0; i < ci->bindingCount; i++) { total += ci->pBindings[i].descriptorCount; highest = Math.Max(highest, ci->pBindings[i].binding); }
        if (total > MaxLayoutDescriptors || highest > MaxLayoutBinding)
        {
            Log($"vkCreateDescriptorSetLayout: {total} descriptors, highest binding {highest}; hostsim serves at most {MaxLayoutDescriptors} descriptors and binding numbers up to {MaxLayoutBinding} per set layout (VK_ERROR_OUT_OF_HOST_MEMORY)");
            result = Result(VkResult.VK_ERROR_OUT_OF_HOST_MEMORY);
            return false;
        }
        return true;
    }

    const ulong MaxLayoutDescriptors = 1 << 20;
    const uint MaxLayoutBinding = 1 << 16;

    void RecordCreateSetLayout(ulong* a, DeviceState dev)
    {
        ulong h = *(ulong*)a[3];
        if (h == 0) return;
        var ci = (VkDescriptorSetLayoutCreateInfo*)a[1];
        var bindings = new LayoutBinding[ci->bindingCount];
        for (uint i = 0; i < ci->bindingCount; i++)
        {
            var b = ci->pBindings[i];
            bindings[i] = new LayoutBinding(b.binding, b.descriptorType, b.descriptorCount, b.stageFlags, b.pImmutableSamplers != null);
        }
        Array.Sort(bindings, (x, y) => x.Binding.CompareTo(y.Binding));
        var hash = new HashCode();
        int dynamic = 0;
        foreach (var b in bindings)
        {
            hash.Add(b.Binding); hash.Add(b.Type); hash.Add(b.Count); hash.Add(b.Stages);
            if (b.Type is VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER_DYNAMIC or VK_DESCRIPTOR_TYPE_STORAGE_BUFFER_DYNAMIC) dynamic += (int)b.Count;
        }
        hash.Add(ci->flags);
        _setLayouts[h] = new SetLayoutState { Device = dev.Handle, Bindings = bindings, DynamicCount = dynamic, Signature = (ulong)(uint)hash.ToHashCode() | (ulong)bindings.Length << 32 };
    }

    void CheckCreatePipelineLayout(int cmd, ulong* a, DeviceState dev)
    {
        var ci = (VkPipelineLayoutCreateInfo*)a[1];
        ref readonly var l = ref dev.Limits;
        if (ci->setLayoutCount > l.maxBoundDescriptorSets)
            Fail(cmd, "VUID-VkPipelineLayoutCreateInfo-setLayoutCount-00286", $"{ci->setLayoutCount} set layouts exceed maxBoundDescriptorSets {l.maxBoundDescriptorSets}");
        VkShaderStageFlags seen = 0;
        for (uint i = 0; i < ci->pushConstantRangeCount; i++)
        {
            var r = ci->pPushConstantRanges[i];
            if (r.offset >= l.maxPushConstantsSize) Fail(cmd, "VUID-VkPushConstantRange-offset-00294", $"offset {r.offset} is not below maxPushConstantsSize {l.maxPushConstantsSize}");
            if (r.offset % 4 != 0) Fail(cmd, "VUID-VkPushConstantRange-offset-00295", $"offset {r.offset} is not a multiple of 4");
            if (r.size == 0) Fail(cmd, "VUID-VkPushConstantRange-size-00296", "size is 0");
            if (r.size % 4 != 0) Fail(cmd, "VUID-VkPushConstantRange-size-00297", $"size {r.size} is not a multiple of 4");
            if (r.size > l.maxPushConstantsSize - r.offset) Fail(cmd, "VUID-VkPushConstantRange-size-00298", $"[{r.offset}, +{r.size}) exceeds maxPushConstantsSize {l.maxPushConstantsSize}");
            if (r.stageFlags == 0) Fail(cmd, "VUID-VkPushConstantRange-stageFlags-requiredbitmask", "stageFlags is 0");
            if ((seen & r.stageFlags) != 0) Fail(cmd, "VUID-VkPipelineLayoutCreateInfo-pPushConstantRanges-00292", "two push-constant ranges share a stage");
            seen |= r.stageFlags;
        }
        // Per-stage and per-layout descriptor counts: the driver keeps fixed-size tables of these.
        Span<uint> stage = stackalloc uint[7 * 6];
        Span<uint> total = stackalloc uint[8];
        for (uint s = 0; s < ci->setLayoutCount; s++)
        {
            ulong h = ci->pSetLayouts[s].Handle;
            if (h == 0) continue; // graphics pipeline libraries allow holes
            var sl = Lookup(_setLayouts, cmd, h, "pSetLayouts");
            foreach (var b in sl.Bindings)
            {
                int kind = b.Type switch
                {
                    VK_DESCRIPTOR_TYPE_SAMPLER => 0,
                    VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER => 6,
                    VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER or VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER_DYNAMIC => 1,
                    VK_DESCRIPTOR_TYPE_STORAGE_BUFFER or VK_DESCRIPTOR_TYPE_STORAGE_BUFFER_DYNAMIC => 2,
                    VK_DESCRIPTOR_TYPE_SAMPLED_IMAGE or VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER => 3,
                    VK_DESCRIPTOR_TYPE_STORAGE_IMAGE or VK_DESCRIPTOR_TYPE_STORAGE_TEXEL_BUFFER => 4,
                    VK_DESCRIPTOR_TYPE_INPUT_ATTACHMENT => 5,
                    _ => -1,
                };
                if (kind < 0) continue;
                for (int st = 0; st < 6; st++)
                {
                    if (((uint)b.Stages & (1u << st)) == 0 && ((uint)b.Stages & 0x3F) != 0) continue;
                    if (kind == 6) { stage[st * 7 + 0] += b.Count; stage[st * 7 + 3] += b.Count; }
                    else stage[st * 7 + kind] += b.Count;
                }
                if (b.Type == VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER_DYNAMIC) total[0] += b.Count;
                if (b.Type == VK_DESCRIPTOR_TYPE_STORAGE_BUFFER_DYNAMIC) total[1] += b.Count;
            }
        }
        ReadOnlySpan<uint> max = [l.maxPerStageDescriptorSamplers, l.maxPerStageDescriptorUniformBuffers, l.maxPerStageDescriptorStorageBuffers,
            l.maxPerStageDescriptorSampledImages, l.maxPerStageDescriptorStorageImages, l.maxPerStageDescriptorInputAttachments];
        ReadOnlySpan<string> vuid = ["03016", "03017", "03018", "03019", "03020", "03021"];
        for (int st = 0; st < 6; st++)
            for (int k = 0; k < 6; k++)
                if (stage[st * 7 + k] > max[k])
                    Fail(cmd, "VUID-VkPipelineLayoutCreateInfo-descriptorType-" + vuid[k], $"stage {st} has {stage[st * 7 + k]} descriptors of a kind limited to {max[k]}");
        if (total[0] > l.maxDescriptorSetUniformBuffersDynamic)
            Fail(cmd, "VUID-VkPipelineLayoutCreateInfo-descriptorType-03029", $"{total[0]} dynamic uniform buffers exceed {l.maxDescriptorSetUniformBuffersDynamic}");
        if (total[1] > l.maxDescriptorSetStorageBuffersDynamic)
            Fail(cmd, "VUID-VkPipelineLayoutCreateInfo-descriptorType-03031", $"{total[1]} dynamic storage buffers exceed {l.maxDescriptorSetStorageBuffersDynamic}");
    }

    void RecordCreatePipelineLayout(ulong* a, DeviceState dev)
    {
        ulong h = *(ulong*)a[3];
        if (h == 0) return;
        var ci = (VkPipelineLayoutCreateInfo*)a[1];
        var sets = new SetLayoutState[ci->setLayoutCount];
        for (uint s = 0; s < ci->setLayoutCount; s++)
            sets[s] = _setLayouts.TryGetValue(ci->pSetLayouts[s].Handle, out var sl) ? sl : new SetLayoutState { Device = dev.Handle };
        var ranges = new (uint, uint, VkShaderStageFlags)[ci->pushConstantRangeCount];
        for (uint i = 0; i < ci->pushConstantRangeCount; i++)
            ranges[i] = (ci->pPushConstantRanges[i].offset, ci->pPushConstantRanges[i].size, ci->pPushConstantRanges[i].stageFlags);
        _pipelineLayouts[h] = new PipelineLayoutState { Device = dev.Handle, Sets = sets, PushRanges = ranges };
    }

    void RecordAllocateSets(ulong* a, DeviceState dev)
    {
        var ai = (VkDescriptorSetAllocateInfo*)a[1];
        var sets = (ulong*)a[2];
        VkDescriptorSetVariableDescriptorCountAllocateInfo* variable = null;
        for (var n = (VkBaseInStructure*)ai->pNext; n != null; n = n->pNext)
            if (n->sType == VkStructureType.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_VARIABLE_DESCRIPTOR_COUNT_ALLOCATE_INFO)
                variable = (VkDescriptorSetVariableDescriptorCountAllocateInfo*)n;
        for (uint i = 0; i < ai->descriptorSetCount; i++)
        {
            if (sets[i] == 0 || !_setLayouts.TryGetValue(ai->pSetLayouts[i].Handle, out var layout)) continue;
            uint vc = variable != null && variable->descriptorSetCount == ai->descriptorSetCount ? variable->pDescriptorCounts[i] : uint.MaxValue;
            _sets[sets[i]] = new SetState(dev.Handle, ai->descriptorPool.Handle, layout, vc);
        }
    }

    void CheckAllocateSets(int cmd, ulong* a)
    {
        var ai = (VkDescriptorSetAllocateInfo*)a[1];
        for (var n = (VkBaseInStructure*)ai->pNext; n != null; n = n->pNext)
        {
            if (n->sType != VkStructureType.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_VARIABLE_DESCRIPTOR_COUNT_ALLOCATE_INFO) continue;
            var v = (VkDescriptorSetVariableDescriptorCountAllocateInfo*)n;
            if (v->descriptorSetCount != 0 && v->descriptorSetCount != ai->descriptorSetCount)
                Fail(cmd, "VUID-VkDescriptorSetVariableDescriptorCountAllocateInfo-descriptorSetCount-03045", "counts for a different number of sets");
            for (uint i = 0; i < v->descriptorSetCount; i++)
            {
                var layout = Lookup(_setLayouts, cmd, ai->pSetLayouts[i].Handle, "pSetLayouts");
                if (layout.Bindings.Length == 0 || v->pDescriptorCounts[i] > layout.Bindings[^1].Count)
                    Fail(cmd, "VUID-VkDescriptorSetVariableDescriptorCountAllocateInfo-pSetLayouts-03046", $"variable count {v->pDescriptorCounts[i]} exceeds the binding's {(layout.Bindings.Length == 0 ? 0 : layout.Bindings[^1].Count)}");
            }
        }
    }

    /// <summary>Walks [binding, element) over <paramref name="count"/> descriptors, rolling into the next
    /// bindings as the spec allows, and calls back with (binding index, element) for each.</summary>
    void Span(int cmd, SetState set, uint binding, uint element, uint count, VkDescriptorType? type, string vuid, bool each)
    {
        int bi = set.Layout.IndexOf(binding);
        if (bi < 0) Fail(cmd, "VUID-VkWriteDescriptorSet-dstBinding-00315", $"binding {binding} is not in the set's layout");
        var first = set.Layout.Bindings[bi];
        if (type is { } t && first.Type != t)
            Fail(cmd, "VUID-VkWriteDescriptorSet-descriptorType-00319", $"binding {binding} is {first.Type}, written as {t}");
        bool inline = first.Type == VK_DESCRIPTOR_TYPE_INLINE_UNIFORM_BLOCK;
        uint done = 0;
        while (done < count)
        {
            if (bi >= set.Layout.Bindings.Length) Fail(cmd, vuid, $"{count} descriptors from binding {binding}[{element}] run past the set's layout");
            var b = set.Layout.Bindings[bi];
            if (b.Type != first.Type || b.Stages != first.Stages) Fail(cmd, vuid, $"the update rolls from binding {first.Binding} into binding {b.Binding} of another type or stages");
            uint have = set.CountOf(bi);
            if (element >= have) { if (have != 0 && !inline) Fail(cmd, vuid, $"element {element} of binding {b.Binding}, which has {have}"); element -= have; bi++; continue; }
            uint take = Math.Min(have - element, count - done);
            if (inline && take != count - done) Fail(cmd, vuid, "an inline uniform block update runs past its binding");
            if (each) for (uint k = 0; k < take; k++) CheckDescriptor(cmd, set, bi, element + k, done + k);
            done += take;
            element = 0;
            bi++;
        }
    }

    // The write whose descriptors Span is visiting (one at a time: the session is single-threaded).
    VkWriteDescriptorSet* _write;
    DeviceState? _writeDevice;

    void CheckUpdateSets(int cmd, ulong* a, DeviceState dev)
    {
        var writes = (VkWriteDescriptorSet*)a[2];
        for (uint i = 0; i < (uint)a[1]; i++)
        {
            var w = &writes[i];
            var set = Lookup(_sets, cmd, w->dstSet.Handle, "dstSet");
            CheckWrite(cmd, set, w, dev);
        }
        var copies = (VkCopyDescriptorSet*)a[4];
        for (uint i = 0; i < (uint)a[3]; i++)
        {
            var c = copies[i];
            var src = Lookup(_sets, cmd, c.srcSet.Handle, "srcSet");
            var dst = Lookup(_sets, cmd, c.dstSet.Handle, "dstSet");
            int sb = src.Layout.IndexOf(c.srcBinding), db = dst.Layout.IndexOf(c.dstBinding);
            if (sb < 0) Fail(cmd, "VUID-VkCopyDescriptorSet-srcBinding-00345", $"binding {c.srcBinding} is not in the source layout");
            if (db < 0) Fail(cmd, "VUID-VkCopyDescriptorSet-dstBinding-00347", $"binding {c.dstBinding} is not in the destination layout");
            if (src.Layout.Bindings[sb].Type != dst.Layout.Bindings[db].Type) Fail(cmd, "VUID-VkCopyDescriptorSet-dstBinding-02632", "source and destination types differ");
            Span(cmd, src, c.srcBinding, c.srcArrayElement, c.descriptorCount, null, "VUID-VkCopyDescriptorSet-srcArrayElement-00346", false);
            Span(cmd, dst, c.dstBinding, c.dstArrayElement, c.descriptorCount, null, "VUID-VkCopyDescriptorSet-dstArrayElement-00347", false);
        }
    }

    void CheckWrite(int cmd, SetState set, VkWriteDescriptorSet* w, DeviceState dev)
    {
        if (w->descriptorCount == 0) Fail(cmd, "VUID-VkWriteDescriptorSet-descriptorCount-arraylength", "descriptorCount is 0");
        var type = w->descriptorType;
        switch (type)
        {
            case VK_DESCRIPTOR_TYPE_SAMPLER or VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER or VK_DESCRIPTOR_TYPE_SAMPLED_IMAGE
                or VK_DESCRIPTOR_TYPE_STORAGE_IMAGE or VK_DESCRIPTOR_TYPE_INPUT_ATTACHMENT:
                if (w->pImageInfo == null) Fail(cmd, "VUID-VkWriteDescriptorSet-descriptorType-00323", "pImageInfo is NULL");
                break;
            case VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER or VK_DESCRIPTOR_TYPE_STORAGE_BUFFER or VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER_DYNAMIC
                or VK_DESCRIPTOR_TYPE_STORAGE_BUFFER_DYNAMIC:
                if (w->pBufferInfo == null) Fail(cmd, "VUID-VkWriteDescriptorSet-descriptorType-00324", "pBufferInfo is NULL");
                break;
            case VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER or VK_DESCRIPTOR_TYPE_STORAGE_TEXEL_BUFFER:
                if (w->pTexelBufferView == null) Fail(cmd, "VUID-VkWriteDescriptorSet-descriptorType-00322", "pTexelBufferView is NULL");
                break;
            case VK_DESCRIPTOR_TYPE_INLINE_UNIFORM_BLOCK:
            {
                VkWriteDescriptorSetInlineUniformBlock* ib = null;
                for (var n = (VkBaseInStructure*)w->pNext; n != null; n = n->pNext)
                    if (n->sType == VkStructureType.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET_INLINE_UNIFORM_BLOCK) ib = (VkWriteDescriptorSetInlineUniformBlock*)n;
                if (ib == null || ib->dataSize != w->descriptorCount) Fail(cmd, "VUID-VkWriteDescriptorSet-descriptorType-02221", "inline uniform data does not match descriptorCount");
                if (w->dstArrayElement % 4 != 0 || w->descriptorCount % 4 != 0) Fail(cmd, "VUID-VkWriteDescriptorSet-descriptorType-02219", "inline uniform offsets and sizes are multiples of 4");
                break;
            }
            default:
                Fail(cmd, "VUID-VkWriteDescriptorSet-descriptorType-parameter", $"{type} descriptors are not served by hostsim");
                break;
        }
        _write = w;
        _writeDevice = dev;
        Span(cmd, set, w->dstBinding, w->dstArrayElement, w->descriptorCount, type, "VUID-VkWriteDescriptorSet-dstArrayElement-00321",
            type != VK_DESCRIPTOR_TYPE_INLINE_UNIFORM_BLOCK);
    }

    /// <summary>One descriptor of a write: what it names must exist, and a buffer range lie inside its buffer.</summary>
    void CheckDescriptor(int cmd, SetState set, int bindingIndex, uint element, uint i)
    {
        var g = this;
        var w = _write;
        var dev = _writeDevice!;
        var lb = set.Layout.Bindings[bindingIndex];
        switch (w->descriptorType)
        {
            case VK_DESCRIPTOR_TYPE_SAMPLER: set.Hold(bindingIndex, element, w->pImageInfo[i].sampler.Handle, 0); break;
            case VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER: set.Hold(bindingIndex, element, w->pImageInfo[i].imageView.Handle, w->pImageInfo[i].sampler.Handle); break;
            case VK_DESCRIPTOR_TYPE_SAMPLED_IMAGE or VK_DESCRIPTOR_TYPE_STORAGE_IMAGE or VK_DESCRIPTOR_TYPE_INPUT_ATTACHMENT:
                set.Hold(bindingIndex, element, w->pImageInfo[i].imageView.Handle, 0); break;
            case VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER or VK_DESCRIPTOR_TYPE_STORAGE_TEXEL_BUFFER: set.Hold(bindingIndex, element, w->pTexelBufferView[i].Handle, 0); break;
            default: set.Hold(bindingIndex, element, w->pBufferInfo[i].buffer.Handle, 0); break;
        }
        switch (w->descriptorType)
        {
            case VK_DESCRIPTOR_TYPE_SAMPLER or VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER:
                if (!lb.ImmutableSamplers && w->pImageInfo[i].sampler.Handle == 0)
                    Fail(cmd, "VUID-VkWriteDescriptorSet-descriptorType-00325", "sampler is VK_NULL_HANDLE");
                if (w->descriptorType == VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER) CheckImageDescriptor(cmd, w->pImageInfo[i].imageView.Handle, dev);
                break;
            case VK_DESCRIPTOR_TYPE_SAMPLED_IMAGE or VK_DESCRIPTOR_TYPE_STORAGE_IMAGE or VK_DESCRIPTOR_TYPE_INPUT_ATTACHMENT:
                CheckImageDescriptor(cmd, w->pImageInfo[i].imageView.Handle, dev);
                break;
            case VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER or VK_DESCRIPTOR_TYPE_STORAGE_TEXEL_BUFFER:
                if (w->pTexelBufferView[i].Handle == 0 && !dev.NullDescriptor)
                    Fail(cmd, "VUID-VkWriteDescriptorSet-descriptorType-02994", "a texel buffer view is VK_NULL_HANDLE without nullDescriptor");
                break;
            default:
            {
                var bi = w->pBufferInfo[i];
                if (bi.buffer.Handle == 0)
                {
                    if (!dev.NullDescriptor) Fail(cmd, "VUID-VkDescriptorBufferInfo-buffer-02998", "buffer is VK_NULL_HANDLE without nullDescriptor");
                    break;
                }
                var b = g.UsedBuffer(cmd, bi.buffer.Handle, "buffer");
                if (bi.offset >= b.Size) Fail(cmd, "VUID-VkDescriptorBufferInfo-offset-00340", $"offset {bi.offset} is outside the {b.Size}-byte buffer");
                ulong range = bi.range == VkConstants.VK_WHOLE_SIZE ? b.Size - bi.offset : bi.range;
                if (range == 0) Fail(cmd, "VUID-VkDescriptorBufferInfo-range-00341", "range is 0");
                if (range > b.Size - bi.offset) Fail(cmd, "VUID-VkDescriptorBufferInfo-range-00342", $"[{bi.offset}, +{range}) runs past the {b.Size}-byte buffer");
                bool uniform = w->descriptorType is VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER or VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER_DYNAMIC;
                var need = uniform ? VkBufferUsageFlags.VK_BUFFER_USAGE_UNIFORM_BUFFER_BIT : VkBufferUsageFlags.VK_BUFFER_USAGE_STORAGE_BUFFER_BIT;
                if ((b.Usage & need) == 0) Fail(cmd, uniform ? "VUID-VkWriteDescriptorSet-descriptorType-00330" : "VUID-VkWriteDescriptorSet-descriptorType-00331", $"the buffer lacks {need}");
                ulong align = uniform ? dev.Limits.minUniformBufferOffsetAlignment : dev.Limits.minStorageBufferOffsetAlignment;
                if (align != 0 && bi.offset % align != 0)
                    Fail(cmd, uniform ? "VUID-VkWriteDescriptorSet-descriptorType-00327" : "VUID-VkWriteDescriptorSet-descriptorType-00328", $"offset {bi.offset} is not a multiple of {align}");
                if (bi.range != VkConstants.VK_WHOLE_SIZE && range > (uniform ? dev.Limits.maxUniformBufferRange : dev.Limits.maxStorageBufferRange))
                    Fail(cmd, uniform ? "VUID-VkWriteDescriptorSet-descriptorType-00332" : "VUID-VkWriteDescriptorSet-descriptorType-00333", $"range {range} exceeds the device's limit");
                if (w->descriptorType is VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER_DYNAMIC or VK_DESCRIPTOR_TYPE_STORAGE_BUFFER_DYNAMIC)
                    set.Dynamic[DynamicIndex(set.Layout, bindingIndex) + (int)element] = (b.Size, bi.offset, range);
                break;
            }
        }
    }

    void CheckImageDescriptor(int cmd, ulong v, DeviceState dev)
    {
        if (v == 0 && !dev.NullDescriptor) Fail(cmd, "VUID-VkWriteDescriptorSet-descriptorType-02997", "imageView is VK_NULL_HANDLE without nullDescriptor");
        if (v != 0 && _imageViews.TryGetValue(v, out var view) && _images.TryGetValue(view.Image, out var img) && img.Memory == 0)
            Fail(cmd, "VUID-VkWriteDescriptorSet-descriptorType-00326", "the view's image is not bound to memory");
    }

    static int DynamicIndex(SetLayoutState layout, int bindingIndex)
    {
        int n = 0;
        for (int i = 0; i < bindingIndex; i++)
            if (layout.Bindings[i].Type is VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER_DYNAMIC or VK_DESCRIPTOR_TYPE_STORAGE_BUFFER_DYNAMIC) n += (int)layout.Bindings[i].Count;
        return n;
    }

    void CheckBindSets(int cmd, ulong* a, CommandBufferState cb, DeviceState dev)
    {
        var layout = Lookup(_pipelineLayouts, cmd, a[2], "layout");
        uint first = (uint)a[3], count = (uint)a[4];
        var sets = (ulong*)a[5];
        uint dynCount = (uint)a[6];
        var dyn = (uint*)a[7];
        if ((ulong)first + count > (ulong)layout.Sets.Length)
            Fail(cmd, "VUID-vkCmdBindDescriptorSets-firstSet-00360", $"sets [{first}, +{count}) of a layout with {layout.Sets.Length}");
        uint d = 0;
        for (uint i = 0; i < count; i++)
        {
            if (sets[i] == 0) continue;
            var s = Lookup(_sets, cmd, sets[i], "pDescriptorSets");
            if (s.DeadCount > 0) Fail(cmd, "VUID-vkCmdDispatch-None-08114", $"set {first + i} holds {s.DeadCount} descriptor(s) whose object was destroyed");
            if (s.Layout.Signature != layout.Sets[first + i].Signature)
                Fail(cmd, "VUID-vkCmdBindDescriptorSets-pDescriptorSets-00358", $"set {first + i} was allocated with a layout not compatible with the pipeline layout's");
            for (int k = 0; k < s.Dynamic.Length; k++)
            {
                if (d >= dynCount) Fail(cmd, "VUID-vkCmdBindDescriptorSets-dynamicOffsetCount-00359", $"{dynCount} dynamic offsets for more dynamic descriptors");
                var (size, offset, range) = s.Dynamic[k];
                uint o = dyn[d++];
                if (size != 0 && ((ulong)o + offset > size || range > size - offset - o))
                    Fail(cmd, "VUID-vkCmdBindDescriptorSets-pDescriptorSets-01979", $"dynamic offset {o} moves [{offset}, +{range}) past the {size}-byte buffer");
            }
        }
        if (d != dynCount) Fail(cmd, "VUID-vkCmdBindDescriptorSets-dynamicOffsetCount-00359", $"{dynCount} dynamic offsets for {d} dynamic descriptors");
        var bound = cb.Sets((VkPipelineBindPoint)(int)a[1]);
        for (uint i = 0; i < count; i++) bound[first + i] = sets[i] == 0 ? 0 : layout.Sets[first + i].Signature;
    }

    void CheckPushConstants(int cmd, ulong* a, DeviceState dev)
    {
        var layout = Lookup(_pipelineLayouts, cmd, a[1], "layout");
        var stages = (VkShaderStageFlags)(uint)a[2];
        uint offset = (uint)a[3], size = (uint)a[4];
        if (offset % 4 != 0) Fail(cmd, "VUID-vkCmdPushConstants-offset-00368", $"offset {offset} is not a multiple of 4");
        if (size == 0 || size % 4 != 0) Fail(cmd, "VUID-vkCmdPushConstants-size-00369", $"size {size} is not a positive multiple of 4");
        if (offset >= dev.Limits.maxPushConstantsSize) Fail(cmd, "VUID-vkCmdPushConstants-offset-00370", $"offset {offset} is not below maxPushConstantsSize {dev.Limits.maxPushConstantsSize}");
        if (size > dev.Limits.maxPushConstantsSize - offset) Fail(cmd, "VUID-vkCmdPushConstants-size-00371", $"[{offset}, +{size}) exceeds maxPushConstantsSize {dev.Limits.maxPushConstantsSize}");
        if (stages == 0) Fail(cmd, "VUID-vkCmdPushConstants-stageFlags-requiredbitmask", "stageFlags is 0");
        // Every stage named needs a range of the layout that covers all of [offset, offset+size).
        foreach (var r in layout.PushRanges)
        {
            bool overlaps = offset < r.Offset + r.Size && r.Offset < offset + size;
            if (overlaps && (stages & r.Stages) != r.Stages)
                Fail(cmd, "VUID-vkCmdPushConstants-offset-01796", $"the update overlaps a range for stages {r.Stages} but names only {stages}");
        }
        for (int bit = 0; bit < 32; bit++)
        {
            var s = (VkShaderStageFlags)(1u << bit);
            if ((stages & s) == 0) continue;
            bool covered = false;
            foreach (var r in layout.PushRanges)
                if ((r.Stages & s) != 0 && r.Offset <= offset && offset + size <= r.Offset + r.Size) covered = true;
            if (!covered) Fail(cmd, "VUID-vkCmdPushConstants-offset-01795", $"[{offset}, +{size}) for stage {s} is not inside a push-constant range of the layout");
        }
    }
}
