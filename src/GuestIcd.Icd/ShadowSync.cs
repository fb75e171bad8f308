using GuestIcd.Protocol;

namespace GuestIcd.Icd;

/// <summary>When mapped memory is a guest-side copy (no shared memory on the transport), which commands
/// send the application's writes first, and after which the device's writes are fetched back. Coherent
/// memory types included: the application never calls flush for those, so submits and waits must.</summary>
internal static class ShadowSync
{
    public static readonly bool[] PushBefore = Mark(Tables.vkQueueSubmit, Tables.vkQueueSubmit2, Tables.vkFlushMappedMemoryRanges, Tables.vkQueueBindSparse);

    public static readonly bool[] PullAfter = Mark(Tables.vkWaitForFences, Tables.vkQueueWaitIdle, Tables.vkDeviceWaitIdle, Tables.vkGetFenceStatus,
        Tables.vkWaitSemaphores, Tables.vkInvalidateMappedMemoryRanges, Tables.vkGetEventStatus);

    static bool[] Mark(params int[] commands)
    {
        var marks = new bool[Tables.Commands.Length];
        foreach (var c in commands) marks[c] = true;
        return marks;
    }
}
