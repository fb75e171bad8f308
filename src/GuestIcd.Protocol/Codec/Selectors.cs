using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkDescriptorType;

namespace GuestIcd.Protocol.Codec;

/// <summary>The registry marks some pointers noautovalidity: they are ignored (and may hold garbage) unless
/// another member says otherwise. The encoder must not follow them then; this says when they apply.
/// Only fields the generator flags <see cref="FieldFlags.Selected"/> come here.</summary>
public static unsafe class Selectors
{
    public static bool Applies(in FieldDesc f, byte* owner) => f.Name switch
    {
        nameof(VkWriteDescriptorSet.pImageInfo) => ((VkWriteDescriptorSet*)owner)->descriptorType is VK_DESCRIPTOR_TYPE_SAMPLER
            or VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER or VK_DESCRIPTOR_TYPE_SAMPLED_IMAGE or VK_DESCRIPTOR_TYPE_STORAGE_IMAGE
            or VK_DESCRIPTOR_TYPE_INPUT_ATTACHMENT,
        nameof(VkWriteDescriptorSet.pBufferInfo) => ((VkWriteDescriptorSet*)owner)->descriptorType is VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER
            or VK_DESCRIPTOR_TYPE_STORAGE_BUFFER or VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER_DYNAMIC or VK_DESCRIPTOR_TYPE_STORAGE_BUFFER_DYNAMIC,
        nameof(VkWriteDescriptorSet.pTexelBufferView) => ((VkWriteDescriptorSet*)owner)->descriptorType is VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER
            or VK_DESCRIPTOR_TYPE_STORAGE_TEXEL_BUFFER,
        nameof(VkDescriptorSetLayoutBinding.pImmutableSamplers) => ((VkDescriptorSetLayoutBinding*)owner)->descriptorType is VK_DESCRIPTOR_TYPE_SAMPLER
            or VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER,
        _ => true,
    };
}
