using GuestIcd.Protocol;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkBufferUsageFlags;

namespace GuestIcd.HostSim.Gate;

internal sealed class BufferState(ulong device, ulong size, VkBufferUsageFlags usage)
{
    public readonly ulong Device = device, Size = size;
    public readonly VkBufferUsageFlags Usage = usage;
    public VkMemoryRequirements Requirements;
    public ulong Memory;
}

internal sealed class BufferViewState(ulong device, ulong buffer)
{
    public readonly ulong Device = device, Buffer = buffer;
}

/// <summary>Buffers and buffer views: sizes and usage at creation, the driver's memory requirements, and
/// every range a command or descriptor names checked against the buffer it falls in.</summary>
internal sealed unsafe partial class ValidUsageGate
{
    readonly Dictionary<ulong, BufferState> _buffers = new();
    readonly Dictionary<ulong, BufferViewState> _bufferViews = new();

    void CheckCreateBuffer(int cmd, ulong* a, DeviceState dev)
    {
        var ci = (VkBufferCreateInfo*)a[1];
        if (ci->size == 0) Fail(cmd, "VUID-VkBufferCreateInfo-size-00912", "size is 0");
        if ((ci->flags & (VkBufferCreateFlags.VK_BUFFER_CREATE_SPARSE_BINDING_BIT | VkBufferCreateFlags.VK_BUFFER_CREATE_SPARSE_RESIDENCY_BIT
                          | VkBufferCreateFlags.VK_BUFFER_CREATE_SPARSE_ALIASED_BIT)) != 0)
            Fail(cmd, "VUID-VkBufferCreateInfo-flags-00915", "sparse buffers are not served by hostsim");
        if ((ci->usage & VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT) != 0)
            Fail(cmd, "VUID-VkBufferCreateInfo-usage-parameter", "VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT needs bufferDeviceAddress, which hostsim never enables");
    }

    void RecordCreateBuffer(ulong* a, DeviceState dev)
    {
        ulong h = *(ulong*)a[3];
        if (h == 0) return;
        var ci = (VkBufferCreateInfo*)a[1];
        var s = new BufferState(dev.Handle, ci->size, ci->usage);
        var get = dev.Fn<nint>("vkGetBufferMemoryRequirements", _instanceProc);
        VkMemoryRequirements req;
        ((delegate* unmanaged<nint, ulong, VkMemoryRequirements*, void>)get)((nint)dev.Handle, h, &req);
        s.Requirements = req;
        _buffers[h] = s;
    }

    void ForgetBuffer(ulong h)
    {
        if (_buffers.Remove(h, out var b)) Unbind(b.Memory);
    }

    /// <summary>A buffer a command uses: live, of this session, bound to memory the guest has not freed.</summary>
    BufferState UsedBuffer(int cmd, ulong buffer, string what)
    {
        if (!_buffers.TryGetValue(buffer, out var b))
            Fail(cmd, $"VUID-{N(cmd)}-{what}-parameter", $"{what} is not a live buffer of this session");
        if (b.Memory == 0) Fail(cmd, $"VUID-{N(cmd)}-{what}-00121", $"{what} is not bound to memory");
        if (_memory.TryGetValue(b.Memory, out var m) && m.GuestFreed)
            Fail(cmd, $"VUID-{N(cmd)}-{what}-00121", $"{what} is bound to memory the guest freed");
        return b;
    }

    /// <summary>[offset, offset+size) inside the buffer, without overflow.</summary>
    static void InBuffer(int cmd, BufferState b, ulong offset, ulong size, string vuidOffset, string vuidSize, string what)
    {
        if (offset >= b.Size) Fail(cmd, V(cmd, vuidOffset), $"{what} offset {offset} is outside the {b.Size}-byte buffer");
        if (size > b.Size - offset) Fail(cmd, V(cmd, vuidSize), $"{what} [{offset}, +{size}) runs past the {b.Size}-byte buffer");
    }

    void CheckCopyBuffer(int cmd, ulong src, ulong dst, uint count, VkBufferCopy* regions)
    {
        var s = UsedBuffer(cmd, src, "srcBuffer");
        var d = UsedBuffer(cmd, dst, "dstBuffer");
        for (uint i = 0; i < count; i++)
        {
            var r = regions[i];
            if (r.size == 0) Fail(cmd, "VUID-VkBufferCopy-size-01988", "region size is 0");
            InBuffer(cmd, s, r.srcOffset, r.size, "srcOffset-00113", "size-00115", "source");
            InBuffer(cmd, d, r.dstOffset, r.size, "dstOffset-00114", "size-00116", "destination");
        }
    }

    void CheckCopyBuffer2(int cmd, VkCopyBufferInfo2* info)
    {
        var s = UsedBuffer(cmd, info->srcBuffer.Handle, "srcBuffer");
        var d = UsedBuffer(cmd, info->dstBuffer.Handle, "dstBuffer");
        for (uint i = 0; i < info->regionCount; i++)
        {
            var r = info->pRegions[i];
            if (r.size == 0) Fail(cmd, "VUID-VkBufferCopy2-size-01988", "region size is 0");
            InBuffer(cmd, s, r.srcOffset, r.size, "VUID-VkCopyBufferInfo2-srcOffset-00113", "VUID-VkCopyBufferInfo2-size-00115", "source");
            InBuffer(cmd, d, r.dstOffset, r.size, "VUID-VkCopyBufferInfo2-dstOffset-00114", "VUID-VkCopyBufferInfo2-size-00116", "destination");
        }
    }

    void CheckFillBuffer(int cmd, ulong* a)
    {
        var b = UsedBuffer(cmd, a[1], "dstBuffer");
        ulong offset = a[2], size = a[3];
        if (offset >= b.Size) Fail(cmd, "VUID-vkCmdFillBuffer-dstOffset-00024", $"offset {offset} is outside the {b.Size}-byte buffer");
        if (offset % 4 != 0) Fail(cmd, "VUID-vkCmdFillBuffer-dstOffset-00025", $"offset {offset} is not a multiple of 4");
        if (size == VkConstants.VK_WHOLE_SIZE) return;
        if (size == 0) Fail(cmd, "VUID-vkCmdFillBuffer-size-00026", "size is 0");
        if (size > b.Size - offset) Fail(cmd, "VUID-vkCmdFillBuffer-size-00027", $"[{offset}, +{size}) runs past the {b.Size}-byte buffer");
        if (size % 4 != 0) Fail(cmd, "VUID-vkCmdFillBuffer-size-00028", $"size {size} is not a multiple of 4");
    }

    void CheckUpdateBuffer(int cmd, ulong* a)
    {
        var b = UsedBuffer(cmd, a[1], "dstBuffer");
        ulong offset = a[2], size = a[3];
        if (offset >= b.Size) Fail(cmd, "VUID-vkCmdUpdateBuffer-dstOffset-00032", $"offset {offset} is outside the {b.Size}-byte buffer");
        if (size > b.Size - offset) Fail(cmd, "VUID-vkCmdUpdateBuffer-dataSize-00033", $"[{offset}, +{size}) runs past the {b.Size}-byte buffer");
        if (offset % 4 != 0) Fail(cmd, "VUID-vkCmdUpdateBuffer-dstOffset-00036", $"offset {offset} is not a multiple of 4");
        if (size == 0 || size > 65536) Fail(cmd, "VUID-vkCmdUpdateBuffer-dataSize-00037", $"dataSize {size} is not in (0, 65536]");
        if (size % 4 != 0) Fail(cmd, "VUID-vkCmdUpdateBuffer-dataSize-00038", $"dataSize {size} is not a multiple of 4");
    }

    void CheckCreateBufferView(int cmd, ulong* a, DeviceState dev)
    {
        var ci = (VkBufferViewCreateInfo*)a[1];
        var b = UsedBuffer(cmd, ci->buffer.Handle, "buffer");
        if ((b.Usage & (VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT | VK_BUFFER_USAGE_STORAGE_TEXEL_BUFFER_BIT)) == 0)
            Fail(cmd, "VUID-VkBufferViewCreateInfo-buffer-00932", "the buffer has no texel-buffer usage");
        var fmt = Formats.Of(ci->format);
        if (fmt.BlockSize == 0 || fmt.Planes != 0 || fmt.BlockWidth != 1 || fmt.BlockHeight != 1)
            Fail(cmd, "VUID-VkBufferViewCreateInfo-format-00933", $"format {ci->format} cannot be a texel buffer format");
        if (ci->offset >= b.Size) Fail(cmd, "VUID-VkBufferViewCreateInfo-offset-00925", $"offset {ci->offset} is outside the {b.Size}-byte buffer");
        if (dev.Limits.minTexelBufferOffsetAlignment != 0 && ci->offset % dev.Limits.minTexelBufferOffsetAlignment != 0)
            Fail(cmd, "VUID-VkBufferViewCreateInfo-offset-02749", $"offset {ci->offset} is not a multiple of {dev.Limits.minTexelBufferOffsetAlignment}");
        ulong range = ci->range == VkConstants.VK_WHOLE_SIZE ? (b.Size - ci->offset) / fmt.BlockSize * fmt.BlockSize : ci->range;
        if (ci->range != VkConstants.VK_WHOLE_SIZE)
        {
            if (range == 0) Fail(cmd, "VUID-VkBufferViewCreateInfo-range-00928", "range is 0");
            if (range % fmt.BlockSize != 0) Fail(cmd, "VUID-VkBufferViewCreateInfo-range-00929", $"range {range} is not a multiple of the {fmt.BlockSize}-byte texel");
            if (range > b.Size - ci->offset) Fail(cmd, "VUID-VkBufferViewCreateInfo-offset-00931", $"[{ci->offset}, +{range}) runs past the {b.Size}-byte buffer");
        }
        if (range / fmt.BlockSize > dev.Limits.maxTexelBufferElements)
            Fail(cmd, "VUID-VkBufferViewCreateInfo-range-00930", $"{range / fmt.BlockSize} texels exceed maxTexelBufferElements {dev.Limits.maxTexelBufferElements}");
    }

    void RecordCreateBufferView(ulong* a, DeviceState dev)
    {
        ulong h = *(ulong*)a[3];
        if (h != 0) _bufferViews[h] = new BufferViewState(dev.Handle, ((VkBufferViewCreateInfo*)a[1])->buffer.Handle);
    }

    /// <summary>Buffer memory barriers name ranges too.</summary>
    void CheckBufferBarrier(int cmd, ulong buffer, ulong offset, ulong size)
    {
        var b = UsedBuffer(cmd, buffer, "buffer");
        if (offset >= b.Size) Fail(cmd, "VUID-VkBufferMemoryBarrier-offset-01187", $"offset {offset} is outside the {b.Size}-byte buffer");
        if (size != VkConstants.VK_WHOLE_SIZE && (size == 0 || size > b.Size - offset))
            Fail(cmd, "VUID-VkBufferMemoryBarrier-size-01189", $"[{offset}, +{size}) is not inside the {b.Size}-byte buffer");
    }
}
