using GuestIcd.Protocol;
using GuestIcd.Vulkan;

namespace GuestIcd.Icd;

internal static unsafe partial class Entry
{
    public static VkResult vkCreateDevice(VkPhysicalDevice physicalDevice, VkDeviceCreateInfo* pCreateInfo, VkAllocationCallbacks* pAllocator, VkDevice* pDevice)
    {
        ulong* a = stackalloc ulong[4];
        a[0] = (ulong)physicalDevice.Handle; a[1] = (ulong)pCreateInfo; a[2] = 0; a[3] = (ulong)pDevice;
        var r = (VkResult)(int)Generic.Call(Tables.vkCreateDevice, a);
        if (r != VkResult.VK_SUCCESS) { Generic.ConnectionOf(physicalDevice.Handle).Handles.Forget((ulong)pDevice->Handle); *pDevice = default; }
        return r;
    }

    public static void vkDestroyDevice(VkDevice device, VkAllocationCallbacks* pAllocator)
    {
        if (device.IsNull) return;
        var c = Generic.ConnectionOf(device.Handle);
        ulong* a = stackalloc ulong[2];
        a[0] = (ulong)device.Handle; a[1] = 0;
        try { Generic.Call(Tables.vkDestroyDevice, a); }
        finally { c.Handles.Forget((ulong)device.Handle); }
    }
}
