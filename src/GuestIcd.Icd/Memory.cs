using GuestIcd.Protocol;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkResult;

namespace GuestIcd.Icd;

/// <summary>A device's HOST_VISIBLE memory objects: which range of the connection's shared heap each one is
/// (or that it is a local copy, on transports without shared memory). Kept per device because memory
/// handles are ids that only mean something within their connection.</summary>
internal sealed class DeviceMemories
{
    /// <param name="Shared">A range of the shared heap; otherwise the connection keeps a local copy (shadow).</param>
    public readonly record struct Allocation(ulong Offset, ulong Size, bool Shared);

    readonly Dictionary<ulong, Allocation> _byHandle = new();

    public int Count { get { lock (_byHandle) return _byHandle.Count; } }

    public void Add(ulong memory, Allocation a) { lock (_byHandle) _byHandle[memory] = a; }

    public bool TryGet(ulong memory, out Allocation a) { lock (_byHandle) return _byHandle.TryGetValue(memory, out a); }

    public bool Remove(ulong memory, out Allocation a) { lock (_byHandle) return _byHandle.Remove(memory, out a); }

    /// <summary>The device is gone: its heap ranges are free again and its local copies are dropped.</summary>
    public int ReleaseAll(Connection c)
    {
        KeyValuePair<ulong, Allocation>[] left;
        lock (_byHandle) { left = _byHandle.ToArray(); _byHandle.Clear(); }
        foreach (var (memory, a) in left) Release(c, memory, a);
        return left.Length;
    }

    public static void Release(Connection c, ulong memory, Allocation a)
    {
        if (a.Shared) c.Heap!.Free(a.Offset, a.Size);
        else c.RemoveShadow(memory);
    }
}

/// <summary>Device memory. HOST_VISIBLE allocations are ranges of the connection's shared heap, imported
/// by the host driver (VK_EXT_external_memory_host): the application's mapping and the driver's memory are
/// the same pages, so mapping costs no round trip and nothing is copied at submit.</summary>
internal static unsafe partial class Entry
{
    public static VkResult vkAllocateMemory(VkDevice device, VkMemoryAllocateInfo* pAllocateInfo, VkAllocationCallbacks* pAllocator, VkDeviceMemory* pMemory)
    {
        var dev = GuestDevice.Of(device);
        var c = dev.Connection;
        ulong* a = stackalloc ulong[4];
        a[0] = (ulong)device.Handle; a[1] = (ulong)pAllocateInfo; a[2] = 0; a[3] = (ulong)pMemory;
        uint type = pAllocateInfo->memoryTypeIndex;
        bool visible = type < 32 && (dev.HostVisibleTypes & (1u << (int)type)) != 0;
        if (!visible || c.Heap is null)
        {
            var result = (VkResult)(int)c.Call(Tables.vkAllocateMemory, a);
            // No shared memory on this transport: the application maps a local copy that travels by changed pages.
            if (result == VK_SUCCESS && visible)
            {
                c.AddShadow(pMemory->Handle, pAllocateInfo->allocationSize);
                dev.Memory.Add(pMemory->Handle, new(0, pAllocateInfo->allocationSize, Shared: false));
            }
            return result;
        }

        ulong size = HeapAllocator.RoundUp(pAllocateInfo->allocationSize);
        if (!c.Heap.TryAllocate(size, out var offset))
        {
            Log.Warn($"the shared heap has no room for {size} bytes (GUESTICD_HEAP_MB sets its size)");
            return VK_ERROR_OUT_OF_DEVICE_MEMORY;
        }
        var r = (VkResult)(int)c.CallSharedAllocation(offset, size, a);
        if (r != VK_SUCCESS) { c.Heap.Free(offset, size); return r; }
        dev.Memory.Add(pMemory->Handle, new(offset, size, Shared: true));
        return r;
    }

    public static void vkFreeMemory(VkDevice device, VkDeviceMemory memory, VkAllocationCallbacks* pAllocator)
    {
        if (memory.IsNull) return;
        var dev = GuestDevice.Of(device);
        var c = dev.Connection;
        ulong* a = stackalloc ulong[3];
        a[0] = (ulong)device.Handle; a[1] = memory.Handle; a[2] = 0;
        c.Call(Tables.vkFreeMemory, a);
        // The free is queued ahead of any later allocation in the same stream, so the range can be reused at once.
        if (dev.Memory.Remove(memory.Handle, out var range)) DeviceMemories.Release(c, memory.Handle, range);
    }

    public static VkResult vkMapMemory(VkDevice device, VkDeviceMemory memory, ulong offset, ulong size, VkMemoryMapFlags flags, void** ppData)
    {
        var dev = GuestDevice.Of(device);
        var c = dev.Connection;
        bool had = dev.Memory.TryGet(memory.Handle, out var range);
        if (had && !range.Shared && c.MapShadow(memory.Handle) is var shadow && shadow != null)
        {
            *ppData = shadow + offset;
            return VK_SUCCESS;
        }
        if (!had || !range.Shared || offset >= range.Size)
        {
            Log.Warn($"vkMapMemory on memory that is not HOST_VISIBLE shared memory (or offset {offset} beyond it)");
            return VK_ERROR_MEMORY_MAP_FAILED;
        }
        *ppData = c.HeapBase + range.Offset + offset;
        return VK_SUCCESS;
    }

    /// <summary>Shared pages stay shared for the allocation's lifetime; a local copy sends what changed.</summary>
    public static void vkUnmapMemory(VkDevice device, VkDeviceMemory memory) => GuestDevice.Of(device).Connection.PushShadows();
}
