using GuestIcd.Protocol;
using GuestIcd.Vulkan;

namespace GuestIcd.Icd;

internal static unsafe partial class Entry
{
    public static VkResult vkCreateDevice(VkPhysicalDevice physicalDevice, VkDeviceCreateInfo* pCreateInfo, VkAllocationCallbacks* pAllocator, VkDevice* pDevice)
    {
        ulong* a = stackalloc ulong[4];
        a[0] = (ulong)physicalDevice.Handle; a[1] = (ulong)pCreateInfo; a[2] = 0; a[3] = (ulong)pDevice;
        var c = Generic.ConnectionOf(physicalDevice.Handle);
        var r = (VkResult)(int)Generic.Call(Tables.vkCreateDevice, a);
        if (r != VkResult.VK_SUCCESS) { c.Handles.Forget((ulong)pDevice->Handle); *pDevice = default; return r; }
        // Which memory types can be mapped decides where vkAllocateMemory puts an allocation.
        VkPhysicalDeviceMemoryProperties props;
        a[1] = (ulong)&props;
        Generic.Call(Tables.vkGetPhysicalDeviceMemoryProperties, a);
        uint bits = 0;
        for (int i = 0; i < props.memoryTypeCount && i < 32; i++)
            if ((props.memoryTypes[i].propertyFlags & VkMemoryPropertyFlags.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) != 0) bits |= 1u << i;
        lock (c.HostVisibleTypes) c.HostVisibleTypes[pDevice->Handle] = bits;
        return r;
    }

    public static void vkDestroyDevice(VkDevice device, VkAllocationCallbacks* pAllocator)
    {
        if (device.IsNull) return;
        var c = Generic.ConnectionOf(device.Handle);
        ulong* a = stackalloc ulong[2];
        a[0] = (ulong)device.Handle; a[1] = 0;
        try { Generic.Call(Tables.vkDestroyDevice, a); }
        finally
        {
            lock (c.HostVisibleTypes) c.HostVisibleTypes.Remove(device.Handle);
            c.CommandPools.DeviceDestroyed(device.Handle);
            c.Handles.Forget((ulong)device.Handle);
        }
    }
}
