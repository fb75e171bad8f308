using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;
using GuestIcd.Vulkan;
using Microsoft.Extensions.Logging;

namespace GuestIcd.HostSim;

/// <summary>Command buffers the guest records on its side (protocol 1.1, <see cref="PrivateCommands.RecordedCommands"/>):
/// each chunk's nested messages go through the same decoder, gate and executor as messages of their own
/// (<see cref="RunMessage"/>), one at a time. The guest does not wait for vkBeginCommandBuffer,
/// vkEndCommandBuffer or vkResetCommandBuffer, so what fails here is remembered per command buffer and answers
/// the submit that uses it: a VkResult the driver returned becomes that vkQueueSubmit's result; an object
/// destroyed after it was recorded makes the command buffer invalid, as the spec says, which the gate refuses
/// at submit.</summary>
internal sealed unsafe partial class Session
{
    const int ObjCommandBuffer = 6;

    /// <summary>Command buffers (host handles) whose deferred recording failed, with the driver's VkResult (as
    /// result bits), or 0 where it became invalid. Until the next begin or reset, the rest of its recording is
    /// dropped unexecuted: the driver never sees commands for a command buffer that is not recording.</summary>
    readonly Dictionary<ulong, ulong> _failedRecordings = new();
    bool _forgetHooked;

    /// <summary>What may travel inside a recording: what the spec lets one command buffer's owner call on it.</summary>
    static readonly bool[] s_nestable = Tables.Commands.Select((c, i) => c.OnWire && (c.Name.StartsWith("vkCmd", StringComparison.Ordinal)
        || i is Tables.vkBeginCommandBuffer or Tables.vkEndCommandBuffer or Tables.vkResetCommandBuffer)).ToArray();

    void RunRecorded(ReadOnlySpan<byte> payload)
    {
        var r = new RecordedCommands.Reader(payload);
        ulong cb = _objects.FromWire(ObjCommandBuffer, r.CommandBuffer);
        if (!_forgetHooked)
        {
            _forgetHooked = true;
            _objects.Forgotten += (_, e) => { if (e.Type == ObjCommandBuffer) _failedRecordings.Remove(e.Host); };
        }
        while (r.Next(out var h, out var nested))
        {
            int cmd = Tables.CommandOfId(h.Command);
            if (cmd < 0 || !s_nestable[cmd])
                throw new ProtocolException($"recorded commands: {(cmd < 0 ? $"command id 0x{h.Command:X8}" : Tables.Commands[cmd].Name)} cannot be recorded into a command buffer");
            *Progress = ((ulong)(uint)(Commands + 1) << 32) | h.Command;
            if (cmd is not (Tables.vkBeginCommandBuffer or Tables.vkResetCommandBuffer) && _failedRecordings.ContainsKey(cb))
            {
                Commands++;
                continue;
            }
            try { RunMessage(h, nested, cb); }
            catch (StaleObjectException e)
            {
                // Recorded before the object was destroyed, arriving after: an invalid command buffer, not a broken guest.
                log.LogDebug("session {Session}: {Command} names an object destroyed since it was recorded ({Reason}); the command buffer is invalid", Id, Tables.Commands[cmd].Name, e.Message);
                _objects.DiscardCreates();
                _failedRecordings[cb] = 0;
                _gate.InvalidateRecording(cb);
            }
        }
    }

    /// <summary>Before the gate: a submit naming a command buffer whose recording the driver refused is answered
    /// with the driver's result, and nothing of it reaches the queue.</summary>
    bool RecordingFailed(int cmd, ulong* a, out ulong result)
    {
        result = 0;
        if (_failedRecordings.Count == 0 || cmd is not (Tables.vkQueueSubmit or Tables.vkQueueSubmit2)) return false;
        uint n = (uint)a[1];
        for (uint s = 0; s < n; s++)
        {
            uint count = cmd == Tables.vkQueueSubmit ? ((VkSubmitInfo*)a[2])[s].commandBufferCount : ((VkSubmitInfo2*)a[2])[s].commandBufferInfoCount;
            for (uint i = 0; i < count; i++)
            {
                ulong h = cmd == Tables.vkQueueSubmit ? (ulong)((VkSubmitInfo*)a[2])[s].pCommandBuffers[i].Handle
                    : (ulong)((VkSubmitInfo2*)a[2])[s].pCommandBufferInfos[i].commandBuffer.Handle;
                if (_failedRecordings.TryGetValue(h, out var failed) && failed != 0) { result = failed; return true; }
            }
        }
        return false;
    }

    /// <summary>After every message: what a nested begin, end or reset left behind, and the live-object count on
    /// vkDeviceWaitIdle at Debug level (how a test sees that freed objects really went).</summary>
    void AfterMessage(int cmd, ulong* a, ulong result, ulong nestedIn, MessageFlags flags)
    {
        // The guest did not wait for this result (AsyncResults: submits, binds, resets; vkResetCommandPool from
        // 1.1): it was told VK_SUCCESS, and what it built on that is in no state the gate knows, so a failure
        // (only ever a lack of memory or a lost device) ends the session: the guest sees a lost device.
        if (nestedIn == 0 && AsyncResults.Commands[cmd] && (int)(uint)result < 0 && (flags & MessageFlags.ReplyWanted) == 0)
            throw new ProtocolException($"{Tables.Commands[cmd].Name} failed on the host ({(VkResult)(int)(uint)result}) and the guest did not wait for its result");
        if (nestedIn != 0 && cmd is Tables.vkBeginCommandBuffer or Tables.vkEndCommandBuffer or Tables.vkResetCommandBuffer)
        {
            if ((int)(uint)result < 0)
            {
                log.LogInformation("session {Session}: {Command} failed on the host ({Result}); the submit that uses the command buffer answers it",
                    Id, Tables.Commands[cmd].Name, (VkResult)(int)(uint)result);
                _failedRecordings[nestedIn] = result;
                _gate.InvalidateRecording(nestedIn);
            }
            else if (cmd != Tables.vkEndCommandBuffer) _failedRecordings.Remove(nestedIn);
        }
    }
}
