using System.Runtime.InteropServices;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;
using GuestIcd.Vulkan;

namespace GuestIcd.HostSim;

/// <summary>Mapped memory for guests whose transport shares none (TCP, vsock): HOST_VISIBLE allocations stay
/// mapped here, beside a copy of what the guest has last seen, so only changed pages cross the network.</summary>
internal sealed unsafe partial class Session
{
    sealed class HostShadow
    {
        public VkDevice Device;
        public VkDeviceMemory Memory;
        public byte* Mapped, Seen;
        public ulong Size;
    }

    readonly Dictionary<ulong, HostShadow> _shadows = new();
    const int ObjDeviceMemory = 8;

    /// <summary>After vkAllocateMemory on a connection without a shared heap.</summary>
    void ShadowIfMappable(ulong* a)
    {
        var device = new VkDevice((nint)a[0]);
        var ai = (VkMemoryAllocateInfo*)a[1];
        if (!_physicalDevices.TryGetValue(device.Handle, out var pd)) return;
        var propsFn = (delegate* unmanaged<VkPhysicalDevice, VkPhysicalDeviceMemoryProperties*, void>)Fn(Tables.vkGetPhysicalDeviceMemoryProperties);
        VkPhysicalDeviceMemoryProperties props;
        propsFn(pd, &props);
        if (ai->memoryTypeIndex >= props.memoryTypeCount
            || (props.memoryTypes[(int)ai->memoryTypeIndex].propertyFlags & VkMemoryPropertyFlags.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) == 0) return;
        var memory = *(VkDeviceMemory*)a[3];
        var map = (delegate* unmanaged<VkDevice, VkDeviceMemory, ulong, ulong, VkMemoryMapFlags, void**, VkResult>)Fn(Tables.vkMapMemory);
        void* mapped;
        if (map(device, memory, 0, VkConstants.VK_WHOLE_SIZE, 0, &mapped) != VkResult.VK_SUCCESS) return;
        // What the guest has seen starts as zeros (its copy is zeroed, and so is the memory): pages that stay
        // zero never cost the host anything.
        var seen = ZeroedPages(ai->allocationSize);
        _shadows[memory.Handle] = new HostShadow { Device = device, Memory = memory, Mapped = (byte*)mapped, Seen = seen, Size = ai->allocationSize };
    }

    void DropShadow(ulong memory)
    {
        if (_shadows.Remove(memory, out var s)) FreePages(s.Seen, s.Size);
    }

    HostShadow ShadowOf(ref WireReader r)
    {
        ulong host = _objects.FromWire(ObjDeviceMemory, r.U64());
        if (!_shadows.TryGetValue(host, out var s)) throw new ProtocolException("memory transfer for an allocation that is not mapped host-visible memory");
        return s;
    }

    /// <summary>Private command WriteMemory: the guest's changed pages.</summary>
    void WriteMemory(ReadOnlySpan<byte> payload)
    {
        var r = new WireReader(payload);
        var s = ShadowOf(ref r);
        DirtyPages.Apply(ref r, r.U32(), s.Mapped, s.Seen, s.Size);
        r.ExpectEnd();
        Range(s, Tables.vkFlushMappedMemoryRanges);
    }

    /// <summary>Private command ReadMemory: the pages the device changed since the guest last saw them.</summary>
    void ReadMemory(ReadOnlySpan<byte> payload)
    {
        var r = new WireReader(payload);
        var s = ShadowOf(ref r);
        ulong from = r.U64();
        r.ExpectEnd();
        if (from >= s.Size) throw new ProtocolException($"memory read from {from} beyond the {s.Size}-byte allocation");
        if (from == 0) Range(s, Tables.vkInvalidateMappedMemoryRanges);
        _writer.Reset();
        int at = _writer.BeginReply(PrivateCommands.ReadMemory, _sequence);
        int nextAt = _writer.Position;
        _writer.U64(0);
        int countAt = _writer.Position;
        _writer.U32(0);
        uint runs = DirtyPages.AppendChanged(s.Mapped, s.Seen, s.Size, _writer, ref from);
        _writer.PatchU32(countAt, runs);
        _writer.PatchU64(nextAt, from);
        _writer.EndReply(at);
        transport.Write(_writer.Written);
        transport.Flush();
        BytesOut += _writer.Written.Length;
        Replies++;
    }

    /// <summary>Flush or invalidate the whole allocation: required for non-coherent types, harmless otherwise.</summary>
    void Range(HostShadow s, int command)
    {
        var range = new VkMappedMemoryRange { sType = VkStructureType.VK_STRUCTURE_TYPE_MAPPED_MEMORY_RANGE, memory = s.Memory, size = VkConstants.VK_WHOLE_SIZE };
        var fn = (delegate* unmanaged<VkDevice, uint, VkMappedMemoryRange*, VkResult>)Fn(command);
        fn(s.Device, 1, &range);
    }
}
