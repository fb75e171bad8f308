using GuestIcd.Protocol;
using GuestIcd.Vulkan;

namespace GuestIcd.HostSim.Gate;

internal sealed class MemoryState(ulong device, ulong size, uint type)
{
    public readonly ulong Device = device, Size = size;
    public readonly uint Type = type;
    /// <summary>Buffers and images bound to it and not yet destroyed.</summary>
    public int Bound;
    /// <summary>The guest freed it while resources were still bound: the real vkFreeMemory waits for the last
    /// of them, and the guest may not name it again.</summary>
    public bool GuestFreed;
}

/// <summary>Device memory: allocation against the device's types, heaps and allocation limit; binds of
/// buffers and images within the allocation at the driver's alignment; flushes within it; and memory the
/// guest frees while resources are bound to it stays alive on the host until the last of them is gone,
/// so that a recorded command buffer can never write through freed memory.</summary>
internal sealed unsafe partial class ValidUsageGate
{
    readonly Dictionary<ulong, MemoryState> _memory = new();

    bool CheckAllocateMemory(int cmd, ulong* a, DeviceState dev, ref ulong result)
    {
        var ai = (VkMemoryAllocateInfo*)a[1];
        if (ai->memoryTypeIndex >= dev.Memory.memoryTypeCount)
            Fail(cmd, "VUID-vkAllocateMemory-pAllocateInfo-01714", $"memory type {ai->memoryTypeIndex} of {dev.Memory.memoryTypeCount}");
        if (ai->allocationSize == 0) Fail(cmd, "VUID-VkMemoryAllocateInfo-allocationSize-00638", "allocationSize is 0");
        var heap = dev.Memory.memoryHeaps[(int)dev.Memory.memoryTypes[(int)ai->memoryTypeIndex].heapIndex];
        if (ai->allocationSize > heap.size)
        {
            Log($"vkAllocateMemory: {ai->allocationSize} bytes exceed the {heap.size}-byte heap (VUID-vkAllocateMemory-pAllocateInfo-01713)");
            result = Result(VkResult.VK_ERROR_OUT_OF_DEVICE_MEMORY);
            return false;
        }
        if ((uint)dev.Allocations >= dev.Limits.maxMemoryAllocationCount)
        {
            Log($"vkAllocateMemory: {dev.Allocations} allocations live, the device's maxMemoryAllocationCount is {dev.Limits.maxMemoryAllocationCount}");
            result = Result(VkResult.VK_ERROR_TOO_MANY_OBJECTS);
            return false;
        }
        return true;
    }

    void RecordAllocateMemory(ulong* a, DeviceState dev)
    {
        ulong m = *(ulong*)a[3];
        if (m == 0) return;
        var ai = (VkMemoryAllocateInfo*)a[1];
        // The shared-heap path rounds allocationSize up to whole pages before the driver sees it.
        _memory[m] = new MemoryState(dev.Handle, ai->allocationSize, ai->memoryTypeIndex);
        dev.Allocations++;
    }

    MemoryState LiveMemory(int cmd, ulong memory, string what)
    {
        if (!_memory.TryGetValue(memory, out var m))
            Fail(cmd, $"VUID-{N(cmd)}-{what}-parameter", $"memory 0x{memory:X} is not an allocation of this session");
        if (m.GuestFreed) Fail(cmd, $"VUID-{N(cmd)}-{what}-parameter", "the guest already freed this memory");
        return m;
    }

    /// <summary>False: the free is deferred (resources are still bound); the guest sees it done.</summary>
    bool CheckFreeMemory(int cmd, ulong* a, DeviceState dev)
    {
        if (a[1] == 0) return true;
        var m = LiveMemory(cmd, a[1], "memory");
        Drain(dev);
        if (m.Bound == 0) return true;
        m.GuestFreed = true;
        return false;
    }

    /// <summary>A resource bound to <paramref name="memory"/> is gone; memory the guest freed earlier is freed now.</summary>
    void Unbind(ulong memory)
    {
        if (memory == 0 || !_memory.TryGetValue(memory, out var m)) return;
        if (--m.Bound > 0 || !m.GuestFreed) return;
        _memory.Remove(memory);
        _owner.Remove((TypeMemory, memory));
        if (_devices.TryGetValue(m.Device, out var dev)) dev.Allocations--;
        FreeMemory?.Invoke(m.Device, memory);
    }

    void CheckBind(int cmd, string vuidPrefix, MemoryState m, ulong offset, in VkMemoryRequirements req, bool alreadyBound, string what)
    {
        if (alreadyBound) Fail(cmd, vuidPrefix + (what == "buffer" ? "buffer-07459" : "image-07460"), $"the {what} is already bound to memory");
        // Keeps the message the project's earlier check logged.
        if (offset >= m.Size) Fail(cmd, vuidPrefix + "memoryOffset-01031", $"offset {offset} is outside the {m.Size}-byte allocation");
        if (req.alignment != 0 && offset % req.alignment != 0)
            Fail(cmd, vuidPrefix + (what == "buffer" ? "memoryOffset-01036" : "memoryOffset-01048"), $"offset {offset} is not a multiple of the {what}'s alignment {req.alignment}");
        if (req.size > m.Size - offset)
            Fail(cmd, vuidPrefix + (what == "buffer" ? "size-01037" : "size-01049"), $"the {what} needs {req.size} bytes at offset {offset} of a {m.Size}-byte allocation");
        if ((req.memoryTypeBits & (1u << (int)m.Type)) == 0)
            Fail(cmd, vuidPrefix + (what == "buffer" ? "memory-01035" : "memory-01047"), $"memory type {m.Type} is not allowed for this {what} (bits 0x{req.memoryTypeBits:X})");
    }

    void CheckBindBuffer(int cmd, ulong buffer, ulong memory, ulong offset, string prefix)
    {
        var b = Lookup(_buffers, cmd, buffer, "buffer");
        var m = LiveMemory(cmd, memory, "memory");
        CheckBind(cmd, prefix, m, offset, b.Requirements, b.Memory != 0, "buffer");
    }

    void CheckBindImage(int cmd, ulong image, ulong memory, ulong offset, string prefix, void* pNext)
    {
        var i = Lookup(_images, cmd, image, "image");
        if ((i.Flags & VkImageCreateFlags.VK_IMAGE_CREATE_DISJOINT_BIT) != 0)
            Fail(cmd, prefix + "image-01608", "disjoint multi-planar images are not served by hostsim");
        var m = LiveMemory(cmd, memory, "memory");
        CheckBind(cmd, prefix, m, offset, i.Requirements, i.Memory != 0, "image");
    }

    void RecordBindBuffer(ulong buffer, ulong memory)
    {
        if (!_buffers.TryGetValue(buffer, out var b) || !_memory.TryGetValue(memory, out var m)) return;
        b.Memory = memory;
        m.Bound++;
    }

    void RecordBindImage(ulong image, ulong memory)
    {
        if (!_images.TryGetValue(image, out var i) || !_memory.TryGetValue(memory, out var m)) return;
        i.Memory = memory;
        m.Bound++;
    }

    void CheckMappedRanges(int cmd, ulong* a)
    {
        var ranges = (VkMappedMemoryRange*)a[2];
        for (uint i = 0; i < (uint)a[1]; i++)
        {
            var r = ranges[i];
            var m = LiveMemory(cmd, r.memory.Handle, "memory");
            if (r.offset >= m.Size) Fail(cmd, "VUID-VkMappedMemoryRange-offset-00687", $"offset {r.offset} is outside the {m.Size}-byte allocation");
            if (r.size != VkConstants.VK_WHOLE_SIZE && r.size > m.Size - r.offset)
                Fail(cmd, "VUID-VkMappedMemoryRange-size-00685", $"range [{r.offset}, +{r.size}) outside the {m.Size}-byte allocation");
        }
    }
}
