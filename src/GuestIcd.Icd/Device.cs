using GuestIcd.Protocol;
using GuestIcd.Vulkan;

namespace GuestIcd.Icd;

/// <summary>What the guest remembers about one VkDevice, attached to its dispatchable object: the device's
/// families keep their state here (memory, descriptor update templates), so two devices, or two
/// instances whose handle ids coincide, never share it.</summary>
internal sealed unsafe partial class GuestDevice(Connection connection, uint hostVisibleTypes)
{
    public readonly Connection Connection = connection;
    /// <summary>The memory types that are HOST_VISIBLE (bit per index): where vkAllocateMemory puts an allocation.</summary>
    public readonly uint HostVisibleTypes = hostVisibleTypes;
    public readonly DeviceMemories Memory = new();
    public readonly DescriptorTemplates Templates = new();

    public static GuestDevice Of(VkDevice device) =>
        GuestHandleMap.StateOf<GuestDevice>(device.Handle) ?? throw new InvalidOperationException("not a device of this driver");

    /// <summary>The device a queue or command buffer belongs to.</summary>
    public static GuestDevice OfChild(nint dispatchable) =>
        GuestHandleMap.StateOf<GuestDevice>(Generic.ConnectionOf(dispatchable).Handles.ParentOf(dispatchable))
        ?? throw new InvalidOperationException("the object's device is not known to this driver");
}

internal static unsafe partial class Entry
{
    public static VkResult vkCreateDevice(VkPhysicalDevice physicalDevice, VkDeviceCreateInfo* pCreateInfo, VkAllocationCallbacks* pAllocator, VkDevice* pDevice)
    {
        ulong* a = stackalloc ulong[4];
        VkDeviceCreateInfo stripped;
        byte** kept = stackalloc byte*[WsiStrip.MaxNames];
        a[0] = (ulong)physicalDevice.Handle; a[1] = (ulong)WsiStrip.Device(pCreateInfo, &stripped, kept); a[2] = 0; a[3] = (ulong)pDevice;
        var c = Generic.ConnectionOf(physicalDevice.Handle);
        var r = (VkResult)(int)Generic.Call(Tables.vkCreateDevice, a);
        if (r != VkResult.VK_SUCCESS) { c.Handles.Forget((ulong)pDevice->Handle); *pDevice = default; return r; }
        VkPhysicalDeviceMemoryProperties props;
        a[1] = (ulong)&props;
        Generic.Call(Tables.vkGetPhysicalDeviceMemoryProperties, a);
        uint bits = 0;
        for (int i = 0; i < props.memoryTypeCount && i < 32; i++)
            if ((props.memoryTypes[i].propertyFlags & VkMemoryPropertyFlags.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) != 0) bits |= 1u << i;
        GuestHandleMap.Attach(pDevice->Handle, new GuestDevice(c, bits)
        {
            QueueFamily = pCreateInfo->queueCreateInfoCount > 0 && pCreateInfo->pQueueCreateInfos != null ? pCreateInfo->pQueueCreateInfos[0].queueFamilyIndex : 0,
        });
        return r;
    }

    public static void vkDestroyDevice(VkDevice device, VkAllocationCallbacks* pAllocator)
    {
        if (device.IsNull) return;
        var dev = GuestDevice.Of(device);
        var c = dev.Connection;
        ulong* a = stackalloc ulong[2];
        a[0] = (ulong)device.Handle; a[1] = 0;
        try { Generic.Call(Tables.vkDestroyDevice, a); }
        finally
        {
            // Whatever the application left goes with the device: shared-heap ranges, local copies of mapped
            // memory, and every dispatchable object under it (its queues; command buffers of pools it left).
            int memories = dev.Memory.ReleaseAll(c);
            c.CommandPools.DeviceDestroyed(device.Handle);
            int children = c.Handles.ForgetTree((ulong)device.Handle);
            if (memories > 0) Log.Info($"vkDestroyDevice: {memories} memory allocations were still live");
            Log.Debug($"vkDestroyDevice: released {children} dispatchable objects under the device");
        }
    }
}
