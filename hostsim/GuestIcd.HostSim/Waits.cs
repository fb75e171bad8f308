using System.Diagnostics;
using System.Runtime.InteropServices;
using GuestIcd.Protocol;
using GuestIcd.Transport;
using GuestIcd.Vulkan;
using Microsoft.Extensions.Logging;
using static GuestIcd.Vulkan.VkResult;

namespace GuestIcd.HostSim;

/// <summary>Blocking calls run on the host in bounded slices. A driver wait can last as long as the guest
/// asks (UINT64_MAX is forever), and the session thread is the only one that would notice the guest
/// leaving: between slices it checks the connection and the guest's own deadline, so a killed guest ends
/// its session within a slice and a guest's timeout is answered when it passes. vkQueueWaitIdle and
/// vkDeviceWaitIdle have no timeout in the API, so they become an empty submit with a fence per queue,
/// waited in slices. Teardown unblocks what the guest left waiting (timeline semaphores, events) and
/// gives a busy device a bounded time to drain rather than hang in vkDeviceWaitIdle.</summary>
internal sealed unsafe partial class Session
{
    /// <summary>Longest single wait inside the driver: bounds how long a guest that left keeps this thread.</summary>
    const ulong SliceNs = 20_000_000;
    /// <summary>How long teardown lets a device finish what the guest submitted before leaving it alone.</summary>
    const int DrainMs = 2000;

    /// <summary>Queues the guest obtained, with their device: what the idle waits fence.</summary>
    readonly Dictionary<ulong, ulong> _queueDevice = new();
    /// <summary>Per queue, the host's own fence for idle waits (created on first use, destroyed with the device).</summary>
    readonly Dictionary<ulong, ulong> _idleFences = new();
    /// <summary>Idle fences submitted and not yet seen signaled (a guest that left mid-wait leaves them so):
    /// submitting one again would be invalid, so teardown waits on them as they are.</summary>
    readonly HashSet<ulong> _idleFencesInFlight = new();
    /// <summary>Objects teardown can release from the host side: timeline semaphores and host-settable events, with their device.</summary>
    readonly Dictionary<ulong, ulong> _timelines = new(), _events = new();

    static long Deadline(ulong timeoutNs)
    {
        // Beyond ~70 years the deadline is "never" (and the arithmetic stays in range).
        if (timeoutNs >= (ulong)long.MaxValue / 4) return long.MaxValue;
        ulong f = (ulong)Stopwatch.Frequency;
        return Stopwatch.GetTimestamp() + (long)(timeoutNs / 1_000_000_000 * f + timeoutNs % 1_000_000_000 * f / 1_000_000_000);
    }

    /// <summary>The next slice: the rest of the guest's timeout, at most <see cref="SliceNs"/>.</summary>
    static ulong Slice(long deadline)
    {
        if (deadline == long.MaxValue) return SliceNs;
        long left = deadline - Stopwatch.GetTimestamp();
        if (left <= 0) return 0;
        ulong f = (ulong)Stopwatch.Frequency;
        if ((ulong)left >= f) return SliceNs; // more than a second left
        return Math.Min((ulong)left * 1_000_000_000 / f, SliceNs);
    }

    /// <summary>Between slices: a guest that is gone ends its session here (its objects are released by Run).</summary>
    void EnsureGuestPresent(string command)
    {
        if (transport.PeerClosed) throw new TransportClosedException($"guest left during {command}");
    }

    /// <summary>vkWaitForFences in slices until a fence answer, the deadline (VK_TIMEOUT) or, when
    /// <paramref name="command"/> names the guest's call, the guest leaving. With
    /// <paramref name="finishAfterGuestLeft"/> (a wait the guest did not ask for, before its destroys) a guest that
    /// left gives the device teardown's <see cref="DrainMs"/> to finish first: an application that sent its
    /// destroys and exited has them run in order, and only a device still busy after that ends the session.</summary>
    VkResult WaitFencesSliced(delegate* unmanaged<VkDevice, uint, VkFence*, uint, ulong, VkResult> wait,
        VkDevice device, uint count, VkFence* fences, uint all, long deadline, string? command, bool finishAfterGuestLeft = false)
    {
        long leftBound = long.MaxValue;
        while (true)
        {
            var slice = Slice(Math.Min(deadline, leftBound));
            var r = wait(device, count, fences, all, slice);
            if (r != VK_TIMEOUT) return r;
            if (command is not null && finishAfterGuestLeft && transport.PeerClosed)
            {
                if (leftBound == long.MaxValue) leftBound = Stopwatch.GetTimestamp() + DrainMs * Stopwatch.Frequency / 1000;
                else if (Stopwatch.GetTimestamp() >= leftBound) EnsureGuestPresent(command);
                continue;
            }
            if (slice == 0 || Stopwatch.GetTimestamp() >= deadline) return r;
            if (command is not null) EnsureGuestPresent(command);
        }
    }

    ulong WaitForFences(ulong* a) =>
        Result(WaitFencesSliced((delegate* unmanaged<VkDevice, uint, VkFence*, uint, ulong, VkResult>)Fn(Tables.vkWaitForFences),
            new VkDevice((nint)a[0]), (uint)a[1], (VkFence*)a[2], (uint)a[3], Deadline(a[4]), "vkWaitForFences"));

    ulong WaitSemaphores(ulong* a)
    {
        var wait = (delegate* unmanaged<VkDevice, VkSemaphoreWaitInfo*, ulong, VkResult>)Fn(Tables.vkWaitSemaphores);
        long deadline = Deadline(a[2]);
        while (true)
        {
            var slice = Slice(deadline);
            var r = wait(new VkDevice((nint)a[0]), (VkSemaphoreWaitInfo*)a[1], slice);
            if (r != VK_TIMEOUT || slice == 0 || Stopwatch.GetTimestamp() >= deadline) return Result(r);
            EnsureGuestPresent("vkWaitSemaphores");
        }
    }

    /// <summary>With VK_QUERY_RESULT_WAIT_BIT the driver would wait for as long as the queries take (for a
    /// query never submitted: forever), so the device's queues are first waited for in slices, then the call
    /// is repeated without the bit until every result is there (the final, complete call writes them all).
    /// Lavapipe waits for its device to go idle inside every vkGetQueryPoolResults (Mesa 22.3 measured
    /// here: a query on a blocked queue never returns, with or without the bit), so there the idle wait
    /// comes first for every call.</summary>
    ulong GetQueryPoolResults(ulong* a)
    {
        var flags = (VkQueryResultFlags)(uint)a[7];
        bool wait = (flags & VkQueryResultFlags.VK_QUERY_RESULT_WAIT_BIT) != 0;
        if (wait || options.DeviceName.Contains("llvmpipe", StringComparison.Ordinal))
        {
            var idle = IdleWait(a[0], QueuesOf(a[0]), "vkGetQueryPoolResults");
            if (idle != VK_SUCCESS) return Result(idle);
        }
        if (!wait) return Trampolines.Invoke(Tables.vkGetQueryPoolResults, Fn(Tables.vkGetQueryPoolResults), a);
        var fn = (delegate* unmanaged<VkDevice, VkQueryPool, uint, uint, nuint, void*, ulong, VkQueryResultFlags, VkResult>)Fn(Tables.vkGetQueryPoolResults);
        var noWait = flags & ~VkQueryResultFlags.VK_QUERY_RESULT_WAIT_BIT;
        long nextCheck = Stopwatch.GetTimestamp() + Stopwatch.Frequency / 50;
        for (int round = 0; ; round++)
        {
            var r = fn(new VkDevice((nint)a[0]), new VkQueryPool(a[1]), (uint)a[2], (uint)a[3], (nuint)a[4], (void*)a[5], a[6], noWait);
            if (r != VK_NOT_READY) return Result(r);
            // Results usually land within microseconds of the work: yield first, then sleep in 1 ms steps.
            if (round < 100) Thread.Yield(); else Thread.Sleep(1);
            if (Stopwatch.GetTimestamp() >= nextCheck)
            {
                EnsureGuestPresent("vkGetQueryPoolResults");
                nextCheck = Stopwatch.GetTimestamp() + Stopwatch.Frequency / 50;
            }
        }
    }

    /// <summary>Records which device a queue belongs to (idle waits need the device for their fence).</summary>
    ulong GetDeviceQueue(int cmd, ulong* a)
    {
        var result = Trampolines.Invoke(cmd, Fn(cmd), a);
        ulong queue = cmd == Tables.vkGetDeviceQueue ? *(ulong*)a[3] : *(ulong*)a[2];
        if (queue != 0) _queueDevice[queue] = a[0];
        return result;
    }

    /// <summary>Remembers timeline semaphores and host-settable events, which teardown signals and sets so that
    /// work the guest left waiting on them can finish.</summary>
    ulong TrackWaitable(int cmd, ulong* a)
    {
        var result = Trampolines.Invoke(cmd, Fn(cmd), a);
        switch (cmd)
        {
            case Tables.vkCreateSemaphore when (int)(uint)result == 0:
                for (var s = (VkBaseInStructure*)((VkSemaphoreCreateInfo*)a[1])->pNext; s != null; s = s->pNext)
                    if (s->sType == VkStructureType.VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO && ((VkSemaphoreTypeCreateInfo*)s)->semaphoreType == VkSemaphoreType.VK_SEMAPHORE_TYPE_TIMELINE)
                        _timelines[*(ulong*)a[3]] = a[0];
                break;
            case Tables.vkCreateEvent when (int)(uint)result == 0:
                if ((((VkEventCreateInfo*)a[1])->flags & VkEventCreateFlags.VK_EVENT_CREATE_DEVICE_ONLY_BIT) == 0) _events[*(ulong*)a[3]] = a[0];
                break;
            case Tables.vkDestroySemaphore: _timelines.Remove(a[1]); break;
            case Tables.vkDestroyEvent: _events.Remove(a[1]); break;
        }
        return result;
    }

    /// <summary>The driver entry points idle waits use: the session's (looked up through its instance) while
    /// the guest is there, the device's own at teardown.</summary>
    struct IdleFns
    {
        public delegate* unmanaged<VkDevice, VkFenceCreateInfo*, void*, VkFence*, VkResult> Create;
        public delegate* unmanaged<VkQueue, uint, VkSubmitInfo*, VkFence, VkResult> Submit;
        public delegate* unmanaged<VkDevice, uint, VkFence*, uint, ulong, VkResult> Wait;
        public delegate* unmanaged<VkDevice, uint, VkFence*, VkResult> Reset;
        public delegate* unmanaged<VkDevice, VkFence, void*, void> Destroy;
        public readonly bool Complete => Create != null && Submit != null && Wait != null && Reset != null && Destroy != null;
    }

    IdleFns SessionIdleFns() => new()
    {
        Create = (delegate* unmanaged<VkDevice, VkFenceCreateInfo*, void*, VkFence*, VkResult>)Fn(Tables.vkCreateFence),
        Submit = (delegate* unmanaged<VkQueue, uint, VkSubmitInfo*, VkFence, VkResult>)Fn(Tables.vkQueueSubmit),
        Wait = (delegate* unmanaged<VkDevice, uint, VkFence*, uint, ulong, VkResult>)Fn(Tables.vkWaitForFences),
        Reset = (delegate* unmanaged<VkDevice, uint, VkFence*, VkResult>)Fn(Tables.vkResetFences),
        Destroy = (delegate* unmanaged<VkDevice, VkFence, void*, void>)Fn(Tables.vkDestroyFence),
    };

    static IdleFns DeviceIdleFns(VkDevice device) => new()
    {
        Create = (delegate* unmanaged<VkDevice, VkFenceCreateInfo*, void*, VkFence*, VkResult>)DeviceFn(device, "vkCreateFence"),
        Submit = (delegate* unmanaged<VkQueue, uint, VkSubmitInfo*, VkFence, VkResult>)DeviceFn(device, "vkQueueSubmit"),
        Wait = (delegate* unmanaged<VkDevice, uint, VkFence*, uint, ulong, VkResult>)DeviceFn(device, "vkWaitForFences"),
        Reset = (delegate* unmanaged<VkDevice, uint, VkFence*, VkResult>)DeviceFn(device, "vkResetFences"),
        Destroy = (delegate* unmanaged<VkDevice, VkFence, void*, void>)DeviceFn(device, "vkDestroyFence"),
    };

    /// <summary>Puts the host's fence behind the work submitted to each of <paramref name="queues"/> (an
    /// empty submit's fence signals once everything submitted before it has completed); a fence still in
    /// flight is already there.</summary>
    VkResult SubmitIdleFences(VkDevice device, ReadOnlySpan<ulong> queues, VkFence* fences, in IdleFns fns)
    {
        for (int i = 0; i < queues.Length; i++)
        {
            if (!_idleFences.TryGetValue(queues[i], out var f))
            {
                var ci = new VkFenceCreateInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
                VkFence created;
                var cr = fns.Create(device, &ci, null, &created);
                if (cr != VK_SUCCESS) return cr;
                _idleFences[queues[i]] = f = created.Handle;
            }
            fences[i] = new VkFence(f);
            if (_idleFencesInFlight.Contains(f)) continue;
            var r = fns.Submit(new VkQueue((nint)queues[i]), 0, null, new VkFence(f));
            if (r != VK_SUCCESS) return r;
            _idleFencesInFlight.Add(f);
        }
        return VK_SUCCESS;
    }

    /// <summary>An idle wait: no deadline, but the guest leaving ends it (after <see cref="DrainMs"/> with
    /// <paramref name="finishAfterGuestLeft"/>, see <see cref="WaitFencesSliced"/>).</summary>
    VkResult IdleWait(ulong device, ReadOnlySpan<ulong> queues, string command, bool finishAfterGuestLeft = false)
    {
        if (queues.Length == 0) return VK_SUCCESS;
        var fns = SessionIdleFns();
        var dev = new VkDevice((nint)device);
        var fences = stackalloc VkFence[queues.Length];
        var r = SubmitIdleFences(dev, queues, fences, fns);
        if (r != VK_SUCCESS) return r;
        r = WaitFencesSliced(fns.Wait, dev, (uint)queues.Length, fences, 1, long.MaxValue, command, finishAfterGuestLeft);
        if (r == VK_SUCCESS) ResetIdleFences(dev, queues.Length, fences, fns);
        return r;
    }

    void ResetIdleFences(VkDevice device, int count, VkFence* fences, in IdleFns fns)
    {
        fns.Reset(device, (uint)count, fences);
        for (int i = 0; i < count; i++) _idleFencesInFlight.Remove(fences[i].Handle);
    }

    ulong QueueWaitIdle(ulong* a)
    {
        if (!_queueDevice.TryGetValue(a[0], out var device)) return Trampolines.Invoke(Tables.vkQueueWaitIdle, Fn(Tables.vkQueueWaitIdle), a);
        return Result(IdleWait(device, [a[0]], "vkQueueWaitIdle"));
    }

    /// <summary>Only queues the guest obtained can have work on them, so fencing those is the device's idle.</summary>
    ulong DeviceWaitIdle(ulong* a)
    {
        return Result(IdleWait(a[0], QueuesOf(a[0]), "vkDeviceWaitIdle"));
    }

    ulong[] QueuesOf(ulong device)
    {
        int n = 0;
        foreach (var (_, d) in _queueDevice) if (d == device) n++;
        var queues = new ulong[n];
        n = 0;
        foreach (var (q, d) in _queueDevice) if (d == device) queues[n++] = q;
        return queues;
    }

    /// <summary>Before vkDestroyDevice: the host's own fences of that device go first, and what was tracked
    /// for it is forgotten (its handles die with it).</summary>
    void ReleaseWaitObjects(ulong device, delegate* unmanaged<VkDevice, VkFence, void*, void> destroyFence)
    {
        foreach (var q in QueuesOf(device))
        {
            if (_idleFences.Remove(q, out var f) && destroyFence != null) destroyFence(new VkDevice((nint)device), new VkFence(f), null);
            _idleFencesInFlight.Remove(f);
            _queueDevice.Remove(q);
        }
        foreach (var (s, d) in _timelines.ToList()) if (d == device) _timelines.Remove(s);
        foreach (var (e, d) in _events.ToList()) if (d == device) _events.Remove(e);
    }

    /// <summary>Teardown of a device the guest left behind: sets its events and signals its timeline
    /// semaphores to the largest value (nobody else will now), so submitted work waiting on them can run
    /// out, and waits for its queues for at most <see cref="DrainMs"/>. The unblocking repeats each slice:
    /// work that ran signals its own (smaller) values, which the next waiter in the queue may not accept.
    /// Returns false when the device is still busy: destroying it (or its instance) then would be
    /// undefined, so the caller leaves it.</summary>
    bool DrainDevice(VkDevice device)
    {
        ulong d = (ulong)device.Handle;
        var signal = (delegate* unmanaged<VkDevice, VkSemaphoreSignalInfo*, VkResult>)DeviceFn(device, "vkSignalSemaphore");
        var getValue = (delegate* unmanaged<VkDevice, VkSemaphore, ulong*, VkResult>)DeviceFn(device, "vkGetSemaphoreCounterValue");
        var setEvent = (delegate* unmanaged<VkDevice, VkEvent, VkResult>)DeviceFn(device, "vkSetEvent");
        var fns = DeviceIdleFns(device);
        if (!fns.Complete) return true;
        var queues = QueuesOf(d);
        var fences = stackalloc VkFence[queues.Length];
        if (SubmitIdleFences(device, queues, fences, fns) != VK_SUCCESS) return true; // nothing more this side can do
        long start = Stopwatch.GetTimestamp(), deadline = start + DrainMs * Stopwatch.Frequency / 1000;
        int signals = 0;
        VkResult r = VK_SUCCESS;
        while (queues.Length > 0)
        {
            foreach (var (s, owner) in _timelines)
            {
                if (owner != d || signal == null || getValue == null) continue;
                ulong value;
                if (getValue(device, new VkSemaphore(s), &value) != VK_SUCCESS || value == ulong.MaxValue) continue;
                var info = new VkSemaphoreSignalInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_SEMAPHORE_SIGNAL_INFO, semaphore = new VkSemaphore(s), value = ulong.MaxValue };
                if (signal(device, &info) == VK_SUCCESS) signals++;
            }
            foreach (var (e, owner) in _events)
                if (owner == d && setEvent != null) setEvent(device, new VkEvent(e));
            var slice = Slice(deadline);
            r = fns.Wait(device, (uint)queues.Length, fences, 1, slice);
            if (r != VK_TIMEOUT || slice == 0) break;
        }
        long ms = (Stopwatch.GetTimestamp() - start) * 1000 / Stopwatch.Frequency;
        if (r == VK_TIMEOUT)
        {
            log.LogWarning("session {Session}: the device is still busy {Ms} ms after the guest left ({Signals} timeline signals); it is left alive rather than destroyed while busy",
                Id, ms, signals);
            return false;
        }
        if (ms > 50 || signals > 0)
            log.LogInformation("session {Session}: the device drained in {Ms} ms after the guest left ({Signals} timeline signals)", Id, ms, signals);
        ReleaseWaitObjects(d, fns.Destroy);
        return true;
    }
}
