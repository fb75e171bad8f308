namespace GuestIcd.Protocol;

/// <summary>Messages of our own beside the registry's commands, in the reserved id range below 0x100
/// (registry command ids are never that small; the generator checks).</summary>
public static class PrivateCommands
{
    /// <summary>vkAllocateMemory whose memory is a range of the connection's shared heap, so the guest's
    /// mapping and the host driver's memory are the same pages. Payload: u64 heap offset, u64 range size,
    /// then the payload of a vkAllocateMemory request. Reply: as vkAllocateMemory's.</summary>
    public const uint AllocateSharedMemory = 3;

    /// <summary>Guest → host, no reply: pages of a mapped allocation the guest changed. Payload: u64 memory id,
    /// u32 run count, then runs of {u64 offset, u32 length, bytes} (<see cref="Wire.DirtyPages"/>).</summary>
    public const uint WriteMemory = 4;

    /// <summary>Guest → host: the pages of an allocation that changed on the host since the guest last saw them,
    /// from an offset on, at most <see cref="Wire.DirtyPages.MaxBytesPerMessage"/> bytes per reply.
    /// Payload: u64 memory id, u64 from. Reply (command 5): u64 where to continue (the size when done),
    /// u32 run count, then runs.</summary>
    public const uint ReadMemory = 5;

    /// <summary>Guest → host, no reply (protocol 1.1 on): what one command buffer recorded, sent at the submit that
    /// uses it or when its recording outgrows a chunk. Payload: u64 command buffer id, then ordinary messages
    /// (header + payload padded to 8) of vkBeginCommandBuffer, vkCmd*, vkEndCommandBuffer and vkResetCommandBuffer
    /// on that command buffer, none wanting a reply (<see cref="Wire.RecordedCommands"/>).</summary>
    public const uint RecordedCommands = 6;
}
