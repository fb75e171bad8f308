using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkSamplerAddressMode;

namespace GuestIcd.HostSim.Gate;

/// <summary>Samplers: lavapipe builds its sampler state straight from the create info (two fuzz inputs crashed
/// it there), so what the spec bounds by features and limits is checked first.</summary>
internal sealed unsafe partial class ValidUsageGate
{
    static void CheckCreateSampler(int cmd, VkSamplerCreateInfo* ci, DeviceState dev)
    {
        ref readonly var limits = ref dev.Limits;
        if (ci->anisotropyEnable != 0)
        {
            if (dev.Features.samplerAnisotropy == 0)
                Fail(cmd, "VUID-VkSamplerCreateInfo-anisotropyEnable-01070", "anisotropy without the samplerAnisotropy feature");
            if (!(ci->maxAnisotropy >= 1.0f && ci->maxAnisotropy <= limits.maxSamplerAnisotropy))
                Fail(cmd, "VUID-VkSamplerCreateInfo-anisotropyEnable-01071", $"maxAnisotropy {ci->maxAnisotropy} is outside [1, {limits.maxSamplerAnisotropy}]");
        }
        if (!(MathF.Abs(ci->mipLodBias) <= limits.maxSamplerLodBias))
            Fail(cmd, "VUID-VkSamplerCreateInfo-mipLodBias-01069", $"mipLodBias {ci->mipLodBias} exceeds maxSamplerLodBias {limits.maxSamplerLodBias}");
        if (!(ci->maxLod >= ci->minLod))
            Fail(cmd, "VUID-VkSamplerCreateInfo-maxLod-01973", $"maxLod {ci->maxLod} is below minLod {ci->minLod}");
        bool custom = ci->borderColor is VkBorderColor.VK_BORDER_COLOR_FLOAT_CUSTOM_EXT or VkBorderColor.VK_BORDER_COLOR_INT_CUSTOM_EXT;
        if (custom && FindInChain(ci->pNext, VkStructureType.VK_STRUCTURE_TYPE_SAMPLER_CUSTOM_BORDER_COLOR_CREATE_INFO_EXT) == null)
            Fail(cmd, "VUID-VkSamplerCreateInfo-borderColor-04011", "a custom border color without VkSamplerCustomBorderColorCreateInfoEXT");
        if (ci->unnormalizedCoordinates != 0)
        {
            if (ci->minFilter != ci->magFilter || ci->mipmapMode != VkSamplerMipmapMode.VK_SAMPLER_MIPMAP_MODE_NEAREST
                || ci->minLod != 0 || ci->maxLod != 0 || ci->anisotropyEnable != 0 || ci->compareEnable != 0
                || !Clamped(ci->addressModeU) || !Clamped(ci->addressModeV))
                Fail(cmd, "VUID-VkSamplerCreateInfo-unnormalizedCoordinates-01072", "unnormalized coordinates with filters, LODs, address modes, anisotropy or compare the spec forbids for them");
        }
    }

    static bool Clamped(VkSamplerAddressMode m) => m is VK_SAMPLER_ADDRESS_MODE_CLAMP_TO_EDGE or VK_SAMPLER_ADDRESS_MODE_CLAMP_TO_BORDER;

    static void* FindInChain(void* node, VkStructureType sType)
    {
        for (; node != null; node = ((VkBaseInStructure*)node)->pNext)
            if (((VkBaseInStructure*)node)->sType == sType) return node;
        return null;
    }
}
