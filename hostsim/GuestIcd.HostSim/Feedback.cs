using System.Diagnostics;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkResult;

namespace GuestIcd.HostSim;

/// <summary>Feedback slots (issue 8 point 4, the model is Venus's vn_feedback): for a guest that announced
/// <see cref="PrivateCommands.FeatureFeedback"/>, each fence and timeline semaphore it registered has 8 bytes
/// in the guest's shared heap where this session publishes what the driver says: 1 once a submitted fence is
/// seen signaled (0 again at vkResetFences), a timeline's counter value. The guest then answers
/// vkGetFenceStatus and vkGetSemaphoreCounterValue from memory. Slots are written only with values the
/// driver reported, so a slot can lag (by the polling interval: between messages, at most every
/// <see cref="FeedbackPollUs"/> µs, and on the idle ticks) but never claim more than the driver did. The
/// slot is the guest's own memory: a guest that scribbles over it misleads only itself.</summary>
internal sealed unsafe partial class Session
{
    /// <summary>Fastest polling between messages: a busy guest's stream must not pay a driver query per message.</summary>
    const long FeedbackPollUs = 200;
    /// <summary>Idle tick while submitted work may still move a slot; <see cref="FeedbackSlowTickMs"/> once
    /// nothing was submitted for <see cref="FeedbackFastForMs"/> (work that long-running gets coarser news).</summary>
    const int FeedbackFastTickMs = 1, FeedbackSlowTickMs = 20, FeedbackFastForMs = 1000;

    /// <summary>Host fence → (its device, slot); host timeline semaphore → (device, slot).</summary>
    readonly Dictionary<ulong, (VkDevice Device, nint Slot)> _fenceSlots = new(), _timelineSlots = new();
    /// <summary>Fences with a slot that were submitted and not yet seen signaled.</summary>
    readonly HashSet<ulong> _fencesInFlight = new();
    long _lastFeedbackPoll, _lastSubmit;

    bool FeedbackWatching => _fencesInFlight.Count > 0 || _timelineSlots.Count > 0;

    int FeedbackTickMs => Stopwatch.GetTimestamp() - _lastSubmit < FeedbackFastForMs * Stopwatch.Frequency / 1000 ? FeedbackFastTickMs : FeedbackSlowTickMs;

    /// <summary><see cref="PrivateCommands.Feedback"/>: the slot of a fence or timeline semaphore.</summary>
    void OnFeedback(ReadOnlySpan<byte> payload)
    {
        if ((_features & PrivateCommands.FeatureFeedback) == 0) throw new ProtocolException("a feedback slot without the feedback feature");
        var r = new WireReader(payload);
        uint type = r.U32();
        r.U32();
        ulong id = r.U64(), offset = r.U64();
        r.ExpectEnd();
        if ((offset & 7) != 0 || offset > _heapBytes - 8 || _heapBytes < 8) throw new ProtocolException($"feedback slot at heap offset {offset} is not an aligned u64 inside the {_heapBytes}-byte heap");
        if (type != 7 && type != 5) throw new ProtocolException($"feedback slot for object type {type}");
        ulong host = _objects.FromWire((int)type, id);
        if (!_objects.TryGet(id, out var entry) || !_objects.TryGet(entry.Owner, out var owner) || owner.Type != ObjDevice)
            throw new ProtocolException($"feedback slot for object {id}, which belongs to no device");
        var device = new VkDevice((nint)owner.Host);
        var slot = (ulong*)(_heap + offset);
        if (type == 7) _fenceSlots[host] = (device, (nint)slot);
        else
        {
            if (!_timelines.ContainsKey(host)) throw new ProtocolException($"feedback slot for semaphore {id}, which is not a timeline semaphore");
            _timelineSlots[host] = (device, (nint)slot);
            PublishTimeline(host, device, slot);
        }
    }

    /// <summary>After a message was executed: what it changed about fences and timelines.</summary>
    void FeedbackAfter(int cmd, ulong* a, ulong result)
    {
        if (_fenceSlots.Count == 0 && _timelineSlots.Count == 0) return;
        bool ok = (int)(uint)result >= 0;
        switch (cmd)
        {
            case Tables.vkQueueSubmit or Tables.vkQueueSubmit2 or Tables.vkQueueBindSparse:
                _lastSubmit = Stopwatch.GetTimestamp();
                if (ok && a[3] != 0 && _fenceSlots.ContainsKey(a[3])) _fencesInFlight.Add(a[3]);
                break;
            case Tables.vkResetFences when ok:
                for (uint i = 0; i < (uint)a[1]; i++)
                {
                    ulong f = ((ulong*)a[2])[i];
                    _fencesInFlight.Remove(f);
                    if (_fenceSlots.TryGetValue(f, out var s)) Volatile.Write(ref *(ulong*)s.Slot, 0UL);
                }
                break;
            case Tables.vkSignalSemaphore when ok:
            {
                ulong sem = ((VkSemaphoreSignalInfo*)a[1])->semaphore.Handle;
                if (_timelineSlots.TryGetValue(sem, out var s)) PublishTimeline(sem, s.Device, (ulong*)s.Slot);
                break;
            }
            case Tables.vkWaitForFences or Tables.vkWaitSemaphores or Tables.vkQueueWaitIdle or Tables.vkDeviceWaitIdle when ok:
                PollFeedback(force: true);
                break;
        }
        PollFeedback();
    }

    /// <summary>A deferred wait that succeeded: the guest, told so, may read the slots at once.</summary>
    void FeedbackAfterWait(PendingWait w)
    {
        if (w.Command == Tables.vkWaitSemaphores)
        {
            for (uint i = 0; i < w.Info->semaphoreCount; i++)
            {
                ulong sem = w.Info->pSemaphores[i].Handle;
                if (_timelineSlots.TryGetValue(sem, out var s)) PublishTimeline(sem, s.Device, (ulong*)s.Slot);
            }
        }
        else if (_fencesInFlight.Count > 0) PollFeedback(force: true);
    }

    /// <summary>Publishes what the driver says of the fences in flight and the timelines (rate-limited unless forced).</summary>
    void PollFeedback(bool force = false)
    {
        if (!FeedbackWatching) return;
        long now = Stopwatch.GetTimestamp();
        if (!force && now - _lastFeedbackPoll < FeedbackPollUs * Stopwatch.Frequency / 1_000_000) return;
        _lastFeedbackPoll = now;
        if (_fencesInFlight.Count > 0)
        {
            var status = (delegate* unmanaged<VkDevice, VkFence, VkResult>)Fn(Tables.vkGetFenceStatus);
            List<ulong>? done = null;
            foreach (var f in _fencesInFlight)
            {
                var s = _fenceSlots[f];
                if (status(s.Device, new VkFence(f)) != VK_SUCCESS) continue;
                Volatile.Write(ref *(ulong*)s.Slot, 1UL);
                (done ??= new()).Add(f);
            }
            if (done is not null) foreach (var f in done) _fencesInFlight.Remove(f);
        }
        foreach (var (sem, s) in _timelineSlots) PublishTimeline(sem, s.Device, (ulong*)s.Slot);
    }

    void PublishTimeline(ulong semaphore, VkDevice device, ulong* slot)
    {
        var get = (delegate* unmanaged<VkDevice, VkSemaphore, ulong*, VkResult>)Fn(Tables.vkGetSemaphoreCounterValue);
        ulong value;
        if (get(device, new VkSemaphore(semaphore), &value) == VK_SUCCESS && value > Volatile.Read(ref *slot)) Volatile.Write(ref *slot, value);
    }

    /// <summary>A fence or semaphore (or its device) is gone: its slot is the guest's to reuse.</summary>
    void ForgetFeedback(ObjectTable.Entry e)
    {
        if (e.Type == 7) { _fenceSlots.Remove(e.Host); _fencesInFlight.Remove(e.Host); }
        else if (e.Type == 5) _timelineSlots.Remove(e.Host);
    }
}
