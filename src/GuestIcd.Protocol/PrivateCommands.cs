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

    /// <summary>Protocol 1.1, guest → host, no reply, sent once right after the hello when both speak 1.1:
    /// u32 feature bits the guest handles. Without it the host behaves as 1.0 (waits answered in order).</summary>
    public const uint Features = 6;

    /// <summary>Feature bit: replies may come in any order (each names its request's sequence number), so the
    /// host answers a wait when it completes and executes the guest's later messages meanwhile.</summary>
    public const uint FeatureRepliesOutOfOrder = 1;

    /// <summary>Feature bit: the guest registers feedback slots (<see cref="Feedback"/>); needs a shared heap.</summary>
    public const uint FeatureFeedback = 2;

    /// <summary>Protocol 1.1, guest → host, no reply: the feedback slot of a fence or timeline semaphore.
    /// Payload: u32 VkObjectType (7 fence, 5 semaphore), u32 0, u64 object id, u64 offset of an 8-byte
    /// aligned u64 in the shared heap. The host writes there what it observes: a fence's status (1 signaled,
    /// 0 not, written at reset and when seen signaled), a timeline's counter value.</summary>
    public const uint Feedback = 7;

    /// <summary>Guest → host, no reply (protocol 1.1 on): what one command buffer recorded, sent at the submit that
    /// uses it or when its recording outgrows a chunk. Payload: u64 command buffer id, then ordinary messages
    /// (header + payload padded to 8) of vkBeginCommandBuffer, vkCmd*, vkEndCommandBuffer and vkResetCommandBuffer
    /// on that command buffer, none wanting a reply (<see cref="Wire.RecordedCommands"/>).</summary>
    public const uint RecordedCommands = 8;
}
