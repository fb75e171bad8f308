using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;
using GuestIcd.Vulkan;
using Microsoft.Extensions.Logging;
using static GuestIcd.Vulkan.VkResult;

namespace GuestIcd.HostSim;

/// <summary>Executes decoded commands on the host driver. Most go straight through the generated
/// trampolines; the few whose host-side meaning differs (which physical devices a guest sees, object
/// lifetime) are handled here.</summary>
internal sealed unsafe partial class Session
{
    const int ObjInstance = 1, ObjPhysicalDevice = 2, ObjDevice = 3;

    static ulong Result(VkResult r) => unchecked((ulong)(uint)(int)r);

    /// <summary>Allocation sizes: an offset beyond an allocation would have the driver touch memory the
    /// guest does not own (host memory, or another guest's heap pages).</summary>
    readonly Dictionary<ulong, ulong> _memorySizes = new();

    void CheckMemoryOffset(ulong memory, ulong offset, string command)
    {
        if (!_memorySizes.TryGetValue(memory, out var size)) throw new ProtocolException($"{command}: memory 0x{memory:X} is not an allocation of this session");
        if (offset >= size) throw new ProtocolException($"{command}: offset {offset} is outside the {size}-byte allocation");
    }

    ulong Execute(int cmd, ulong* a)
    {
        ulong result;
        // Objects allocated from a pool, and pools that free their objects wholesale.
        switch (cmd)
        {
            case Tables.vkAllocateDescriptorSets: _objects.PendingParent = ((VkDescriptorSetAllocateInfo*)a[1])->descriptorPool.Handle; break;
            case Tables.vkAllocateCommandBuffers: _objects.PendingParent = ((VkCommandBufferAllocateInfo*)a[1])->commandPool.Handle; break;
            case Tables.vkDestroyDescriptorPool or Tables.vkResetDescriptorPool or Tables.vkDestroyCommandPool: _objects.RemoveChildren(a[1]); break;
        }
        switch (cmd)
        {
            case Tables.vkCreateInstance:
                result = CreateInstance(a);
                break;
            case Tables.vkCreateDevice:
                result = CreateDevice(a);
                break;
            case Tables.vkEnumeratePhysicalDevices:
                result = EnumeratePhysicalDevices(a);
                break;
            case Tables.vkEnumeratePhysicalDeviceGroups:
                result = EnumeratePhysicalDeviceGroups(a);
                break;
            case Tables.vkDestroyInstance:
                StopValidation(new VkInstance((nint)a[0]));
                result = Trampolines.Invoke(cmd, Fn(cmd), a);
                break;
            // Blocking calls run in bounded slices (Waits.cs); the rest record what those need.
            case Tables.vkWaitForFences: result = WaitForFences(a); break;
            case Tables.vkWaitSemaphores: result = WaitSemaphores(a); break;
            case Tables.vkQueueWaitIdle: result = QueueWaitIdle(a); break;
            case Tables.vkDeviceWaitIdle: result = DeviceWaitIdle(a); break;
            case Tables.vkGetQueryPoolResults: result = GetQueryPoolResults(a); break;
            case Tables.vkGetDeviceQueue or Tables.vkGetDeviceQueue2: result = GetDeviceQueue(cmd, a); break;
            case Tables.vkCreateSemaphore or Tables.vkDestroySemaphore or Tables.vkCreateEvent or Tables.vkDestroyEvent: result = TrackWaitable(cmd, a); break;
            case Tables.vkDestroyDevice: result = DestroyDevice(a); break;
            case Tables.vkCreateBuffer:
                result = CreateBuffer(a);
                break;
            case Tables.vkCreateImage:
                result = CreateImage(a);
                break;
            case Tables.vkAllocateMemory:
                result = Trampolines.Invoke(cmd, Fn(cmd), a);
                if (result == 0) _memorySizes[*(ulong*)a[3]] = ((VkMemoryAllocateInfo*)a[1])->allocationSize;
                if (_heap == null && result == 0) ShadowIfMappable(a);
                break;
            case Tables.vkFreeMemory:
                DropShadow(a[1]);
                _memorySizes.Remove(a[1]);
                result = Trampolines.Invoke(cmd, Fn(cmd), a);
                break;
            case Tables.vkBindBufferMemory or Tables.vkBindImageMemory:
                CheckMemoryOffset(a[2], a[3], Tables.Commands[cmd].Name);
                result = Trampolines.Invoke(cmd, Fn(cmd), a);
                break;
            case Tables.vkBindBufferMemory2:
                for (uint i = 0; i < (uint)a[1]; i++) CheckMemoryOffset(((VkBindBufferMemoryInfo*)a[2])[i].memory.Handle, ((VkBindBufferMemoryInfo*)a[2])[i].memoryOffset, "vkBindBufferMemory2");
                result = Trampolines.Invoke(cmd, Fn(cmd), a);
                break;
            case Tables.vkBindImageMemory2:
                for (uint i = 0; i < (uint)a[1]; i++) CheckMemoryOffset(((VkBindImageMemoryInfo*)a[2])[i].memory.Handle, ((VkBindImageMemoryInfo*)a[2])[i].memoryOffset, "vkBindImageMemory2");
                result = Trampolines.Invoke(cmd, Fn(cmd), a);
                break;
            case Tables.vkFlushMappedMemoryRanges or Tables.vkInvalidateMappedMemoryRanges:
                for (uint i = 0; i < (uint)a[1]; i++)
                {
                    var range = ((VkMappedMemoryRange*)a[2])[i];
                    CheckMemoryOffset(range.memory.Handle, range.offset, Tables.Commands[cmd].Name);
                    if (range.size != VkConstants.VK_WHOLE_SIZE && range.size > _memorySizes[range.memory.Handle] - range.offset)
                        throw new ProtocolException($"{Tables.Commands[cmd].Name}: range [{range.offset}, +{range.size}) outside the {_memorySizes[range.memory.Handle]}-byte allocation");
                }
                result = Trampolines.Invoke(cmd, Fn(cmd), a);
                break;
            default:
                if (Tables.Commands[cmd].Level != CommandLevel.Global && _instance.IsNull)
                    throw new ProtocolException($"{Tables.Commands[cmd].Name} before vkCreateInstance");
                result = Trampolines.Invoke(cmd, Fn(cmd), a);
                break;
        }
        ref readonly var cd = ref Tables.Commands[cmd];
        if (cd.Return != ReturnKind.VkResult || (int)(uint)result >= 0) _objects.CommitCreates();
        else
        {
            _objects.DiscardCreates();
            if (!cd.WantsReply)
                log.LogWarning("session {Session}: {Command} failed on the host ({Result}); the guest did not wait for it, so its first use of that object ends the session",
                    Id, cd.Name, (VkResult)(int)(uint)result);
        }
        ForgetDestroyed(cmd, a);
        if (cmd == Tables.vkDestroyInstance && (ulong)_instance.Handle == a[0]) { _instance = default; Array.Clear(_fns); }
        return result;
    }

    ulong CreateInstance(ulong* a)
    {
        var ci = (VkInstanceCreateInfo*)a[0];
        if (options.Validation) AddValidation(ci);
        var fn = (delegate* unmanaged<VkInstanceCreateInfo*, void*, VkInstance*, VkResult>)HostVulkan.GetInstanceProcAddr(default, "vkCreateInstance");
        var r = fn(ci, null, (VkInstance*)a[2]);
        if (r == VK_SUCCESS)
        {
            _instance = *(VkInstance*)a[2];
            Array.Clear(_fns);
            if (options.Validation) StartValidation();
        }
        else log.LogWarning("session {Session}: host vkCreateInstance failed: {Result}", Id, r);
        return Result(r);
    }

    /// <summary>The guest sees exactly the device this hostsim serves (--device), not everything the host has.</summary>
    VkPhysicalDevice Selected(VkInstance instance)
    {
        foreach (var pd in HostVulkan.PhysicalDevices(instance))
            if (HostVulkan.DeviceName(instance, pd) == options.DeviceName) return pd;
        return default;
    }

    ulong EnumeratePhysicalDevices(ulong* a)
    {
        var pd = Selected(new VkInstance((nint)a[0]));
        uint have = pd.IsNull ? 0u : 1u;
        uint* pCount = (uint*)a[1];
        var list = (VkPhysicalDevice*)a[2];
        if (list == null) { *pCount = have; return 0; }
        uint n = Math.Min(*pCount, have);
        if (n > 0) list[0] = pd;
        *pCount = n;
        return Result(n < have ? VK_INCOMPLETE : VK_SUCCESS);
    }

    ulong EnumeratePhysicalDeviceGroups(ulong* a)
    {
        var pd = Selected(new VkInstance((nint)a[0]));
        uint have = pd.IsNull ? 0u : 1u;
        uint* pCount = (uint*)a[1];
        var groups = (VkPhysicalDeviceGroupProperties*)a[2];
        if (groups == null) { *pCount = have; return 0; }
        uint n = Math.Min(*pCount, have);
        if (n > 0)
        {
            groups[0].physicalDeviceCount = 1;
            groups[0].physicalDevices[0] = pd;
            groups[0].subsetAllocation = 0;
        }
        *pCount = n;
        return Result(n < have ? VK_INCOMPLETE : VK_SUCCESS);
    }

    void ForgetDestroyed(int cmd, ulong* a)
    {
        var ps = CommandCodec.ParamsOf(cmd);
        foreach (ref readonly var f in ps)
        {
            if ((f.Flags & FieldFlags.Destroy) == 0) continue;
            if (f.Kind == FieldKind.Handle) _objects.RemoveHost(f.Type, a[f.Offset / 8]);
            else if (f.Kind == FieldKind.Pointer && a[f.Offset / 8] != 0)
            {
                ulong n = StructCodec.Count(f, (byte*)a);
                for (ulong i = 0; i < n; i++) _objects.RemoveHost(f.Type, ((ulong*)a[f.Offset / 8])[i]);
            }
        }
    }

    /// <summary>A guest that leaves (or is thrown out) without cleaning up must not leak host objects.</summary>
    void ReleaseAll()
    {
        var live = _objects.All.OrderByDescending(kv => kv.Value.Order).ToList();
        bool busy = false;
        foreach (var (_, e) in live)
        {
            try
            {
                if (e.Type == ObjDevice)
                {
                    var destroy = (delegate* unmanaged<VkDevice, void*, void>)HostVulkan.GetInstanceProcAddr(_instance, "vkDestroyDevice");
                    // Bounded: the guest may have left work waiting forever (Waits.cs).
                    if (!DrainDevice(new VkDevice((nint)e.Host))) { busy = true; continue; }
                    destroy(new VkDevice((nint)e.Host), null);
                }
            }
            catch (Exception ex) { log.LogWarning("session {Session}: releasing a device failed: {Error}", Id, ex.Message); }
        }
        foreach (var (_, e) in live)
        {
            if (e.Type != ObjInstance || busy) continue;
            StopValidation(new VkInstance((nint)e.Host));
            var destroy = (delegate* unmanaged<VkInstance, void*, void>)HostVulkan.GetInstanceProcAddr(new VkInstance((nint)e.Host), "vkDestroyInstance");
            destroy(new VkInstance((nint)e.Host), null);
        }
        _instance = default;
        foreach (var m in _shadows.Keys.ToList()) DropShadow(m);
    }
}
