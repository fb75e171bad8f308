using System.Runtime.InteropServices;
using GuestIcd.Protocol;
using GuestIcd.Transport.Native;
using GuestIcd.Vulkan;
using Microsoft.Extensions.Logging;
using static GuestIcd.Vulkan.VkResult;

namespace GuestIcd.HostSim;

/// <summary>Every allocation a guest sees starts zeroed: drivers hand out recycled memory (lavapipe's is
/// malloc'd; a GPU's may hold another guest's last frame), and the guest's own heap ranges are reused by its
/// allocator. How depends on where the memory lives:
/// - shared-heap ranges (unix memfd, vm ivshmem file): MADV_REMOVE punches them out of the file, so they read
///   as zero on both sides and stop holding memory; memset where the file cannot punch holes;
/// - driver memory the host can map: cached types are scanned and only pages that are not already zero are
///   cleared (fresh pages stay unbacked); uncached (write-combined) types are cleared outright, since reading
///   them is slow;
/// - driver memory the host cannot map (device-local on a GPU): vkCmdFillBuffer through temporary buffers on a
///   queue of the device. Memory no buffer may be bound to (dedicated to an image, an image-only type, lazily
///   allocated or protected) cannot be zeroed that way and is not mappable either; that is logged once.
/// GUESTICD_ZERO_BY_TRANSFER=1 in hostsim's environment uses the transfer path wherever it is possible, so
/// the GPU path is exercised on hosts (lavapipe) whose memory is all mappable.</summary>
internal sealed unsafe partial class Session
{
    static readonly bool s_zeroByTransfer = Environment.GetEnvironmentVariable("GUESTICD_ZERO_BY_TRANSFER") == "1";

    /// <summary>Zeroed memory that costs nothing until written (anonymous pages read as the zero page).</summary>
    static byte* ZeroedPages(ulong size)
    {
        // Windows hosts (hyperv:, tcp: only): committed zeroed memory; the lazy zero page is a Linux economy.
        if (!OperatingSystem.IsLinux()) return (byte*)NativeMemory.AllocZeroed((nuint)Math.Max(size, 1));
        var p = Libc.mmap(null, (nuint)Math.Max(size, 1), Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS, -1, 0);
        if (p == Libc.MAP_FAILED) throw new OutOfMemoryException($"mmap of {size} bytes failed ({Libc.Describe(Libc.Errno)})");
        return (byte*)p;
    }

    static void FreePages(byte* p, ulong size)
    {
        if (!OperatingSystem.IsLinux()) NativeMemory.Free(p);
        else Libc.munmap(p, (nuint)Math.Max(size, 1));
    }

    /// <summary>A shared-heap range about to be handed to the driver.</summary>
    static void ZeroShared(byte* p, ulong size)
    {
        if (OperatingSystem.IsLinux() && ((nint)p & 4095) == 0 && size % 4096 == 0 && Libc.madvise(p, (nuint)size, Libc.MADV_REMOVE) == 0) return;
        NativeMemory.Clear(p, (nuint)size);
    }

    /// <summary>Clears the pages that are not zero; untouched pages are only read (and stay unbacked).</summary>
    static void ClearNonZeroPages(byte* p, ulong size)
    {
        for (ulong at = 0; at < size; at += 4096)
        {
            var page = new Span<byte>(p + at, (int)Math.Min(4096, size - at));
            if (page.IndexOfAnyExcept((byte)0) >= 0) page.Clear();
        }
    }

    readonly Dictionary<nint, VkPhysicalDeviceMemoryProperties> _memoryProperties = new();

    VkMemoryPropertyFlags MemoryTypeFlags(VkDevice device, uint typeIndex)
    {
        if (!_memoryProperties.TryGetValue(device.Handle, out var props))
        {
            if (!_physicalDevices.TryGetValue(device.Handle, out var pd)) return 0;
            var fn = (delegate* unmanaged<VkPhysicalDevice, VkPhysicalDeviceMemoryProperties*, void>)Fn(Tables.vkGetPhysicalDeviceMemoryProperties);
            fn(pd, &props);
            _memoryProperties[device.Handle] = props;
        }
        return typeIndex < props.memoryTypeCount ? props.memoryTypes[(int)typeIndex].propertyFlags : 0;
    }

    bool _reportedUnzeroed;

    /// <summary>After a driver allocation succeeded, before the guest can see it.</summary>
    void ZeroNewMemory(VkDevice device, VkDeviceMemory memory, VkMemoryAllocateInfo* ai)
    {
        var flags = MemoryTypeFlags(device, ai->memoryTypeIndex);
        ulong size = ai->allocationSize;
        bool dedicatedImage = FindInChain(ai->pNext, VkStructureType.VK_STRUCTURE_TYPE_MEMORY_DEDICATED_ALLOCATE_INFO) is var d && d != null
                              && !((VkMemoryDedicatedAllocateInfo*)d)->image.IsNull;
        bool special = (flags & (VkMemoryPropertyFlags.VK_MEMORY_PROPERTY_LAZILY_ALLOCATED_BIT | VkMemoryPropertyFlags.VK_MEMORY_PROPERTY_PROTECTED_BIT)) != 0;
        bool mappable = (flags & VkMemoryPropertyFlags.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) != 0;
        if (!dedicatedImage && !special && (s_zeroByTransfer || !mappable) && ZeroByTransfer(device, memory, size, ai->memoryTypeIndex)) return;
        if (mappable)
        {
            bool cached = (flags & VkMemoryPropertyFlags.VK_MEMORY_PROPERTY_HOST_CACHED_BIT) != 0;
            if (_shadows.TryGetValue(memory.Handle, out var s)) { Clear(s.Mapped, size, cached); Range(s, Tables.vkFlushMappedMemoryRanges); return; }
            var map = (delegate* unmanaged<VkDevice, VkDeviceMemory, ulong, ulong, VkMemoryMapFlags, void**, VkResult>)Fn(Tables.vkMapMemory);
            var unmap = (delegate* unmanaged<VkDevice, VkDeviceMemory, void>)Fn(Tables.vkUnmapMemory);
            void* mapped;
            if (map(device, memory, 0, VkConstants.VK_WHOLE_SIZE, 0, &mapped) == VK_SUCCESS)
            {
                Clear((byte*)mapped, size, cached);
                if ((flags & VkMemoryPropertyFlags.VK_MEMORY_PROPERTY_HOST_COHERENT_BIT) == 0)
                {
                    var range = new VkMappedMemoryRange { sType = VkStructureType.VK_STRUCTURE_TYPE_MAPPED_MEMORY_RANGE, memory = memory, size = VkConstants.VK_WHOLE_SIZE };
                    ((delegate* unmanaged<VkDevice, uint, VkMappedMemoryRange*, VkResult>)Fn(Tables.vkFlushMappedMemoryRanges))(device, 1, &range);
                }
                unmap(device, memory);
                return;
            }
        }
        if (!_reportedUnzeroed)
        {
            _reportedUnzeroed = true;
            log.LogWarning("session {Session}: memory type {Type} ({Flags}) cannot be zeroed by the host (not mappable, and no buffer may be bound to it: dedicated to an image, image-only, lazily allocated or protected); it is handed out as the driver gave it",
                Id, ai->memoryTypeIndex, flags);
        }
    }

    static void Clear(byte* p, ulong size, bool cached)
    {
        if (cached) ClearNonZeroPages(p, size);
        else NativeMemory.Clear(p, (nuint)size);
    }

    /// <summary>The queue family of the first unprotected queue each device was created with.</summary>
    readonly Dictionary<nint, uint> _queueFamilies = new();

    void RememberQueueFamily(VkDevice device, VkDeviceCreateInfo* ci)
    {
        for (uint i = 0; i < ci->queueCreateInfoCount; i++)
            if (ci->pQueueCreateInfos[i].flags == 0 && ci->pQueueCreateInfos[i].queueCount > 0)
            {
                _queueFamilies[device.Handle] = ci->pQueueCreateInfos[i].queueFamilyIndex;
                return;
            }
    }

    /// <summary>vkCmdFillBuffer(0) over the whole allocation through temporary buffers bound to it, on queue 0 of
    /// the device's first family (every family with queues can fill buffers), waited for before the guest hears
    /// of the allocation. False when no buffer may be bound to this memory type.</summary>
    bool ZeroByTransfer(VkDevice device, VkDeviceMemory memory, ulong size, uint typeIndex)
    {
        if (!_queueFamilies.TryGetValue(device.Handle, out var family) || size < 4) return false;
        var createBuffer = (delegate* unmanaged<VkDevice, VkBufferCreateInfo*, void*, VkBuffer*, VkResult>)DeviceFn(device, "vkCreateBuffer");
        var destroyBuffer = (delegate* unmanaged<VkDevice, VkBuffer, void*, void>)DeviceFn(device, "vkDestroyBuffer");
        var requirements = (delegate* unmanaged<VkDevice, VkBuffer, VkMemoryRequirements*, void>)DeviceFn(device, "vkGetBufferMemoryRequirements");
        var bind = (delegate* unmanaged<VkDevice, VkBuffer, VkDeviceMemory, ulong, VkResult>)DeviceFn(device, "vkBindBufferMemory");
        var getQueue = (delegate* unmanaged<VkDevice, uint, uint, VkQueue*, void>)DeviceFn(device, "vkGetDeviceQueue");
        var createPool = (delegate* unmanaged<VkDevice, VkCommandPoolCreateInfo*, void*, VkCommandPool*, VkResult>)DeviceFn(device, "vkCreateCommandPool");
        var destroyPool = (delegate* unmanaged<VkDevice, VkCommandPool, void*, void>)DeviceFn(device, "vkDestroyCommandPool");
        var allocate = (delegate* unmanaged<VkDevice, VkCommandBufferAllocateInfo*, VkCommandBuffer*, VkResult>)DeviceFn(device, "vkAllocateCommandBuffers");
        var begin = (delegate* unmanaged<VkCommandBuffer, VkCommandBufferBeginInfo*, VkResult>)DeviceFn(device, "vkBeginCommandBuffer");
        var end = (delegate* unmanaged<VkCommandBuffer, VkResult>)DeviceFn(device, "vkEndCommandBuffer");
        var fill = (delegate* unmanaged<VkCommandBuffer, VkBuffer, ulong, ulong, uint, void>)DeviceFn(device, "vkCmdFillBuffer");
        var createFence = (delegate* unmanaged<VkDevice, VkFenceCreateInfo*, void*, VkFence*, VkResult>)DeviceFn(device, "vkCreateFence");
        var destroyFence = (delegate* unmanaged<VkDevice, VkFence, void*, void>)DeviceFn(device, "vkDestroyFence");
        var submit = (delegate* unmanaged<VkQueue, uint, VkSubmitInfo*, VkFence, VkResult>)DeviceFn(device, "vkQueueSubmit");
        var wait = (delegate* unmanaged<VkDevice, uint, VkFence*, uint, ulong, VkResult>)DeviceFn(device, "vkWaitForFences");

        // Buffers are bound at multiples of the chunk, which every buffer alignment divides.
        const ulong Chunk = 1UL << 30;
        int count = (int)((size + Chunk - 1) / Chunk);
        var buffers = new VkBuffer[count];
        bool ok = true;
        int made = 0;
        for (; made < count && ok; made++)
        {
            ulong offset = (ulong)made * Chunk, bytes = Math.Min(Chunk, size - offset);
            var bci = new VkBufferCreateInfo
            {
                sType = VkStructureType.VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, size = bytes,
                usage = VkBufferUsageFlags.VK_BUFFER_USAGE_TRANSFER_DST_BIT, sharingMode = VkSharingMode.VK_SHARING_MODE_EXCLUSIVE,
            };
            VkBuffer b;
            if (createBuffer(device, &bci, null, &b) != VK_SUCCESS) { ok = false; break; }
            buffers[made] = b;
            VkMemoryRequirements req;
            requirements(device, b, &req);
            ok = (req.memoryTypeBits & (1u << (int)typeIndex)) != 0 && req.size <= size - offset
                 && (req.alignment == 0 || offset % req.alignment == 0) && bind(device, b, memory, offset) == VK_SUCCESS;
        }
        VkCommandPool pool = default;
        VkFence fence = default;
        if (ok)
        {
            var pci = new VkCommandPoolCreateInfo
            {
                sType = VkStructureType.VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, queueFamilyIndex = family,
                flags = VkCommandPoolCreateFlags.VK_COMMAND_POOL_CREATE_TRANSIENT_BIT,
            };
            var fci = new VkFenceCreateInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
            ok = createPool(device, &pci, null, &pool) == VK_SUCCESS && createFence(device, &fci, null, &fence) == VK_SUCCESS;
        }
        if (ok)
        {
            var cai = new VkCommandBufferAllocateInfo
            {
                sType = VkStructureType.VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, commandPool = pool,
                level = VkCommandBufferLevel.VK_COMMAND_BUFFER_LEVEL_PRIMARY, commandBufferCount = 1,
            };
            VkCommandBuffer cb;
            var cbi = new VkCommandBufferBeginInfo
            {
                sType = VkStructureType.VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, flags = VkCommandBufferUsageFlags.VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
            };
            ok = allocate(device, &cai, &cb) == VK_SUCCESS && begin(cb, &cbi) == VK_SUCCESS;
            if (ok)
            {
                for (int i = 0; i < count; i++) fill(cb, buffers[i], 0, VkConstants.VK_WHOLE_SIZE, 0);
                VkQueue queue;
                getQueue(device, family, 0, &queue);
                var si = new VkSubmitInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_SUBMIT_INFO, commandBufferCount = 1, pCommandBuffers = &cb };
                ok = end(cb) == VK_SUCCESS && !queue.IsNull && submit(queue, 1, &si, fence) == VK_SUCCESS;
                // The buffers and command buffer may not be destroyed while the fill runs: wait for it whatever it takes.
                if (ok && wait(device, 1, &fence, 1, 10_000_000_000UL) != VK_SUCCESS) s_deviceWaitIdle(device);
            }
        }
        if (!fence.IsNull) destroyFence(device, fence, null);
        if (!pool.IsNull) destroyPool(device, pool, null);
        for (int i = 0; i < made && i < count; i++) if (!buffers[i].IsNull) destroyBuffer(device, buffers[i], null);
        if (!ok) log.LogDebug("session {Session}: zeroing memory type {Type} through the device was not possible", Id, typeIndex);
        return ok;
    }
}
