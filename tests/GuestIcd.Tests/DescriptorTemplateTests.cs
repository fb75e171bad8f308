using GuestIcd.Icd;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkDescriptorType;

namespace GuestIcd.Tests;

/// <summary>The ICD's descriptor update template expansion (src/GuestIcd.Icd/DescriptorTemplate.cs, compiled
/// in here): what vkUpdateDescriptorSetWithTemplate and vkCmdPushDescriptorSetWithTemplateKHR do per call,
/// from the device's template lookup to the encoded vkUpdateDescriptorSets, allocates nothing; and the
/// writes it builds encode exactly as the same update written out by hand.</summary>
public unsafe class DescriptorTemplateTests
{
    sealed class IdentityMap : IHandleMap
    {
        public ulong ToWire(int t, ulong h) => h;
        public ulong FromWire(int t, ulong id) => id;
        public ulong Create(int t, out ulong handle) => handle = 1;
        public void ExpectCreate(int t, ulong id, ulong* slot) { }
    }

    /// <summary>pData as an application lays it out: a header, then each entry's descriptors at its own offset and stride.</summary>
    const int BufferAt = 8, BufferStride = 24, ImageAt = 64, ImageStride = 40, TexelAt = 160, TexelStride = 8, InlineAt = 200, InlineBytes = 16;

    static VkDescriptorUpdateTemplateEntry[] Entries(uint imageCount) =>
    [
        new() { dstBinding = 0, descriptorCount = 2, descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, offset = BufferAt, stride = BufferStride },
        new() { dstBinding = 1, dstArrayElement = 1, descriptorCount = imageCount, descriptorType = VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER, offset = ImageAt, stride = ImageStride },
        new() { dstBinding = 2, descriptorCount = 1, descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER, offset = TexelAt, stride = TexelStride },
        new() { dstBinding = 3, descriptorCount = InlineBytes, descriptorType = VK_DESCRIPTOR_TYPE_INLINE_UNIFORM_BLOCK, offset = InlineAt },
    ];

    static DescriptorTemplate Plan(VkDescriptorUpdateTemplateEntry[] entries)
    {
        fixed (VkDescriptorUpdateTemplateEntry* e = entries)
        {
            var ci = new VkDescriptorUpdateTemplateCreateInfo
            {
                sType = VkStructureType.VK_STRUCTURE_TYPE_DESCRIPTOR_UPDATE_TEMPLATE_CREATE_INFO,
                descriptorUpdateEntryCount = (uint)entries.Length, pDescriptorUpdateEntries = e,
            };
            return new DescriptorTemplate(&ci);
        }
    }

    static byte[] Data(uint imageCount)
    {
        var data = new byte[ImageAt + imageCount * ImageStride + 256];
        fixed (byte* d = data)
        {
            for (int i = 0; i < 2; i++) *(VkDescriptorBufferInfo*)(d + BufferAt + i * BufferStride) = new() { buffer = new(0x100 + (ulong)i), offset = 16 * (ulong)i, range = 64 };
            for (int i = 0; i < imageCount; i++)
                *(VkDescriptorImageInfo*)(d + ImageAt + i * ImageStride) = new() { sampler = new(0x200 + (ulong)i), imageView = new(0x300 + (ulong)i), imageLayout = VkImageLayout.VK_IMAGE_LAYOUT_SHADER_READ_ONLY_OPTIMAL };
            *(VkBufferView*)(d + TexelAt) = new(0x400);
            for (int i = 0; i < InlineBytes; i++) d[InlineAt + i] = (byte)(i * 3 + 1);
        }
        return data;
    }

    static byte[] Encode(uint count, VkWriteDescriptorSet* writes)
    {
        ulong* args = stackalloc ulong[CommandCodec.MaxParams];
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        args[0] = 3; args[1] = count; args[2] = (ulong)writes; args[3] = 0; args[4] = 0;
        using var w = new WireWriter();
        CommandCodec.EncodeRequest(Tables.vkUpdateDescriptorSets, args, w, new IdentityMap(), caps);
        return w.Written.ToArray();
    }

    [Theory]
    [InlineData(3u)]   // small: built on the caller's stack
    [InlineData(400u)] // big: built in the thread's scratch
    public void ATemplatedUpdateEncodesAsTheSameWritesByHand(uint imageCount)
    {
        var t = Plan(Entries(imageCount));
        Assert.Equal(imageCount > 100, t.ScratchBytes > DescriptorTemplate.StackScratch);
        var data = Data(imageCount);
        var set = new VkDescriptorSet(0x77);
        fixed (byte* d = data)
        {
            var buffers = stackalloc VkDescriptorBufferInfo[2];
            for (int i = 0; i < 2; i++) buffers[i] = *(VkDescriptorBufferInfo*)(d + BufferAt + i * BufferStride);
            var images = new VkDescriptorImageInfo[imageCount];
            for (int i = 0; i < imageCount; i++) images[i] = *(VkDescriptorImageInfo*)(d + ImageAt + i * ImageStride);
            var texel = *(VkBufferView*)(d + TexelAt);
            fixed (VkDescriptorImageInfo* im = images)
            {
                var block = new VkWriteDescriptorSetInlineUniformBlock { sType = VkStructureType.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET_INLINE_UNIFORM_BLOCK, dataSize = InlineBytes, pData = d + InlineAt };
                var byHand = stackalloc VkWriteDescriptorSet[4];
                byHand[0] = new() { sType = VkStructureType.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, dstSet = set, dstBinding = 0, descriptorCount = 2, descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, pBufferInfo = buffers };
                byHand[1] = new() { sType = VkStructureType.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, dstSet = set, dstBinding = 1, dstArrayElement = 1, descriptorCount = imageCount, descriptorType = VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER, pImageInfo = im };
                byHand[2] = new() { sType = VkStructureType.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, dstSet = set, dstBinding = 2, descriptorCount = 1, descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER, pTexelBufferView = &texel };
                byHand[3] = new() { sType = VkStructureType.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, pNext = &block, dstSet = set, dstBinding = 3, descriptorCount = InlineBytes, descriptorType = VK_DESCRIPTOR_TYPE_INLINE_UNIFORM_BLOCK };
                var expected = Encode(4, byHand);

                byte* scratch = t.ScratchBytes <= DescriptorTemplate.StackScratch ? (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)t.ScratchBytes, 16) : DescriptorTemplate.ThreadScratch(t.ScratchBytes);
                try { Assert.Equal(expected, Encode((uint)t.WriteCount, t.Build(set, d, scratch))); }
                finally { if (t.ScratchBytes <= DescriptorTemplate.StackScratch) System.Runtime.InteropServices.NativeMemory.AlignedFree(scratch); }
            }
        }
    }

    [Fact]
    public void TemplatedUpdatesAllocateNothingPerCall()
    {
        // Two devices' tables, with the same template handle meaning different templates (as on two instances).
        var small = new DescriptorTemplates();
        var big = new DescriptorTemplates();
        small.Add(5, Plan(Entries(3)));
        big.Add(5, Plan(Entries(400)));
        var smallData = Data(3);
        var bigData = Data(400);
        ulong* args = stackalloc ulong[CommandCodec.MaxParams];
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        var map = new IdentityMap();
        using var w = new WireWriter();
        void Once(DescriptorTemplates table, byte* data)
        {
            // What the entry point does: the device's template, scratch (stack or the thread's), the writes, the encode.
            var t = table.Get(5);
            byte* scratch;
            if (t.ScratchBytes <= DescriptorTemplate.StackScratch) { byte* s = stackalloc byte[t.ScratchBytes]; scratch = s; }
            else scratch = DescriptorTemplate.ThreadScratch(t.ScratchBytes);
            args[0] = 3; args[1] = (ulong)t.WriteCount; args[2] = (ulong)t.Build(new VkDescriptorSet(0x77), data, scratch); args[3] = 0; args[4] = 0;
            w.Reset();
            CommandCodec.EncodeRequest(Tables.vkUpdateDescriptorSets, args, w, map, caps);
        }
        fixed (byte* s = smallData)
        fixed (byte* b = bigData)
        {
            for (int i = 0; i < 10; i++) { Once(small, s); Once(big, b); }
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 1000; i++) { Once(small, s); Once(big, b); }
            Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        }
    }
}
