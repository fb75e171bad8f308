using System.Runtime.InteropServices;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Wire;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkStructureType;

namespace GuestIcd.HostSim.Gate;

/// <summary>What the gate knows of one device: its physical device's limits and memory types, what the
/// guest enabled, and which commands the driver serves on it.</summary>
internal sealed unsafe partial class DeviceState(ulong handle, VkPhysicalDevice physical)
{
    public readonly ulong Handle = handle;
    public readonly VkPhysicalDevice Physical = physical;
    public VkPhysicalDeviceLimits Limits;
    public VkPhysicalDeviceMemoryProperties Memory;
    public VkPhysicalDeviceFeatures Features;
    public bool NullDescriptor;
    /// <summary>The Vulkan version the device serves the guest: the lower of the instance's and the driver's
    /// (shader modules are validated for it).</summary>
    public uint ApiVersion = 1u << 22;
    /// <summary>What widens the SPIR-V the device accepts: VK_KHR_spirv_1_4, block layouts enabled.</summary>
    public bool Spirv14, RelaxedBlockLayout, UniformBufferStandardLayout, ScalarBlockLayout, WorkgroupScalarBlockLayout;
    public int Allocations;
    /// <summary>Work was submitted since the host last waited for the device: destroying what it may use
    /// waits first, so that no queue thread reads freed memory.</summary>
    public bool Busy;
    /// <summary>(family, count) of the queues created with the device.</summary>
    public (uint Family, uint Count)[] Queues = [];

    readonly sbyte[] _enabled = new sbyte[Tables.Commands.Length];
    delegate* unmanaged<nint, byte*, nint> _gdpa;

    /// <summary>The driver's own answer: vkGetDeviceProcAddr is NULL for commands of extensions the device
    /// did not enable and core commands above the instance's API version; the loader's trampoline would
    /// jump through that NULL.</summary>
    public bool Enabled(int cmd, Func<string, nint> instanceProc)
    {
        var e = _enabled[cmd];
        if (e != 0) return e > 0;
        if (_gdpa == null) _gdpa = (delegate* unmanaged<nint, byte*, nint>)instanceProc("vkGetDeviceProcAddr");
        var name = Tables.Commands[cmd].Name;
        byte* buf = stackalloc byte[name.Length + 1];
        for (int i = 0; i < name.Length; i++) buf[i] = (byte)name[i];
        buf[name.Length] = 0;
        bool ok = _gdpa((nint)Handle, buf) != 0;
        _enabled[cmd] = ok ? (sbyte)1 : (sbyte)-1;
        return ok;
    }

    public delegate* unmanaged<nint, byte*, nint> Gdpa => _gdpa;

    public T Fn<T>(string name, Func<string, nint> instanceProc) where T : unmanaged
    {
        if (_gdpa == null) _gdpa = (delegate* unmanaged<nint, byte*, nint>)instanceProc("vkGetDeviceProcAddr");
        var bytes = System.Text.Encoding.ASCII.GetBytes(name + "\0");
        nint p;
        fixed (byte* b = bytes) p = _gdpa((nint)Handle, b);
        return *(T*)&p;
    }
}

internal sealed unsafe partial class ValidUsageGate
{
    readonly Dictionary<ulong, DeviceState> _devices = new();
    uint _apiVersion = (1u << 22);

    bool CheckInstanceCommand(int cmd, ulong* a, ref ulong result)
    {
        switch (cmd)
        {
            case Tables.vkCreateInstance: return CheckCreateInstance(a, ref result);
            case Tables.vkCreateDevice: return CheckCreateDevice(a, ref result);
        }
        return true;
    }

    void RecordInstanceCommand(int cmd, ulong* a)
    {
        switch (cmd)
        {
            case Tables.vkCreateInstance:
            {
                var ci = (VkInstanceCreateInfo*)a[0];
                _apiVersion = ci->pApplicationInfo != null && ci->pApplicationInfo->apiVersion != 0 ? ci->pApplicationInfo->apiVersion : (1u << 22);
                RecordInstanceExtensions(ci);
                break;
            }
            case Tables.vkCreateDevice: RecordCreateDevice(a); break;
            // An application bug, not an attack (VUID-vkDestroyInstance-instance-00629): the session's cascade
            // (Teardown.cs) destroyed the devices still alive, so their state goes too.
            case Tables.vkDestroyInstance:
                foreach (var dev in _devices.Values.ToList()) if (!DeviceAlive(dev.Handle)) ForgetDevice(dev);
                break;
        }
    }

    T InstanceFn<T>(string name) where T : unmanaged
    {
        var p = _instanceProc(name);
        if (p == 0) throw new ProtocolException($"{name} is not available on this host");
        return *(T*)&p;
    }

    bool CheckCreateDevice(ulong* a, ref ulong result)
    {
        var pd = new VkPhysicalDevice((nint)a[0]);
        var ci = (VkDeviceCreateInfo*)a[1];
        // Extensions: the precise result where the device lacks one (the driver may not check every name).
        var enumerate = InstanceFn<nint>("vkEnumerateDeviceExtensionProperties");
        var fnExt = (delegate* unmanaged<VkPhysicalDevice, byte*, uint*, VkExtensionProperties*, VkResult>)enumerate;
        uint n = 0;
        fnExt(pd, null, &n, null);
        var props = new VkExtensionProperties[n];
        fixed (VkExtensionProperties* pp = props) fnExt(pd, null, &n, pp);
        var have = props.Take((int)n).Select(e => HostVulkan.Str(MemoryMarshal.CreateReadOnlySpan(in e.extensionName[0], 256))).ToHashSet();
        for (uint i = 0; i < ci->enabledExtensionCount; i++)
        {
            var name = Marshal.PtrToStringUTF8((nint)ci->ppEnabledExtensionNames[i]) ?? "";
            if (!have.Contains(name))
            {
                Log($"vkCreateDevice: extension {name} is not supported by the device (VUID-vkCreateDevice-ppEnabledExtensionNames-01387)");
                result = Result(VkResult.VK_ERROR_EXTENSION_NOT_PRESENT);
                return false;
            }
        }
        // Queues: lavapipe has one queue per family; more would index past its queue array.
        uint qfCount = 0;
        var qf = InstanceFn<nint>("vkGetPhysicalDeviceQueueFamilyProperties");
        var fnQf = (delegate* unmanaged<VkPhysicalDevice, uint*, VkQueueFamilyProperties*, void>)qf;
        fnQf(pd, &qfCount, null);
        var families = new VkQueueFamilyProperties[qfCount];
        fixed (VkQueueFamilyProperties* fp = families) fnQf(pd, &qfCount, fp);
        ulong seen = 0;
        for (uint i = 0; i < ci->queueCreateInfoCount; i++)
        {
            var q = ci->pQueueCreateInfos[i];
            if (q.queueFamilyIndex >= qfCount)
                Fail(Tables.vkCreateDevice, "VUID-VkDeviceQueueCreateInfo-queueFamilyIndex-00381", $"queue family {q.queueFamilyIndex} of {qfCount}");
            if (q.queueCount == 0 || q.queueCount > families[q.queueFamilyIndex].queueCount)
                Fail(Tables.vkCreateDevice, "VUID-VkDeviceQueueCreateInfo-queueCount-00382", $"{q.queueCount} queues of family {q.queueFamilyIndex}, which has {families[q.queueFamilyIndex].queueCount}");
            if (q.queueFamilyIndex < 64 && (seen & (1UL << (int)q.queueFamilyIndex)) != 0)
                Fail(Tables.vkCreateDevice, "VUID-VkDeviceCreateInfo-queueFamilyIndex-02802", $"queue family {q.queueFamilyIndex} named twice");
            if (q.queueFamilyIndex < 64) seen |= 1UL << (int)q.queueFamilyIndex;
        }
        // Features: the precise result for core features the device lacks; buffer device addresses never.
        VkPhysicalDeviceFeatures supported;
        ((delegate* unmanaged<VkPhysicalDevice, VkPhysicalDeviceFeatures*, void>)InstanceFn<nint>("vkGetPhysicalDeviceFeatures"))(pd, &supported);
        VkPhysicalDeviceFeatures* wanted = ci->pEnabledFeatures;
        for (var node = (VkBaseOutStructure*)ci->pNext; node != null; node = node->pNext)
        {
            switch (node->sType)
            {
                case VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2: wanted = &((VkPhysicalDeviceFeatures2*)node)->features; break;
                case VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES when ((VkPhysicalDeviceVulkan12Features*)node)->bufferDeviceAddress != 0:
                case VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_BUFFER_DEVICE_ADDRESS_FEATURES when ((VkPhysicalDeviceBufferDeviceAddressFeatures*)node)->bufferDeviceAddress != 0:
                case VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_BUFFER_DEVICE_ADDRESS_FEATURES_EXT when ((VkPhysicalDeviceBufferDeviceAddressFeaturesEXT*)node)->bufferDeviceAddress != 0:
                    // Still reported by the queries (guests see the host's features as they are), refused here.
                    Log("vkCreateDevice: bufferDeviceAddress is not served to guests: on a CPU driver a device address is a host pointer");
                    result = Result(VkResult.VK_ERROR_FEATURE_NOT_PRESENT);
                    return false;
            }
        }
        if (wanted != null)
        {
            var w = (uint*)wanted;
            var s = (uint*)&supported;
            for (int i = 0; i < sizeof(VkPhysicalDeviceFeatures) / 4; i++)
                if (w[i] != 0 && s[i] == 0)
                {
                    Log($"vkCreateDevice: core feature #{i} is not supported by the device (VUID-vkCreateDevice-ppEnabledExtensionNames-01387 family; VK_ERROR_FEATURE_NOT_PRESENT)");
                    result = Result(VkResult.VK_ERROR_FEATURE_NOT_PRESENT);
                    return false;
                }
        }
        // robustBufferAccess bounds every shader buffer access and vertex fetch by its descriptor's range:
        // without it an index past a storage buffer reads and writes host memory.
        if (supported.robustBufferAccess != 0 && (wanted == null || wanted->robustBufferAccess == 0))
        {
            if (wanted != null) wanted->robustBufferAccess = 1; // decoded into the session's arena: ours to change
            else
            {
                var f = (VkPhysicalDeviceFeatures*)_arena.Alloc((nuint)sizeof(VkPhysicalDeviceFeatures));
                *f = default;
                f->robustBufferAccess = 1;
                ci->pEnabledFeatures = f;
            }
        }
        return true;
    }

    void RecordCreateDevice(ulong* a)
    {
        var pd = new VkPhysicalDevice((nint)a[0]);
        var ci = (VkDeviceCreateInfo*)a[1];
        ulong handle = *(ulong*)a[3];
        if (handle == 0) return;
        var dev = new DeviceState(handle, pd);
        VkPhysicalDeviceProperties props;
        ((delegate* unmanaged<VkPhysicalDevice, VkPhysicalDeviceProperties*, void>)InstanceFn<nint>("vkGetPhysicalDeviceProperties"))(pd, &props);
        dev.Limits = props.limits;
        dev.ApiVersion = Math.Min(VersionNoPatch(_apiVersion), VersionNoPatch(props.apiVersion));
        for (uint i = 0; i < ci->enabledExtensionCount; i++)
        {
            var ext = Marshal.PtrToStringUTF8((nint)ci->ppEnabledExtensionNames[i]);
            if (ext is not null) dev.Extensions.Add(ext);
            dev.Spirv14 |= ext == "VK_KHR_spirv_1_4";
            dev.RelaxedBlockLayout |= ext == "VK_KHR_relaxed_block_layout";
        }
        VkPhysicalDeviceMemoryProperties mem;
        ((delegate* unmanaged<VkPhysicalDevice, VkPhysicalDeviceMemoryProperties*, void>)InstanceFn<nint>("vkGetPhysicalDeviceMemoryProperties"))(pd, &mem);
        dev.Memory = mem;
        if (ci->pEnabledFeatures != null) dev.Features = *ci->pEnabledFeatures;
        for (var node = (VkBaseOutStructure*)ci->pNext; node != null; node = node->pNext)
        {
            if (node->sType == VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2) dev.Features = ((VkPhysicalDeviceFeatures2*)node)->features;
            if (node->sType == VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ROBUSTNESS_2_FEATURES_EXT)
                dev.NullDescriptor = ((VkPhysicalDeviceRobustness2FeaturesEXT*)node)->nullDescriptor != 0;
            switch (node->sType)
            {
                case VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES:
                    dev.ScalarBlockLayout |= ((VkPhysicalDeviceVulkan12Features*)node)->scalarBlockLayout != 0;
                    dev.UniformBufferStandardLayout |= ((VkPhysicalDeviceVulkan12Features*)node)->uniformBufferStandardLayout != 0;
                    break;
                case VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SCALAR_BLOCK_LAYOUT_FEATURES:
                    dev.ScalarBlockLayout |= ((VkPhysicalDeviceScalarBlockLayoutFeatures*)node)->scalarBlockLayout != 0;
                    break;
                case VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_UNIFORM_BUFFER_STANDARD_LAYOUT_FEATURES:
                    dev.UniformBufferStandardLayout |= ((VkPhysicalDeviceUniformBufferStandardLayoutFeatures*)node)->uniformBufferStandardLayout != 0;
                    break;
                case VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_WORKGROUP_MEMORY_EXPLICIT_LAYOUT_FEATURES_KHR:
                    dev.WorkgroupScalarBlockLayout |= ((VkPhysicalDeviceWorkgroupMemoryExplicitLayoutFeaturesKHR*)node)->workgroupMemoryExplicitLayoutScalarBlockLayout != 0;
                    break;
            }
        }
        RecordExtensionFeatures(dev, ci);
        dev.Queues = new (uint, uint)[ci->queueCreateInfoCount];
        for (uint i = 0; i < ci->queueCreateInfoCount; i++) dev.Queues[i] = (ci->pQueueCreateInfos[i].queueFamilyIndex, ci->pQueueCreateInfos[i].queueCount);
        _devices[handle] = dev;
    }

    /// <summary>vkDestroyDevice: every object of the device goes with it (the session's cascade destroys them
    /// on the host); a later use of any of them is refused as a dead object.</summary>
    void ForgetDevice(DeviceState dev)
    {
        _devices.Remove(dev.Handle);
        var keys = _owner.Where(kv => kv.Value == dev.Handle).Select(kv => kv.Key).ToList();
        foreach (var k in keys) _owner.Remove(k);
        RemoveWhere(_memory, s => s.Device == dev.Handle);
        RemoveWhere(_buffers, s => s.Device == dev.Handle);
        RemoveWhere(_images, s => s.Device == dev.Handle);
        RemoveWhere(_imageViews, s => s.Device == dev.Handle);
        RemoveWhere(_bufferViews, s => s.Device == dev.Handle);
        RemoveWhere(_modules, s => s.Device == dev.Handle);
        RemoveWhere(_setLayouts, s => s.Device == dev.Handle);
        RemoveWhere(_pipelineLayouts, s => s.Device == dev.Handle);
        RemoveWhere(_pipelines, s => s.Device == dev.Handle);
        RemoveWhere(_renderPasses, s => s.Device == dev.Handle);
        RemoveWhere(_framebuffers, s => s.Device == dev.Handle);
        RemoveWhere(_queryPools, s => s.Device == dev.Handle);
        RemoveWhere(_sets, s => s.Device == dev.Handle);
        RemoveWhere(_commandBuffers, s => s.Device == dev.Handle);
    }

    static uint VersionNoPatch(uint v) => v & ~0xFFFu;

    static void RemoveWhere<T>(Dictionary<ulong, T> d, Func<T, bool> pred)
    {
        foreach (var k in d.Where(kv => pred(kv.Value)).Select(kv => kv.Key).ToList()) d.Remove(k);
    }

    /// <summary>Waits for the device before something its queue may still read is destroyed or reset.</summary>
    void Drain(DeviceState dev)
    {
        if (!dev.Busy) return;
        if (WaitIdle is { } bounded) bounded(dev.Handle);
        else
        {
            var wait = dev.Fn<nint>("vkDeviceWaitIdle", _instanceProc);
            if (wait != 0) ((delegate* unmanaged<nint, VkResult>)wait)((nint)dev.Handle);
        }
        dev.Busy = false;
    }

    /// <summary>The session's idle wait in bounded slices (Waits.cs): the driver's own vkDeviceWaitIdle would
    /// never return on work the guest left blocked, and would hide the guest leaving.</summary>
    public Action<ulong>? WaitIdle;

    public Action<string>? Logger;
    void Log(string message) => Logger?.Invoke(message);
}
