using GuestIcd.Protocol;
using GuestIcd.Vulkan;

namespace GuestIcd.Icd;

/// <summary>Descriptor update templates: the device remembers each template's plan
/// (<see cref="DescriptorTemplate"/>) and a templated update travels as the equivalent
/// vkUpdateDescriptorSets / vkCmdPushDescriptorSetKHR. Per update nothing is allocated.</summary>
internal static unsafe partial class Entry
{
    public static VkResult vkCreateDescriptorUpdateTemplate(VkDevice device, VkDescriptorUpdateTemplateCreateInfo* pCreateInfo,
        VkAllocationCallbacks* pAllocator, VkDescriptorUpdateTemplate* pDescriptorUpdateTemplate)
    {
        var dev = GuestDevice.Of(device);
        // Planned first: a template this ICD cannot expand is refused before the host creates it.
        var plan = new DescriptorTemplate(pCreateInfo);
        ulong* a = stackalloc ulong[4];
        a[0] = (ulong)device.Handle; a[1] = (ulong)pCreateInfo; a[2] = 0; a[3] = (ulong)pDescriptorUpdateTemplate;
        var r = (VkResult)(int)Generic.Call(Tables.vkCreateDescriptorUpdateTemplate, a);
        if (r == VkResult.VK_SUCCESS) dev.Templates.Add(pDescriptorUpdateTemplate->Handle, plan);
        return r;
    }

    public static void vkDestroyDescriptorUpdateTemplate(VkDevice device, VkDescriptorUpdateTemplate descriptorUpdateTemplate, VkAllocationCallbacks* pAllocator)
    {
        if (descriptorUpdateTemplate.IsNull) return;
        GuestDevice.Of(device).Templates.Remove(descriptorUpdateTemplate.Handle);
        ulong* a = stackalloc ulong[3];
        a[0] = (ulong)device.Handle; a[1] = descriptorUpdateTemplate.Handle; a[2] = 0;
        Generic.Call(Tables.vkDestroyDescriptorUpdateTemplate, a);
    }

    public static void vkUpdateDescriptorSetWithTemplate(VkDevice device, VkDescriptorSet descriptorSet, VkDescriptorUpdateTemplate descriptorUpdateTemplate, void* pData)
    {
        var t = GuestDevice.Of(device).Templates.Get(descriptorUpdateTemplate.Handle);
        byte* scratch;
        if (t.ScratchBytes <= DescriptorTemplate.StackScratch) { byte* s = stackalloc byte[t.ScratchBytes]; scratch = s; }
        else scratch = DescriptorTemplate.ThreadScratch(t.ScratchBytes);
        ulong* a = stackalloc ulong[5];
        a[0] = (ulong)device.Handle; a[1] = (ulong)t.WriteCount; a[2] = (ulong)t.Build(descriptorSet, (byte*)pData, scratch); a[3] = 0; a[4] = 0;
        Generic.Call(Tables.vkUpdateDescriptorSets, a);
    }

    public static void vkCmdPushDescriptorSetWithTemplateKHR(VkCommandBuffer commandBuffer, VkDescriptorUpdateTemplate descriptorUpdateTemplate,
        VkPipelineLayout layout, uint set, void* pData)
    {
        // The template belongs to the command buffer's device (the parent recorded when it was allocated).
        var t = GuestDevice.OfChild(commandBuffer.Handle).Templates.Get(descriptorUpdateTemplate.Handle);
        byte* scratch;
        if (t.ScratchBytes <= DescriptorTemplate.StackScratch) { byte* s = stackalloc byte[t.ScratchBytes]; scratch = s; }
        else scratch = DescriptorTemplate.ThreadScratch(t.ScratchBytes);
        ulong* a = stackalloc ulong[6];
        a[0] = (ulong)commandBuffer.Handle; a[1] = (ulong)(uint)(int)t.BindPoint; a[2] = layout.Handle; a[3] = set; a[4] = (ulong)t.WriteCount;
        a[5] = (ulong)t.Build(default, (byte*)pData, scratch);
        Generic.Call(Tables.vkCmdPushDescriptorSetKHR, a);
    }
}
