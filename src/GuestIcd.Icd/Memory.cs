using GuestIcd.Protocol;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkResult;

namespace GuestIcd.Icd;

/// <summary>Device memory. HOST_VISIBLE allocations are ranges of the connection's shared heap, imported
/// by the host driver (VK_EXT_external_memory_host): the application's mapping and the driver's memory are
/// the same pages, so mapping costs no round trip and nothing is copied at submit.</summary>
internal static unsafe partial class Entry
{
    public static VkResult vkAllocateMemory(VkDevice device, VkMemoryAllocateInfo* pAllocateInfo, VkAllocationCallbacks* pAllocator, VkDeviceMemory* pMemory)
    {
        var c = Generic.ConnectionOf(device.Handle);
        ulong* a = stackalloc ulong[4];
        a[0] = (ulong)device.Handle; a[1] = (ulong)pAllocateInfo; a[2] = 0; a[3] = (ulong)pMemory;
        bool visible = IsHostVisible(c, device, pAllocateInfo->memoryTypeIndex);
        if (!visible || c.Heap is null)
        {
            var result = (VkResult)(int)c.Call(Tables.vkAllocateMemory, a);
            // No shared memory on this transport: the application maps a local copy that travels by changed pages.
            if (result == VK_SUCCESS && visible) c.AddShadow(pMemory->Handle, pAllocateInfo->allocationSize);
            return result;
        }

        ulong size = HeapAllocator.RoundUp(pAllocateInfo->allocationSize);
        if (!c.Heap!.TryAllocate(size, out var offset))
        {
            Log.Warn($"the shared heap has no room for {size} bytes (GUESTICD_HEAP_MB sets its size)");
            return VK_ERROR_OUT_OF_DEVICE_MEMORY;
        }
        var r = (VkResult)(int)c.CallSharedAllocation(offset, size, a);
        if (r != VK_SUCCESS) { c.Heap.Free(offset, size); return r; }
        lock (c.SharedMemory) c.SharedMemory[pMemory->Handle] = (offset, size);
        return r;
    }

    static bool IsHostVisible(Connection c, VkDevice device, uint typeIndex)
    {
        lock (c.HostVisibleTypes)
            return typeIndex < 32 && c.HostVisibleTypes.TryGetValue(device.Handle, out var bits) && (bits & (1u << (int)typeIndex)) != 0;
    }

    public static void vkFreeMemory(VkDevice device, VkDeviceMemory memory, VkAllocationCallbacks* pAllocator)
    {
        if (memory.IsNull) return;
        var c = Generic.ConnectionOf(device.Handle);
        ulong* a = stackalloc ulong[3];
        a[0] = (ulong)device.Handle; a[1] = memory.Handle; a[2] = 0;
        c.Call(Tables.vkFreeMemory, a);
        c.RemoveShadow(memory.Handle);
        // The free is queued ahead of any later allocation in the same stream, so the range can be reused at once.
        (ulong Offset, ulong Size) range;
        bool had;
        lock (c.SharedMemory) had = c.SharedMemory.Remove(memory.Handle, out range);
        if (had) c.Heap!.Free(range.Offset, range.Size);
    }

    public static VkResult vkMapMemory(VkDevice device, VkDeviceMemory memory, ulong offset, ulong size, VkMemoryMapFlags flags, void** ppData)
    {
        var c = Generic.ConnectionOf(device.Handle);
        (ulong Offset, ulong Size) range;
        bool had;
        lock (c.SharedMemory) had = c.SharedMemory.TryGetValue(memory.Handle, out range);
        if (!had && c.MapShadow(memory.Handle) is var shadow && shadow != null)
        {
            *ppData = shadow + offset;
            return VK_SUCCESS;
        }
        if (!had || offset >= range.Size)
        {
            Log.Warn($"vkMapMemory on memory that is not HOST_VISIBLE shared memory (or offset {offset} beyond it)");
            return VK_ERROR_MEMORY_MAP_FAILED;
        }
        *ppData = c.HeapBase + range.Offset + offset;
        return VK_SUCCESS;
    }

    /// <summary>Shared pages stay shared for the allocation's lifetime; a local copy sends what changed.</summary>
    public static void vkUnmapMemory(VkDevice device, VkDeviceMemory memory) => Generic.ConnectionOf(device.Handle).PushShadows();
}
