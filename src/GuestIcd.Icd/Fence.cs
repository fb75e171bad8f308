using GuestIcd.Protocol;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkResult;

namespace GuestIcd.Icd;

/// <summary>Fences. A fence's status can only change after it is submitted, so the guest tracks what it
/// knows: a signaled fence stays signaled until vkResetFences, and an unsignaled fence that no submit
/// names cannot become signaled. vkGetFenceStatus crosses to the host only for a fence in flight.</summary>
internal static unsafe partial class Entry
{
    enum FenceState : byte { Unsignaled, Pending, Signaled }

    static readonly Dictionary<ulong, FenceState> s_fences = new();

    static void SetFence(ulong fence, FenceState state)
    {
        if (fence == 0) return;
        lock (s_fences) s_fences[fence] = state;
    }

    public static VkResult vkCreateFence(VkDevice device, VkFenceCreateInfo* pCreateInfo, VkAllocationCallbacks* pAllocator, VkFence* pFence)
    {
        ulong* a = stackalloc ulong[4];
        a[0] = (ulong)device.Handle; a[1] = (ulong)pCreateInfo; a[2] = 0; a[3] = (ulong)pFence;
        var r = (VkResult)(int)Generic.Call(Tables.vkCreateFence, a);
        if (r == VK_SUCCESS)
            SetFence(pFence->Handle, (pCreateInfo->flags & VkFenceCreateFlags.VK_FENCE_CREATE_SIGNALED_BIT) != 0 ? FenceState.Signaled : FenceState.Unsignaled);
        return r;
    }

    public static void vkDestroyFence(VkDevice device, VkFence fence, VkAllocationCallbacks* pAllocator)
    {
        if (fence.IsNull) return;
        lock (s_fences) s_fences.Remove(fence.Handle);
        ulong* a = stackalloc ulong[3];
        a[0] = (ulong)device.Handle; a[1] = fence.Handle; a[2] = 0;
        Generic.Call(Tables.vkDestroyFence, a);
    }

    public static VkResult vkGetFenceStatus(VkDevice device, VkFence fence)
    {
        FenceState known;
        lock (s_fences) known = s_fences.GetValueOrDefault(fence.Handle, FenceState.Pending);
        if (known == FenceState.Signaled) return VK_SUCCESS;
        if (known == FenceState.Unsignaled) return VK_NOT_READY;
        ulong* a = stackalloc ulong[2];
        a[0] = (ulong)device.Handle; a[1] = fence.Handle;
        var r = (VkResult)(int)Generic.Call(Tables.vkGetFenceStatus, a);
        if (r == VK_SUCCESS) SetFence(fence.Handle, FenceState.Signaled);
        return r;
    }

    public static VkResult vkResetFences(VkDevice device, uint fenceCount, VkFence* pFences)
    {
        ulong* a = stackalloc ulong[3];
        a[0] = (ulong)device.Handle; a[1] = fenceCount; a[2] = (ulong)pFences;
        var r = (VkResult)(int)Generic.Call(Tables.vkResetFences, a);
        if (r == VK_SUCCESS) for (uint i = 0; i < fenceCount; i++) SetFence(pFences[i].Handle, FenceState.Unsignaled);
        return r;
    }

    public static VkResult vkWaitForFences(VkDevice device, uint fenceCount, VkFence* pFences, uint waitAll, ulong timeout)
    {
        bool allKnownSignaled = true, anyKnownSignaled = false;
        lock (s_fences)
            for (uint i = 0; i < fenceCount; i++)
            {
                bool signaled = s_fences.GetValueOrDefault(pFences[i].Handle, FenceState.Pending) == FenceState.Signaled;
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
            for (uint i = 0; i < fenceCount; i++) SetFence(pFences[i].Handle, FenceState.Signaled);
        return r;
    }

    public static VkResult vkQueueSubmit(VkQueue queue, uint submitCount, VkSubmitInfo* pSubmits, VkFence fence)
    {
        SetFence(fence.Handle, FenceState.Pending);
        ulong* a = stackalloc ulong[4];
        a[0] = (ulong)queue.Handle; a[1] = submitCount; a[2] = (ulong)pSubmits; a[3] = fence.Handle;
        return (VkResult)(int)Generic.Call(Tables.vkQueueSubmit, a);
    }

    public static VkResult vkQueueSubmit2(VkQueue queue, uint submitCount, VkSubmitInfo2* pSubmits, VkFence fence)
    {
        SetFence(fence.Handle, FenceState.Pending);
        ulong* a = stackalloc ulong[4];
        a[0] = (ulong)queue.Handle; a[1] = submitCount; a[2] = (ulong)pSubmits; a[3] = fence.Handle;
        return (VkResult)(int)Generic.Call(Tables.vkQueueSubmit2, a);
    }

    public static VkResult vkQueueBindSparse(VkQueue queue, uint bindInfoCount, VkBindSparseInfo* pBindInfo, VkFence fence)
    {
        SetFence(fence.Handle, FenceState.Pending);
        ulong* a = stackalloc ulong[4];
        a[0] = (ulong)queue.Handle; a[1] = bindInfoCount; a[2] = (ulong)pBindInfo; a[3] = fence.Handle;
        return (VkResult)(int)Generic.Call(Tables.vkQueueBindSparse, a);
    }
}
