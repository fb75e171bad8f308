using System.Diagnostics;
using System.Runtime.InteropServices;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;
using GuestIcd.Transport;
using GuestIcd.Vulkan;
using Microsoft.Extensions.Logging;
using static GuestIcd.Vulkan.VkResult;

namespace GuestIcd.HostSim;

/// <summary>Waits that never stall the session (issue 8 point 3). A guest that announced
/// <see cref="PrivateCommands.FeatureRepliesOutOfOrder"/> has its vkWaitForFences, vkWaitSemaphores,
/// vkQueueWaitIdle and vkDeviceWaitIdle kept as pending entries instead of being waited for: the session goes
/// on executing the guest's later messages (another thread's submits, the vkSignalSemaphore that completes
/// the wait) and polls the entries with timeout 0 between messages. While the guest sends nothing the loop
/// waits for it in short steps: for the first <see cref="EagerMs"/> of a wait inside the driver on the
/// youngest wait for <see cref="EagerSliceNs"/> at a time (a wait on a short job ends within microseconds of
/// the job), then in the transport for <see cref="IdleTickMs"/> (a guest's message wakes it at once). An
/// entry is answered, with its request's sequence number, when it completes or its deadline passes; a guest
/// that leaves ends the session naming the wait, as the sliced waits of Waits.cs do. The idle waits use the
/// same per-queue host fences as Waits.cs, so teardown's drain sees them.</summary>
internal sealed unsafe partial class Session
{
    const int EagerMs = 20, IdleTickMs = 1;
    const ulong EagerSliceNs = 200_000;

    /// <summary>What the guest announced with <see cref="PrivateCommands.Features"/> (protocol 1.1).</summary>
    uint _features;
    bool RepliesOutOfOrder => (_features & PrivateCommands.FeatureRepliesOutOfOrder) != 0;

    sealed class PendingWait
    {
        public int Command;
        public ulong Sequence;
        public long Deadline, Since;
        public VkDevice Device;
        /// <summary>Arguments as the gate and the reply encoder see them; pointers into <see cref="Block"/>.</summary>
        public ulong* Args;
        /// <summary>Fences (fence waits, host idle fences for idle waits) or the semaphore wait info, copied.</summary>
        public VkFence* Fences;
        public uint Count, All;
        public VkSemaphoreWaitInfo* Info;
        public ulong[]? Queues;
        /// <summary>vkGetQueryPoolResults: the output capacities the reply encoder needs (pData lives in Block).</summary>
        public ulong* Caps;
        public void* Block;
        /// <summary>Set when something it names was destroyed under it (a guest breaking the rules).</summary>
        public bool Orphaned;
        /// <summary>Set when the wait could not even start (its idle fences failed): answered with this at once.</summary>
        public VkResult? Early;
    }

    readonly List<PendingWait> _waits = new();
    long _lastPresenceCheck;

    void OnFeatures(ReadOnlySpan<byte> payload)
    {
        var r = new WireReader(payload);
        uint bits = r.U32();
        r.ExpectEnd();
        const uint known = PrivateCommands.FeatureRepliesOutOfOrder | PrivateCommands.FeatureFeedback;
        if ((bits & ~known) != 0) throw new ProtocolException($"features 0x{bits:X} include bits this host does not know");
        if ((bits & PrivateCommands.FeatureFeedback) != 0 && _heap == null) throw new ProtocolException("feedback slots asked for on a transport without shared memory");
        if (_features == 0) _objects.Forgotten += OnForgottenSync;
        _features = bits;
        log.LogInformation("session {Session}: guest features 0x{Features:X} (1: replies in any order, 2: feedback slots)", Id, bits);
    }

    /// <summary>Takes over a wait the guest asked for (true): it is answered from <see cref="PollWaits"/>,
    /// possibly at once. False: not a wait, or a guest that expects its replies in order.</summary>
    bool TryDefer(int cmd, ulong* a, ulong* caps)
    {
        if (!RepliesOutOfOrder) return false;
        PendingWait? w = cmd switch
        {
            Tables.vkWaitForFences => DeferFences(a),
            Tables.vkWaitSemaphores => DeferSemaphores(a),
            Tables.vkQueueWaitIdle => _queueDevice.TryGetValue(a[0], out var d) ? DeferIdle(cmd, a, d, [a[0]]) : null,
            Tables.vkDeviceWaitIdle => DeferIdle(cmd, a, a[0], QueuesOf(a[0])),
            Tables.vkGetQueryPoolResults when QueryWaits(a) => DeferQuery(a, caps),
            _ => null,
        };
        if (w is null) return false;
        w.Command = cmd;
        w.Sequence = _sequence;
        w.Since = Stopwatch.GetTimestamp();
        w.Device = new VkDevice((nint)a[0]);
        if (cmd == Tables.vkQueueWaitIdle) w.Device = new VkDevice((nint)_queueDevice[a[0]]);
        w.Args[0] = a[0];
        _waits.Add(w);
        if (!PollWait(w)) return true;
        _waits.RemoveAt(_waits.Count - 1);
        return true;
    }

    static PendingWait NewWait(nuint extra)
    {
        var block = NativeMemory.AllocZeroed((nuint)(CommandCodec.MaxParams * sizeof(ulong)) + extra);
        return new PendingWait { Block = block, Args = (ulong*)block };
    }

    PendingWait DeferFences(ulong* a)
    {
        uint n = (uint)a[1];
        var w = NewWait(n * (nuint)sizeof(VkFence));
        w.Fences = (VkFence*)(w.Args + CommandCodec.MaxParams);
        Buffer.MemoryCopy((void*)a[2], w.Fences, n * sizeof(VkFence), n * sizeof(VkFence));
        w.Count = n;
        w.All = (uint)a[3];
        w.Deadline = Deadline(a[4]);
        w.Args[1] = n; w.Args[2] = (ulong)w.Fences; w.Args[3] = a[3]; w.Args[4] = a[4];
        return w;
    }

    PendingWait DeferSemaphores(ulong* a)
    {
        var src = (VkSemaphoreWaitInfo*)a[1];
        uint n = src->semaphoreCount;
        var w = NewWait((nuint)sizeof(VkSemaphoreWaitInfo) + n * (nuint)(sizeof(VkSemaphore) + sizeof(ulong)));
        var info = (VkSemaphoreWaitInfo*)(w.Args + CommandCodec.MaxParams);
        var sems = (VkSemaphore*)(info + 1);
        var values = (ulong*)(sems + n);
        Buffer.MemoryCopy(src->pSemaphores, sems, n * sizeof(VkSemaphore), n * sizeof(VkSemaphore));
        Buffer.MemoryCopy(src->pValues, values, n * sizeof(ulong), n * sizeof(ulong));
        // The chain's structs (none defined for this struct in 1.3) are not needed once the call is made.
        *info = new VkSemaphoreWaitInfo { sType = src->sType, flags = src->flags, semaphoreCount = n, pSemaphores = sems, pValues = values };
        w.Info = info;
        w.Deadline = Deadline(a[2]);
        w.Args[1] = (ulong)info; w.Args[2] = a[2];
        return w;
    }

    /// <summary>Query results wait for the queues first where the blocking path would (Waits.cs
    /// GetQueryPoolResults: with the WAIT bit, and always on lavapipe), then are read without the bit until
    /// complete.</summary>
    bool QueryWaits(ulong* a) =>
        ((VkQueryResultFlags)(uint)a[7] & VkQueryResultFlags.VK_QUERY_RESULT_WAIT_BIT) != 0 || options.DeviceName.Contains("llvmpipe", StringComparison.Ordinal);

    PendingWait? DeferQuery(ulong* a, ulong* caps)
    {
        var queues = QueuesOf(a[0]);
        nuint fences = (nuint)queues.Length * (nuint)sizeof(VkFence), capsBytes = (nuint)(CommandCodec.MaxParams * sizeof(ulong));
        var w = DeferIdle(Tables.vkGetQueryPoolResults, a, a[0], queues, capsBytes + (nuint)a[4]);
        if (w is null) return null;
        w.Caps = (ulong*)((byte*)w.Fences + fences);
        Buffer.MemoryCopy(caps, w.Caps, capsBytes, capsBytes);
        for (int i = 1; i < 8; i++) w.Args[i] = a[i];
        w.Args[5] = (ulong)((byte*)w.Caps + capsBytes);
        return w;
    }

    PendingWait? DeferIdle(int cmd, ulong* a, ulong device, ulong[] queues, nuint extra = 0)
    {
        var w = NewWait((nuint)queues.Length * (nuint)sizeof(VkFence) + extra);
        w.Fences = (VkFence*)(w.Args + CommandCodec.MaxParams);
        w.Count = (uint)queues.Length;
        w.Queues = queues;
        w.Deadline = long.MaxValue;
        var fns = SessionIdleFns();
        var r = SubmitIdleFences(new VkDevice((nint)device), queues, w.Fences, fns);
        if (r != VK_SUCCESS)
        {
            // Answered at once with the driver's error, as the blocking path would.
            w.Count = 0;
            w.Early = r;
        }
        return w;
    }

    /// <summary>Checks one entry (timeout 0) and answers it when it is done; true when it was answered.</summary>
    bool PollWait(PendingWait w)
    {
        VkResult r;
        if (w.Orphaned) r = VK_ERROR_DEVICE_LOST;
        else switch (w.Command)
        {
            case Tables.vkWaitForFences:
                r = ((delegate* unmanaged<VkDevice, uint, VkFence*, uint, ulong, VkResult>)Fn(Tables.vkWaitForFences))(w.Device, w.Count, w.Fences, w.All, 0);
                break;
            case Tables.vkWaitSemaphores:
                r = ((delegate* unmanaged<VkDevice, VkSemaphoreWaitInfo*, ulong, VkResult>)Fn(Tables.vkWaitSemaphores))(w.Device, w.Info, 0);
                break;
            case Tables.vkGetQueryPoolResults:
                r = w.Early ?? PollIdle(w);
                if (r == VK_SUCCESS) r = PollQuery(w);
                break;
            default:
                r = w.Early ?? PollIdle(w);
                break;
        }
        if (r == VK_TIMEOUT && Stopwatch.GetTimestamp() < w.Deadline) return false;
        Answer(w, r);
        return true;
    }

    /// <summary>An idle wait is done when each of its queues' host fence signaled, or was already seen
    /// signaled and reset by another idle wait (everything before it has completed either way).</summary>
    VkResult PollIdle(PendingWait w)
    {
        var fns = SessionIdleFns();
        for (uint i = 0; i < w.Count; i++)
        {
            ulong f = w.Fences[i].Handle;
            if (!_idleFencesInFlight.Contains(f)) continue;
            var one = w.Fences[i];
            var r = fns.Wait(w.Device, 1, &one, 1, 0);
            if (r == VK_TIMEOUT) return VK_TIMEOUT;
            if (r != VK_SUCCESS) return r;
        }
        for (uint i = 0; i < w.Count; i++)
        {
            var one = w.Fences[i];
            if (_idleFencesInFlight.Contains(one.Handle)) ResetIdleFences(w.Device, 1, &one, fns);
        }
        return VK_SUCCESS;
    }

    /// <summary>Once the queues are idle: the results without the WAIT bit; with it, VK_NOT_READY keeps the
    /// entry pending (a query never written waits as long as the guest does, without stalling the session).</summary>
    VkResult PollQuery(PendingWait w)
    {
        var flags = (VkQueryResultFlags)(uint)w.Args[7];
        w.Count = 0; // idle once is enough: what the results wait for was submitted before the call
        var fn = (delegate* unmanaged<VkDevice, VkQueryPool, uint, uint, nuint, void*, ulong, VkQueryResultFlags, VkResult>)Fn(Tables.vkGetQueryPoolResults);
        var r = fn(w.Device, new VkQueryPool(w.Args[1]), (uint)w.Args[2], (uint)w.Args[3], (nuint)w.Args[4], (void*)w.Args[5], w.Args[6],
            flags & ~VkQueryResultFlags.VK_QUERY_RESULT_WAIT_BIT);
        return r == VK_NOT_READY && (flags & VkQueryResultFlags.VK_QUERY_RESULT_WAIT_BIT) != 0 ? VK_TIMEOUT : r;
    }

    /// <summary>The reply, numbered with the wait's request, once the gate and the feedback slots know.</summary>
    void Answer(PendingWait w, VkResult r)
    {
        ulong result = Result(r);
        if (!w.Orphaned)
        {
            _gate.Record(w.Command, w.Args, result);
            if (r == VK_SUCCESS) FeedbackAfterWait(w);
        }
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        new Span<ulong>(caps, CommandCodec.MaxParams).Clear();
        if (w.Caps != null) caps = w.Caps;
        _writer.Reset();
        CommandCodec.EncodeReply(w.Command, result, w.Args, caps, w.Sequence, _writer, _objects);
        transport.Write(_writer.Written);
        transport.Flush();
        BytesOut += _writer.Written.Length;
        Replies++;
        Publish(); // answered while the guest sends nothing: status shows it now, not at its next message
        NativeMemory.Free(w.Block);
        w.Block = null;
    }

    /// <summary>Answers every entry that is done. Called between messages and on the idle steps.</summary>
    void PollWaits()
    {
        for (int i = 0; i < _waits.Count;)
        {
            if (PollWait(_waits[i])) _waits.RemoveAt(i);
            else i++;
        }
    }

    long _lastWaitPoll;

    /// <summary>Between messages: after one that can complete a wait at once, else at most every
    /// <see cref="FeedbackPollUs"/> µs (a stream of vkCmd* must not pay a driver query per message).</summary>
    void PollWaitsAfter(int cmd)
    {
        long now = Stopwatch.GetTimestamp();
        bool completes = cmd is Tables.vkSignalSemaphore or Tables.vkSetEvent or Tables.vkQueueSubmit or Tables.vkQueueSubmit2;
        if (!completes && now - _lastWaitPoll < FeedbackPollUs * Stopwatch.Frequency / 1_000_000) return;
        _lastWaitPoll = now;
        PollWaits();
    }

    /// <summary>The session loop's read of the next message header: without pending waits or slots to watch,
    /// a plain blocking read; otherwise short steps with polling in between (see the class summary). False
    /// when the guest closed the connection with nothing pending.</summary>
    bool ReadHeaderPolling(Span<byte> hdr)
    {
        while (true)
        {
            if (_waits.Count == 0 && !FeedbackWatching) return transport.ReadExactly(hdr, -1);
            try
            {
                var eager = Eager();
                if (eager is not null)
                {
                    if (transport.ReadExactly(hdr, 0)) return true;
                    SliceInDriver(eager);
                }
                else if (transport.ReadExactly(hdr, _waits.Count > 0 ? IdleTickMs : FeedbackTickMs)) return true;
            }
            catch (TransportClosedException e) when (_waits.Count > 0)
            {
                throw new TransportClosedException($"guest left during {Tables.Commands[_waits[0].Command].Name} ({e.Message})");
            }
            PollWaits();
            PollFeedback();
            if (_waits.Count > 0 && Stopwatch.GetTimestamp() - _lastPresenceCheck > Stopwatch.Frequency / 50)
            {
                _lastPresenceCheck = Stopwatch.GetTimestamp();
                EnsureGuestPresent(Tables.Commands[_waits[0].Command].Name);
            }
        }
    }

    /// <summary>The youngest entry still in its first <see cref="EagerMs"/>, if any.</summary>
    PendingWait? Eager()
    {
        if (_waits.Count == 0) return null;
        var w = _waits[^1];
        return Stopwatch.GetTimestamp() - w.Since < EagerMs * Stopwatch.Frequency / 1000 ? w : null;
    }

    void SliceInDriver(PendingWait w)
    {
        if (w.Orphaned) return;
        switch (w.Command)
        {
            case Tables.vkWaitForFences:
                ((delegate* unmanaged<VkDevice, uint, VkFence*, uint, ulong, VkResult>)Fn(Tables.vkWaitForFences))(w.Device, w.Count, w.Fences, w.All, Math.Min(EagerSliceNs, Slice(w.Deadline)));
                break;
            case Tables.vkWaitSemaphores:
                ((delegate* unmanaged<VkDevice, VkSemaphoreWaitInfo*, ulong, VkResult>)Fn(Tables.vkWaitSemaphores))(w.Device, w.Info, Math.Min(EagerSliceNs, Slice(w.Deadline)));
                break;
            default:
                if (w.Count > 0 && w.Early is null) SessionIdleFns().Wait(w.Device, w.Count, w.Fences, 1, EagerSliceNs);
                break;
        }
    }

    /// <summary>A fence, semaphore or device destroyed while a wait names it (the guest broke the rules: the
    /// wait still runs on its other thread): that wait is answered VK_ERROR_DEVICE_LOST and never polled
    /// again, so the driver never sees the destroyed handle.</summary>
    void OnForgottenSync(ulong id, ObjectTable.Entry e)
    {
        ForgetFeedback(e);
        foreach (var w in _waits)
        {
            if (w.Orphaned) continue;
            bool hit = e.Type == ObjDevice ? (ulong)w.Device.Handle == e.Host : false;
            if (!hit && e.Type == 7 && w.Command == Tables.vkWaitForFences)
                for (uint i = 0; i < w.Count && !hit; i++) hit = w.Fences[i].Handle == e.Host;
            if (!hit && e.Type == 5 && w.Info != null)
                for (uint i = 0; i < w.Info->semaphoreCount && !hit; i++) hit = w.Info->pSemaphores[i].Handle == e.Host;
            if (hit)
            {
                w.Orphaned = true;
                log.LogWarning("session {Session}: {Command} still waits on an object the guest destroyed; it is answered VK_ERROR_DEVICE_LOST", Id, Tables.Commands[w.Command].Name);
            }
        }
    }

    /// <summary>At the end of the session: entries nobody will hear the answer to.</summary>
    void DropWaits()
    {
        foreach (var w in _waits) if (w.Block != null) NativeMemory.Free(w.Block);
        _waits.Clear();
    }
}
