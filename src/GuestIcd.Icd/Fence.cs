using GuestIcd.Protocol;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkResult;
using FenceState = GuestIcd.Icd.SyncObjects.FenceState;

namespace GuestIcd.Icd;

/// <summary>Fences and timeline semaphores. A fence's status can only change after it is submitted, so the
/// guest tracks what it knows (per connection, <see cref="SyncObjects"/>): a signaled fence stays signaled
/// until vkResetFences, and an unsignaled fence that no submit names cannot become signaled. A fence in
/// flight is read from its feedback slot where the host writes one, else asked about.</summary>
internal static unsafe partial class Entry
{
    static SyncObjects SyncOf(VkDevice device) => Generic.ConnectionOf(device.Handle).Sync;
    static SyncObjects SyncOf(VkQueue queue) => Generic.ConnectionOf(queue.Handle).Sync;

    public static VkResult vkCreateFence(VkDevice device, VkFenceCreateInfo* pCreateInfo, VkAllocationCallbacks* pAllocator, VkFence* pFence)
    {
        ulong* a = stackalloc ulong[4];
        a[0] = (ulong)device.Handle; a[1] = (ulong)pCreateInfo; a[2] = 0; a[3] = (ulong)pFence;
        var r = (VkResult)(int)Generic.Call(Tables.vkCreateFence, a);
        if (r == VK_SUCCESS)
            SyncOf(device).Created(pFence->Handle, (pCreateInfo->flags & VkFenceCreateFlags.VK_FENCE_CREATE_SIGNALED_BIT) != 0);
        return r;
    }

    public static void vkDestroyFence(VkDevice device, VkFence fence, VkAllocationCallbacks* pAllocator)
    {
        if (fence.IsNull) return;
        ulong* a = stackalloc ulong[3];
        a[0] = (ulong)device.Handle; a[1] = fence.Handle; a[2] = 0;
        Generic.Call(Tables.vkDestroyFence, a);
        SyncOf(device).DestroyedFence(fence.Handle);
    }

    public static VkResult vkGetFenceStatus(VkDevice device, VkFence fence)
    {
        var sync = SyncOf(device);
        var known = sync.Known(fence.Handle, out ulong* slot);
        if (known == FenceState.Signaled) return VK_SUCCESS;
        if (known == FenceState.Unsignaled) return VK_NOT_READY;
        if (slot != null)
        {
            if (Volatile.Read(ref *slot) != 0) { sync.SetFence(fence.Handle, FenceState.Signaled); return VK_SUCCESS; }
            var c = Generic.ConnectionOf(device.Handle);
            c.FlushQueued();
            return c.StillConnected() ? VK_NOT_READY : VK_ERROR_DEVICE_LOST;
        }
        ulong* a = stackalloc ulong[2];
        a[0] = (ulong)device.Handle; a[1] = fence.Handle;
        var r = (VkResult)(int)Generic.Call(Tables.vkGetFenceStatus, a);
        if (r == VK_SUCCESS) sync.SetFence(fence.Handle, FenceState.Signaled);
        return r;
    }

    public static VkResult vkResetFences(VkDevice device, uint fenceCount, VkFence* pFences)
    {
        ulong* a = stackalloc ulong[3];
        a[0] = (ulong)device.Handle; a[1] = fenceCount; a[2] = (ulong)pFences;
        var r = (VkResult)(int)Generic.Call(Tables.vkResetFences, a);
        var sync = SyncOf(device);
        if (r == VK_SUCCESS) for (uint i = 0; i < fenceCount; i++) sync.SetFence(pFences[i].Handle, FenceState.Unsignaled);
        return r;
    }

    public static VkResult vkWaitForFences(VkDevice device, uint fenceCount, VkFence* pFences, uint waitAll, ulong timeout)
    {
        var sync = SyncOf(device);
        bool allKnownSignaled = true, anyKnownSignaled = false;
        for (uint i = 0; i < fenceCount; i++)
        {
            var known = sync.Known(pFences[i].Handle, out ulong* slot);
            bool signaled = known == FenceState.Signaled || (known == FenceState.Pending && slot != null && Volatile.Read(ref *slot) != 0);
            allKnownSignaled &= signaled;
            anyKnownSignaled |= signaled;
        }
        // Answered here, the wait cannot time out on a host that is slow to say what is already known.
        if (fenceCount > 0 && (allKnownSignaled || (waitAll == 0 && anyKnownSignaled))) return VK_SUCCESS;
        ulong* a = stackalloc ulong[5];
        a[0] = (ulong)device.Handle; a[1] = fenceCount; a[2] = (ulong)pFences; a[3] = waitAll; a[4] = timeout;
        var r = (VkResult)(int)Generic.Call(Tables.vkWaitForFences, a);
        // With waitAll every fence is signaled now; with "any" we do not know which, and learn it on the next query.
        if (r == VK_SUCCESS && (waitAll != 0 || fenceCount == 1))
            for (uint i = 0; i < fenceCount; i++) sync.SetFence(pFences[i].Handle, FenceState.Signaled);
        return r;
    }

    public static VkResult vkQueueSubmit(VkQueue queue, uint submitCount, VkSubmitInfo* pSubmits, VkFence fence)
    {
        SyncOf(queue).SetFence(fence.Handle, FenceState.Pending);
        ulong* a = stackalloc ulong[4];
        a[0] = (ulong)queue.Handle; a[1] = submitCount; a[2] = (ulong)pSubmits; a[3] = fence.Handle;
        return (VkResult)(int)Generic.Call(Tables.vkQueueSubmit, a);
    }

    public static VkResult vkQueueSubmit2(VkQueue queue, uint submitCount, VkSubmitInfo2* pSubmits, VkFence fence)
    {
        SyncOf(queue).SetFence(fence.Handle, FenceState.Pending);
        ulong* a = stackalloc ulong[4];
        a[0] = (ulong)queue.Handle; a[1] = submitCount; a[2] = (ulong)pSubmits; a[3] = fence.Handle;
        return (VkResult)(int)Generic.Call(Tables.vkQueueSubmit2, a);
    }

    public static VkResult vkQueueBindSparse(VkQueue queue, uint bindInfoCount, VkBindSparseInfo* pBindInfo, VkFence fence)
    {
        SyncOf(queue).SetFence(fence.Handle, FenceState.Pending);
        ulong* a = stackalloc ulong[4];
        a[0] = (ulong)queue.Handle; a[1] = bindInfoCount; a[2] = (ulong)pBindInfo; a[3] = fence.Handle;
        return (VkResult)(int)Generic.Call(Tables.vkQueueBindSparse, a);
    }

    // ---- semaphores: timeline values from their feedback slot ----

    public static VkResult vkCreateSemaphore(VkDevice device, VkSemaphoreCreateInfo* pCreateInfo, VkAllocationCallbacks* pAllocator, VkSemaphore* pSemaphore)
    {
        ulong* a = stackalloc ulong[4];
        a[0] = (ulong)device.Handle; a[1] = (ulong)pCreateInfo; a[2] = 0; a[3] = (ulong)pSemaphore;
        var r = (VkResult)(int)Generic.Call(Tables.vkCreateSemaphore, a);
        if (r != VK_SUCCESS) return r;
        for (var s = (VkBaseInStructure*)pCreateInfo->pNext; s != null; s = s->pNext)
            if (s->sType == VkStructureType.VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO && ((VkSemaphoreTypeCreateInfo*)s)->semaphoreType == VkSemaphoreType.VK_SEMAPHORE_TYPE_TIMELINE)
                SyncOf(device).CreatedTimeline(pSemaphore->Handle, ((VkSemaphoreTypeCreateInfo*)s)->initialValue);
        return r;
    }

    public static void vkDestroySemaphore(VkDevice device, VkSemaphore semaphore, VkAllocationCallbacks* pAllocator)
    {
        if (semaphore.IsNull) return;
        ulong* a = stackalloc ulong[3];
        a[0] = (ulong)device.Handle; a[1] = semaphore.Handle; a[2] = 0;
        Generic.Call(Tables.vkDestroySemaphore, a);
        SyncOf(device).DestroyedSemaphore(semaphore.Handle);
    }

    /// <summary>A wait that the slots already show satisfied is answered here (no round trip, and no
    /// timeout on a busy host for a value that is there); anything else is the host's to answer.</summary>
    public static VkResult vkWaitSemaphores(VkDevice device, VkSemaphoreWaitInfo* pWaitInfo, ulong timeout)
    {
        var sync = SyncOf(device);
        uint n = pWaitInfo->semaphoreCount;
        bool any = (pWaitInfo->flags & VkSemaphoreWaitFlags.VK_SEMAPHORE_WAIT_ANY_BIT) != 0, all = n > 0, some = false;
        for (uint i = 0; i < n; i++)
        {
            var slot = sync.TimelineSlot(pWaitInfo->pSemaphores[i].Handle);
            bool reached = slot != null && Volatile.Read(ref *slot) >= pWaitInfo->pValues[i];
            all &= reached;
            some |= reached;
        }
        if (all || (any && some)) return VK_SUCCESS;
        ulong* a = stackalloc ulong[3];
        a[0] = (ulong)device.Handle; a[1] = (ulong)pWaitInfo; a[2] = timeout;
        return (VkResult)(int)Generic.Call(Tables.vkWaitSemaphores, a);
    }

    public static VkResult vkGetSemaphoreCounterValue(VkDevice device, VkSemaphore semaphore, ulong* pValue)
    {
        var slot = SyncOf(device).TimelineSlot(semaphore.Handle);
        if (slot != null)
        {
            var c = Generic.ConnectionOf(device.Handle);
            c.FlushQueued();
            if (!c.StillConnected()) return VK_ERROR_DEVICE_LOST;
            *pValue = Volatile.Read(ref *slot);
            return VK_SUCCESS;
        }
        ulong* a = stackalloc ulong[3];
        a[0] = (ulong)device.Handle; a[1] = semaphore.Handle; a[2] = (ulong)pValue;
        return (VkResult)(int)Generic.Call(Tables.vkGetSemaphoreCounterValue, a);
    }
}
