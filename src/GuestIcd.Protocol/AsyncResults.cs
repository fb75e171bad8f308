namespace GuestIcd.Protocol;

/// <summary>Commands whose VkResult the guest need not wait for (from protocol 1.2; vkResetCommandPool from
/// 1.1), as Venus does: the spec lets them fail only for lack of memory or a lost device, and the gate's
/// refusals end the session anyway. The guest answers VK_SUCCESS at once and sends them without
/// <see cref="Wire.MessageFlags.ReplyWanted"/>; where the host's driver does fail one, the host ends the
/// session with the reason, so the guest sees VK_ERROR_DEVICE_LOST at its next wait rather than an error it
/// was never told of. A submit leaves at once (its work should start now); the rest travel with the next
/// batch. vkSignalSemaphore is not among them: the guest reads a timeline's value from its feedback slot, and
/// the value a signal set must be there when the call returns.</summary>
public static class AsyncResults
{
    public static readonly bool[] Commands = Mark(Tables.vkQueueSubmit, Tables.vkQueueSubmit2, Tables.vkResetFences,
        Tables.vkBindBufferMemory, Tables.vkBindBufferMemory2, Tables.vkBindImageMemory, Tables.vkBindImageMemory2,
        Tables.vkResetCommandPool, Tables.vkResetDescriptorPool, Tables.vkSetEvent, Tables.vkResetEvent);

    /// <summary>Those that go to the host at once rather than with the next batch.</summary>
    public static readonly bool[] SendNow = Mark(Tables.vkQueueSubmit, Tables.vkQueueSubmit2, Tables.vkSetEvent);

    static bool[] Mark(params int[] commands)
    {
        var marks = new bool[Tables.Commands.Length];
        foreach (var c in commands) marks[c] = true;
        return marks;
    }
}
