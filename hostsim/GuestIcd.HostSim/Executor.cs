using GuestIcd.HostSim.Gate;
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

    /// <summary>Allocation sizes of this session (the gate checks binds and ranges against its own copy).</summary>
    readonly Dictionary<ulong, ulong> _memorySizes = new();

    ValidUsageGate? _gateInstance;
    /// <summary>The valid-usage gate between decoder and driver (Gate/).</summary>
    ValidUsageGate _gate => _gateInstance ??= NewGate();

    ValidUsageGate NewGate()
    {
        var g = new ValidUsageGate(name => HostVulkan.GetInstanceProcAddr(_instance, name), _arena);
        g.DeviceAlive = h => _objects.IdOf(ObjDevice, h) != 0;
        g.WaitIdle = device => IdleWait(device, QueuesOf(device), "a destroy that waits for the device", finishAfterGuestLeft: true);
        g.Logger = m => log.LogWarning("session {Session}: {Reason}", Id, m);
        // Memory the guest freed while still bound is freed here once its last resource is gone.
        g.FreeMemory = (device, memory) =>
        {
            ulong* args = stackalloc ulong[CommandCodec.MaxParams];
            args[0] = device; args[1] = memory; args[2] = 0;
            Execute(Tables.vkFreeMemory, args);
        };
        return g;
    }

    ulong Execute(int cmd, ulong* a)
    {
        ulong result;
        _objects.PendingOwner = OwnerOf(cmd, a);
        if (_objects.PendingOverLimit) return RefuseOverObjectQuota(cmd);
        // A reset pool frees its sets; destroyed pools, devices and instances take their children with them (Teardown.cs).
        if (cmd == Tables.vkResetDescriptorPool) _objects.ForgetChildren(_objects.IdOf(ObjDescriptorPool, a[1]));
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
                result = DestroyInstance(a);
                break;
            case Tables.vkDestroyDevice:
                result = DestroyDevice(a);
                break;
            // Blocking calls run in bounded slices (Waits.cs); the rest record what those need.
            case Tables.vkWaitForFences: result = WaitForFences(a); break;
            case Tables.vkWaitSemaphores: result = WaitSemaphores(a); break;
            case Tables.vkQueueWaitIdle: result = QueueWaitIdle(a); break;
            case Tables.vkDeviceWaitIdle: result = DeviceWaitIdle(a); break;
            case Tables.vkGetQueryPoolResults: result = GetQueryPoolResults(a); break;
            case Tables.vkGetDeviceQueue or Tables.vkGetDeviceQueue2: result = GetDeviceQueue(cmd, a); break;
            case Tables.vkCreateSemaphore or Tables.vkDestroySemaphore or Tables.vkCreateEvent or Tables.vkDestroyEvent: result = TrackWaitable(cmd, a); break;
            case Tables.vkCreateBuffer:
                result = CreateBuffer(a);
                break;
            case Tables.vkCreateImage:
                result = CreateImage(a);
                break;
            case Tables.vkAllocateMemory:
                result = AllocateMemory(a);
                break;
            case Tables.vkFreeMemory:
                ForgetMemory(a[1]);
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
        return result;
    }

    ulong CreateInstance(ulong* a)
    {
        var ci = (VkInstanceCreateInfo*)a[0];
        var key = InstanceKey(ci);
        if (TryUnpark(key, out var parked))
        {
            *(VkInstance*)a[2] = _instance = parked;
            Array.Clear(_fns);
            return Result(VK_SUCCESS);
        }
        if (options.Validation) AddValidation(ci);
        var fn = (delegate* unmanaged<VkInstanceCreateInfo*, void*, VkInstance*, VkResult>)HostVulkan.GetInstanceProcAddr(default, "vkCreateInstance");
        var r = fn(ci, null, (VkInstance*)a[2]);
        if (r == VK_SUCCESS)
        {
            _instance = *(VkInstance*)a[2];
            if (key is not null) _instanceKeys[_instance.Handle] = key;
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
}
