using System.Runtime.InteropServices;
using GuestIcd.Protocol;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkDescriptorType;

namespace GuestIcd.Icd;

/// <summary>Descriptor update templates. pData's layout is known only from the template, which the host
/// cannot see in the call, so the guest remembers each template and turns a templated update into the
/// equivalent VkWriteDescriptorSet list (vkUpdateDescriptorSets / vkCmdPushDescriptorSetKHR).</summary>
internal static unsafe partial class Entry
{
    sealed record Template(VkDescriptorUpdateTemplateEntry[] Entries, VkPipelineBindPoint BindPoint);

    static readonly Dictionary<ulong, Template> s_templates = new();

    public static VkResult vkCreateDescriptorUpdateTemplate(VkDevice device, VkDescriptorUpdateTemplateCreateInfo* pCreateInfo,
        VkAllocationCallbacks* pAllocator, VkDescriptorUpdateTemplate* pDescriptorUpdateTemplate)
    {
        ulong* a = stackalloc ulong[4];
        a[0] = (ulong)device.Handle; a[1] = (ulong)pCreateInfo; a[2] = 0; a[3] = (ulong)pDescriptorUpdateTemplate;
        var r = (VkResult)(int)Generic.Call(Tables.vkCreateDescriptorUpdateTemplate, a);
        if (r != VkResult.VK_SUCCESS) return r;
        var entries = new ReadOnlySpan<VkDescriptorUpdateTemplateEntry>(pCreateInfo->pDescriptorUpdateEntries, (int)pCreateInfo->descriptorUpdateEntryCount).ToArray();
        lock (s_templates) s_templates[pDescriptorUpdateTemplate->Handle] = new Template(entries, pCreateInfo->pipelineBindPoint);
        return r;
    }

    public static void vkDestroyDescriptorUpdateTemplate(VkDevice device, VkDescriptorUpdateTemplate descriptorUpdateTemplate, VkAllocationCallbacks* pAllocator)
    {
        if (descriptorUpdateTemplate.IsNull) return;
        lock (s_templates) s_templates.Remove(descriptorUpdateTemplate.Handle);
        ulong* a = stackalloc ulong[3];
        a[0] = (ulong)device.Handle; a[1] = descriptorUpdateTemplate.Handle; a[2] = 0;
        Generic.Call(Tables.vkDestroyDescriptorUpdateTemplate, a);
    }

    public static void vkUpdateDescriptorSetWithTemplate(VkDevice device, VkDescriptorSet descriptorSet, VkDescriptorUpdateTemplate descriptorUpdateTemplate, void* pData)
    {
        var t = TemplateOf(descriptorUpdateTemplate);
        WithWrites(t, descriptorSet, (byte*)pData, (writes, count) =>
        {
            ulong* a = stackalloc ulong[5];
            a[0] = (ulong)device.Handle; a[1] = (ulong)count; a[2] = (ulong)writes; a[3] = 0; a[4] = 0;
            Generic.Call(Tables.vkUpdateDescriptorSets, a);
        });
    }

    public static void vkCmdPushDescriptorSetWithTemplateKHR(VkCommandBuffer commandBuffer, VkDescriptorUpdateTemplate descriptorUpdateTemplate,
        VkPipelineLayout layout, uint set, void* pData)
    {
        var t = TemplateOf(descriptorUpdateTemplate);
        WithWrites(t, default, (byte*)pData, (writes, count) =>
        {
            ulong* a = stackalloc ulong[6];
            a[0] = (ulong)commandBuffer.Handle; a[1] = (ulong)(uint)(int)t.BindPoint; a[2] = layout.Handle; a[3] = set; a[4] = (ulong)count; a[5] = (ulong)writes;
            Generic.Call(Tables.vkCmdPushDescriptorSetKHR, a);
        });
    }

    static Template TemplateOf(VkDescriptorUpdateTemplate handle)
    {
        lock (s_templates)
            return s_templates.TryGetValue(handle.Handle, out var t) ? t : throw new InvalidOperationException($"unknown descriptor update template 0x{handle.Handle:X}");
    }

    delegate void WritesAction(VkWriteDescriptorSet* writes, uint count);

    /// <summary>Builds one write per template entry, pointing into a scratch copy of the entry's data.</summary>
    static void WithWrites(Template t, VkDescriptorSet set, byte* data, WritesAction use)
    {
        int n = t.Entries.Length;
        var writes = (VkWriteDescriptorSet*)NativeMemory.AllocZeroed((nuint)Math.Max(n, 1), (nuint)sizeof(VkWriteDescriptorSet));
        var scratch = new List<nint>();
        try
        {
            for (int i = 0; i < n; i++)
            {
                ref readonly var e = ref t.Entries[i];
                var w = &writes[i];
                w->sType = VkStructureType.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
                w->dstSet = set;
                w->dstBinding = e.dstBinding;
                w->dstArrayElement = e.dstArrayElement;
                w->descriptorCount = e.descriptorCount;
                w->descriptorType = e.descriptorType;
                byte* src = data + e.offset;
                switch (e.descriptorType)
                {
                    case VK_DESCRIPTOR_TYPE_SAMPLER or VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER or VK_DESCRIPTOR_TYPE_SAMPLED_IMAGE
                        or VK_DESCRIPTOR_TYPE_STORAGE_IMAGE or VK_DESCRIPTOR_TYPE_INPUT_ATTACHMENT:
                        w->pImageInfo = (VkDescriptorImageInfo*)Gather(src, e.stride, e.descriptorCount, sizeof(VkDescriptorImageInfo), scratch);
                        break;
                    case VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER or VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
                        or VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER_DYNAMIC or VK_DESCRIPTOR_TYPE_STORAGE_BUFFER_DYNAMIC:
                        w->pBufferInfo = (VkDescriptorBufferInfo*)Gather(src, e.stride, e.descriptorCount, sizeof(VkDescriptorBufferInfo), scratch);
                        break;
                    case VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER or VK_DESCRIPTOR_TYPE_STORAGE_TEXEL_BUFFER:
                        w->pTexelBufferView = (VkBufferView*)Gather(src, e.stride, e.descriptorCount, sizeof(VkBufferView), scratch);
                        break;
                    case VK_DESCRIPTOR_TYPE_INLINE_UNIFORM_BLOCK:
                    {
                        // For inline uniform blocks descriptorCount is a byte count and the bytes are contiguous.
                        var block = (VkWriteDescriptorSetInlineUniformBlock*)Scratch(sizeof(VkWriteDescriptorSetInlineUniformBlock), scratch);
                        block->sType = VkStructureType.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET_INLINE_UNIFORM_BLOCK;
                        block->dataSize = e.descriptorCount;
                        block->pData = src;
                        w->pNext = block;
                        break;
                    }
                    default:
                        throw new NotSupportedException($"descriptor update templates with {e.descriptorType} are not carried yet");
                }
            }
            use(writes, (uint)n);
        }
        finally
        {
            foreach (var p in scratch) NativeMemory.Free((void*)p);
            NativeMemory.Free(writes);
        }
    }

    static void* Scratch(int bytes, List<nint> owned)
    {
        var p = NativeMemory.AllocZeroed((nuint)Math.Max(bytes, 1));
        owned.Add((nint)p);
        return p;
    }

    /// <summary>Copies <paramref name="count"/> elements laid out <paramref name="stride"/> bytes apart into a packed array.</summary>
    static void* Gather(byte* src, nuint stride, uint count, int elementSize, List<nint> owned)
    {
        var dst = (byte*)Scratch((int)count * elementSize, owned);
        for (uint i = 0; i < count; i++) Buffer.MemoryCopy(src + i * stride, dst + i * elementSize, elementSize, elementSize);
        return dst;
    }
}
