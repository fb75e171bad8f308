using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkDescriptorType;

namespace GuestIcd.Icd;

/// <summary>One descriptor update template, planned once at creation: where each entry's write goes in a
/// scratch block and how many bytes of it the entry needs. pData's layout is known only from the template,
/// which the host cannot see in the call, so a templated update becomes the equivalent VkWriteDescriptorSet
/// list. Building that list allocates nothing: the caller hands in <see cref="ScratchBytes"/> of scratch
/// (its stack, or <see cref="ThreadScratch"/> for big templates), and entries whose elements are already
/// packed (stride equal to the element size) are pointed at in place instead of copied.
/// Also compiled into the tests (GuestIcd.Tests), which check it allocates nothing per update.</summary>
internal sealed unsafe class DescriptorTemplate
{
    /// <summary>Templates needing at most this much scratch build their writes on the caller's stack.</summary>
    public const int StackScratch = 4096;

    readonly VkDescriptorUpdateTemplateEntry[] _entries;
    /// <summary>Per entry: where its packed copy (or its inline uniform block struct) starts in scratch, -1 if none.</summary>
    readonly int[] _copyAt;
    public readonly VkPipelineBindPoint BindPoint;
    public readonly int ScratchBytes;
    public int WriteCount => _entries.Length;

    public DescriptorTemplate(VkDescriptorUpdateTemplateCreateInfo* info)
    {
        BindPoint = info->pipelineBindPoint;
        _entries = new ReadOnlySpan<VkDescriptorUpdateTemplateEntry>(info->pDescriptorUpdateEntries, (int)info->descriptorUpdateEntryCount).ToArray();
        _copyAt = new int[_entries.Length];
        long at = Align((long)_entries.Length * sizeof(VkWriteDescriptorSet));
        for (int i = 0; i < _entries.Length; i++)
        {
            ref readonly var e = ref _entries[i];
            int element = ElementSize(e.descriptorType);
            long need = element switch
            {
                0 => sizeof(VkWriteDescriptorSetInlineUniformBlock),
                _ when e.stride == (nuint)element || e.descriptorCount <= 1 => 0,
                _ => (long)e.descriptorCount * element,
            };
            _copyAt[i] = need == 0 ? -1 : (int)at;
            at = Align(at + need);
            if (at > int.MaxValue) throw new NotSupportedException("descriptor update template too large");
        }
        ScratchBytes = (int)Math.Max(at, 8);
    }

    static long Align(long n) => (n + 7) & ~7L;

    enum Kind { Image, Buffer, TexelBuffer, InlineBlock }

    static Kind KindOf(VkDescriptorType type) => type switch
    {
        VK_DESCRIPTOR_TYPE_SAMPLER or VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER or VK_DESCRIPTOR_TYPE_SAMPLED_IMAGE
            or VK_DESCRIPTOR_TYPE_STORAGE_IMAGE or VK_DESCRIPTOR_TYPE_INPUT_ATTACHMENT => Kind.Image,
        VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER or VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
            or VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER_DYNAMIC or VK_DESCRIPTOR_TYPE_STORAGE_BUFFER_DYNAMIC => Kind.Buffer,
        VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER or VK_DESCRIPTOR_TYPE_STORAGE_TEXEL_BUFFER => Kind.TexelBuffer,
        VK_DESCRIPTOR_TYPE_INLINE_UNIFORM_BLOCK => Kind.InlineBlock,
        _ => throw new NotSupportedException($"descriptor update templates with {type} are not carried yet"),
    };

    /// <summary>Bytes of one descriptor's data in pData, 0 for inline uniform blocks (whose count is bytes).</summary>
    static int ElementSize(VkDescriptorType type) => KindOf(type) switch
    {
        Kind.Image => sizeof(VkDescriptorImageInfo),
        Kind.Buffer => sizeof(VkDescriptorBufferInfo),
        Kind.TexelBuffer => sizeof(VkBufferView),
        _ => 0,
    };

    /// <summary>The writes equivalent to updating <paramref name="set"/> from <paramref name="data"/>, built in
    /// <paramref name="scratch"/> (at least <see cref="ScratchBytes"/> bytes, 8-aligned). They point into
    /// scratch and into data, so they are valid while both are.</summary>
    public VkWriteDescriptorSet* Build(VkDescriptorSet set, byte* data, byte* scratch)
    {
        var writes = (VkWriteDescriptorSet*)scratch;
        for (int i = 0; i < _entries.Length; i++)
        {
            ref readonly var e = ref _entries[i];
            var w = &writes[i];
            *w = default;
            w->sType = VkStructureType.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
            w->dstSet = set;
            w->dstBinding = e.dstBinding;
            w->dstArrayElement = e.dstArrayElement;
            w->descriptorCount = e.descriptorCount;
            w->descriptorType = e.descriptorType;
            byte* src = data + e.offset;
            int element = ElementSize(e.descriptorType);
            if (element == 0)
            {
                // For inline uniform blocks descriptorCount is a byte count and the bytes are contiguous.
                var block = (VkWriteDescriptorSetInlineUniformBlock*)(scratch + _copyAt[i]);
                *block = default;
                block->sType = VkStructureType.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET_INLINE_UNIFORM_BLOCK;
                block->dataSize = e.descriptorCount;
                block->pData = src;
                w->pNext = block;
                continue;
            }
            byte* packed = src;
            if (_copyAt[i] >= 0)
            {
                packed = scratch + _copyAt[i];
                for (uint k = 0; k < e.descriptorCount; k++) Buffer.MemoryCopy(src + k * e.stride, packed + k * element, element, element);
            }
            switch (KindOf(e.descriptorType))
            {
                case Kind.Image: w->pImageInfo = (VkDescriptorImageInfo*)packed; break;
                case Kind.Buffer: w->pBufferInfo = (VkDescriptorBufferInfo*)packed; break;
                default: w->pTexelBufferView = (VkBufferView*)packed; break;
            }
        }
        return writes;
    }

    [ThreadStatic] static byte* t_scratch;
    [ThreadStatic] static int t_scratchBytes;

    /// <summary>This thread's scratch for templates too big for the stack: grown when needed, then reused
    /// (one per thread, since updates with one template may run on several threads at once).</summary>
    public static byte* ThreadScratch(int bytes)
    {
        if (t_scratchBytes < bytes)
        {
            NativeMemory.AlignedFree(t_scratch);
            t_scratch = null;
            t_scratchBytes = 0;
            t_scratch = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 16);
            t_scratchBytes = bytes;
        }
        return t_scratch;
    }
}

/// <summary>A device's descriptor update templates by handle. Handles are per connection, so the table
/// belongs to the device (<see cref="GuestDevice"/>); lookups take no lock and allocate nothing.</summary>
internal sealed class DescriptorTemplates
{
    readonly ConcurrentDictionary<ulong, DescriptorTemplate> _byHandle = new();

    public int Count => _byHandle.Count;

    public void Add(ulong handle, DescriptorTemplate t) => _byHandle[handle] = t;

    public void Remove(ulong handle) => _byHandle.TryRemove(handle, out _);

    public DescriptorTemplate Get(ulong handle) =>
        _byHandle.TryGetValue(handle, out var t) ? t : throw new InvalidOperationException($"unknown descriptor update template 0x{handle:X}");
}
