namespace GuestIcd.Protocol;

/// <summary>Messages of our own beside the registry's commands, in the reserved id range below 0x100
/// (registry command ids are never that small; the generator checks).</summary>
public static class PrivateCommands
{
    /// <summary>vkAllocateMemory whose memory is a range of the connection's shared heap, so the guest's
    /// mapping and the host driver's memory are the same pages. Payload: u64 heap offset, u64 range size,
    /// then the payload of a vkAllocateMemory request. Reply: as vkAllocateMemory's.</summary>
    public const uint AllocateSharedMemory = 3;
}
