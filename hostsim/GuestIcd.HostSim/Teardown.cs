using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Transport.Native;
using GuestIcd.Vulkan;
using Microsoft.Extensions.Logging;

namespace GuestIcd.HostSim;

/// <summary>Object lifetime across the ownership tree: a guest that leaves, or destroys a parent before its
/// children, must leave nothing behind and must never make the host call into a destroyed object. Children
/// go before parents (memory last on each device, devices before their instance), each with its type's own
/// destroy command; the calls are resolved through the loader's exports and vkGetDeviceProcAddr of the
/// still-live device, never through an instance that may already be gone.</summary>
internal sealed unsafe partial class Session
{
    const int ObjDescriptorPool = 22, ObjCommandPool = 25;

    static readonly delegate* unmanaged<VkDevice, VkResult> s_deviceWaitIdle = (delegate* unmanaged<VkDevice, VkResult>)HostVulkan.Export("vkDeviceWaitIdle");
    static readonly delegate* unmanaged<VkDevice, void*, void> s_destroyDevice = (delegate* unmanaged<VkDevice, void*, void>)HostVulkan.Export("vkDestroyDevice");
    static readonly delegate* unmanaged<VkDevice, byte*, nint> s_getDeviceProcAddr = (delegate* unmanaged<VkDevice, byte*, nint>)HostVulkan.Export("vkGetDeviceProcAddr");

    /// <summary>Object type → the commands that destroy or free one object of it, `(parent, object, pAllocator)`,
    /// core names first (a promoted extension's alias is the fallback where the core name is not exposed).</summary>
    static readonly Dictionary<int, int[]> s_destroyers = FindDestroyers();

    static Dictionary<int, int[]> FindDestroyers()
    {
        var found = new Dictionary<int, List<int>>();
        for (int c = 0; c < Tables.Commands.Length; c++)
        {
            var ps = CommandCodec.ParamsOf(c);
            if (ps.Length != 3 || ps[0].Kind != FieldKind.Handle || (ps[0].Type != ObjDevice && ps[0].Type != ObjInstance)
                || ps[1].Kind != FieldKind.Handle || (ps[1].Flags & FieldFlags.Destroy) == 0 || ps[2].Kind != FieldKind.Skip) continue;
            if (!found.TryGetValue(ps[1].Type, out var list)) found[ps[1].Type] = list = new();
            list.Add(c);
        }
        return found.ToDictionary(kv => kv.Key, kv => kv.Value.OrderBy(c => Tables.Commands[c].Name.Length).ToArray());
    }

    /// <summary>Commands that create objects or hand back handles the host found (queues, physical devices).</summary>
    static readonly bool[] s_makesObjects = Enumerable.Range(0, Tables.Commands.Length).Select(c =>
    {
        foreach (ref readonly var f in CommandCodec.ParamsOf(c))
            if ((f.Flags & FieldFlags.Create) != 0 || (f.IsOut && (f.Kind == FieldKind.Handle || f.Elem == ElemKind.Handle || f.Kind == FieldKind.Struct || f.Elem == ElemKind.Struct))) return true;
        return false;
    }).ToArray();

    /// <summary>Who owns what <paramref name="cmd"/> creates: the pool it allocates from, else its dispatchable handle.</summary>
    ulong OwnerOf(int cmd, ulong* a)
    {
        if (!s_makesObjects[cmd]) return 0;
        switch (cmd)
        {
            case Tables.vkAllocateDescriptorSets: return _objects.IdOf(ObjDescriptorPool, ((VkDescriptorSetAllocateInfo*)a[1])->descriptorPool.Handle);
            case Tables.vkAllocateCommandBuffers: return _objects.IdOf(ObjCommandPool, ((VkCommandBufferAllocateInfo*)a[1])->commandPool.Handle);
        }
        var ps = CommandCodec.ParamsOf(cmd);
        return Tables.Commands[cmd].Level != CommandLevel.Global && ps.Length > 0 && ps[0].Kind == FieldKind.Handle ? _objects.IdOf(ps[0].Type, a[0]) : 0;
    }

    static nint DeviceFn(VkDevice device, string name)
    {
        Span<byte> buf = stackalloc byte[128];
        int n = System.Text.Encoding.ASCII.GetBytes(name, buf);
        buf[n] = 0;
        fixed (byte* p = buf) return s_getDeviceProcAddr(device, p);
    }

    /// <summary>Destroys one object with its type's destroy command, found through <paramref name="resolve"/>.</summary>
    void DestroyOne(ulong parent, in ObjectTable.Entry e, Func<string, nint> resolve)
    {
        if (!s_destroyers.TryGetValue(e.Type, out var candidates))
        {
            log.LogWarning("session {Session}: no destroy command for object type {Type}; it stays with its parent", Id, e.Type);
            return;
        }
        foreach (var c in candidates)
        {
            var fn = resolve(Tables.Commands[c].Name);
            if (fn == 0) continue;
            ulong* a = stackalloc ulong[3];
            a[0] = parent; a[1] = e.Host; a[2] = 0;
            Trampolines.Invoke(c, fn, a);
            return;
        }
        log.LogWarning("session {Session}: the host exposes no destroy command for object type {Type}", Id, e.Type);
    }

    /// <summary>Everything the device owns, destroyed (pools take their sets and command buffers with them; memory
    /// last, after whatever was bound to it) and forgotten. The device itself stays.</summary>
    void ReleaseDeviceChildren(ulong deviceId, VkDevice device)
    {
        // The caller drained the device (DrainDevice): nothing may be destroyed while the device still uses it.
        var kids = new List<ObjectTable.Entry>();
        foreach (var k in _objects.ChildrenOf(deviceId))
            if ((k & ObjectTable.HostChosen) == 0 && _objects.TryGet(k, out var e)) kids.Add(e);
        // Newest first (an object only refers to older ones), memory after everything else.
        kids.Sort((x, y) => x.Type == ObjDeviceMemory != (y.Type == ObjDeviceMemory) ? (x.Type == ObjDeviceMemory ? 1 : -1) : y.Order.CompareTo(x.Order));
        foreach (var e in kids)
        {
            if (e.Type == ObjDeviceMemory) ForgetMemory(e.Host);
            DestroyOne((ulong)device.Handle, e, name => DeviceFn(device, name));
        }
        if (kids.Count > 0) log.LogDebug("session {Session}: destroyed {Count} objects the guest left on device 0x{Device:X}", Id, kids.Count, deviceId);
        _objects.ForgetChildren(deviceId);
    }

    /// <summary>Returns false when the device is still busy after its bounded drain: it and its instance are
    /// then left alive, since destroying them under running work is undefined.</summary>
    bool ReleaseDevice(ulong deviceId)
    {
        if (!_objects.TryGet(deviceId, out var e)) return true;
        var device = new VkDevice((nint)e.Host);
        // Bounded: the guest may have left work waiting forever (Waits.cs).
        if (!DrainDevice(device)) return false;
        ReleaseDeviceChildren(deviceId, device);
        s_destroyDevice(device, null);
        _physicalDevices.Remove(device.Handle);
        _objects.Forget(deviceId);
        return true;
    }

    /// <summary>The instance's devices (with all they own) and its own children, destroyed and forgotten.</summary>
    bool ReleaseInstanceChildren(ulong instanceId, VkInstance instance)
    {
        bool idle = true;
        foreach (var pd in _objects.ChildrenOf(instanceId).ToArray())
            foreach (var d in _objects.ChildrenOf(pd).ToArray())
                if (_objects.TryGet(d, out var e) && e.Type == ObjDevice) idle &= ReleaseDevice(d);
        if (!idle) return false;
        var kids = new List<ObjectTable.Entry>();
        foreach (var k in _objects.ChildrenOf(instanceId))
            if ((k & ObjectTable.HostChosen) == 0 && _objects.TryGet(k, out var e)) kids.Add(e);
        kids.Sort((x, y) => y.Order.CompareTo(x.Order));
        foreach (var e in kids) DestroyOne((ulong)instance.Handle, e, name => HostVulkan.GetInstanceProcAddr(instance, name));
        _objects.ForgetChildren(instanceId);
        return true;
    }

    /// <param name="park">The guest's vkDestroyInstance: the driver's instance may wait for its next (ParkedInstance.cs).</param>
    void ReleaseInstance(ulong instanceId, bool park = false)
    {
        if (!_objects.TryGet(instanceId, out var e)) return;
        var instance = new VkInstance((nint)e.Host);
        if (!ReleaseInstanceChildren(instanceId, instance)) return;
        StopValidation(instance);
        if (!(park && TryPark(instance)))
        {
            _instanceKeys.Remove(instance.Handle);
            DestroyDriverInstance(instance);
        }
        _objects.Forget(instanceId);
        if (_instance.Handle == instance.Handle)
        {
            // Later commands resolve through an instance that still lives (a guest may hold several).
            _instance = default;
            foreach (var (_, other) in _objects.All)
                if (other.Type == ObjInstance) { _instance = new VkInstance((nint)other.Host); break; }
            Array.Clear(_fns);
        }
    }

    /// <summary>vkDestroyInstance from the guest: what it still owns goes first.</summary>
    ulong DestroyInstance(ulong* a)
    {
        ulong id = _objects.IdOf(ObjInstance, a[0]);
        if (id != 0) ReleaseInstance(id, park: true);
        return 0;
    }

    /// <summary>vkDestroyDevice from the guest: its buffers, images, pools, memory... go first, and their ids are
    /// forgotten, so a later use of one is an unknown id (a protocol error), not a call into freed memory.</summary>
    ulong DestroyDevice(ulong* a)
    {
        ulong id = _objects.IdOf(ObjDevice, a[0]);
        if (id != 0) ReleaseDevice(id);
        return 0;
    }

    /// <summary>A guest that leaves (or is thrown out) without cleaning up must not leak host objects.</summary>
    void ReleaseAll()
    {
        var instances = _objects.All.Where(kv => kv.Value.Type == ObjInstance).OrderByDescending(kv => kv.Value.Order).Select(kv => kv.Key).ToList();
        foreach (var id in instances) ReleaseInstance(id);
        DestroyParked();
        // Devices whose instance the table never knew (not expected: every device is created from a physical device of one).
        foreach (var id in _objects.All.Where(kv => kv.Value.Type == ObjDevice).Select(kv => kv.Key).ToList()) ReleaseDevice(id);
        if (_objects.GuestCount > 0)
            log.LogWarning("session {Session}: {Count} objects had no owner the host could destroy them through", Id, _objects.GuestCount);
        _instance = default;
        Array.Clear(_fns);
        foreach (var m in _shadows.Keys.ToList()) DropShadow(m);
        // The driver's and decoder's frees go back to the session thread's malloc arena, which glibc keeps;
        // hand what is free back to the system so a host that served many guests shrinks to its idle size.
        if (OperatingSystem.IsLinux())
            try { Libc.malloc_trim(0); }
        catch (EntryPointNotFoundException) { }
    }
}
