using System.Runtime.InteropServices;
using GuestIcd.Protocol;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkStructureType;

namespace GuestIcd.HostSim.Gate;

/// <summary>vkCreateInstance runs the host's loader on the guest's create info before any driver is
/// involved, and the loader trusts it: a fuzzed VkApplicationInfo with apiVersion 0.979.0 crashed the
/// Khronos loader 1.3.239 (every apiVersion of major 0 but 0 itself does, SIGSEGV in its version
/// handling under vkCreateInstance). So the create info is checked against the spec's rules and the
/// host's own offer first: the application info, the pNext chain (only structures that extend
/// VkInstanceCreateInfo), layers and extensions the host has.</summary>
internal sealed unsafe partial class ValidUsageGate
{
    const int CmdCreateInstance = Tables.vkCreateInstance;

    bool CheckCreateInstance(ulong* a, ref ulong result)
    {
        var ci = (VkInstanceCreateInfo*)a[0];
        if (((uint)ci->flags & ~1u) != 0) // VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR is the only one
            Fail(CmdCreateInstance, "VUID-VkInstanceCreateInfo-flags-parameter", $"flags 0x{(uint)ci->flags:X} has unknown bits");
        var app = ci->pApplicationInfo;
        if (app != null)
        {
            if (app->sType != VK_STRUCTURE_TYPE_APPLICATION_INFO)
                Fail(CmdCreateInstance, "VUID-VkApplicationInfo-sType-sType", $"pApplicationInfo has sType {(int)app->sType}");
            if (app->pNext != null)
                Fail(CmdCreateInstance, "VUID-VkApplicationInfo-pNext-pNext", "pApplicationInfo has a pNext chain");
            if (app->apiVersion != 0 && (app->apiVersion >> 22) == 0)
                Fail(CmdCreateInstance, "VUID-VkApplicationInfo-apiVersion-04010",
                    $"apiVersion {app->apiVersion >> 29}.{app->apiVersion >> 22 & 0x7F}.{app->apiVersion >> 12 & 0x3FF}.{app->apiVersion & 0xFFF} is neither 0 nor at least 1.0");
        }
        for (var n = (VkBaseInStructure*)ci->pNext; n != null; n = n->pNext)
            if (n->sType is not (VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT or VK_STRUCTURE_TYPE_VALIDATION_FLAGS_EXT))
                Fail(CmdCreateInstance, "VUID-VkInstanceCreateInfo-pNext-pNext", $"sType {(int)n->sType} does not extend VkInstanceCreateInfo (or is not served)");
        var layers = Names(ci->ppEnabledLayerNames, ci->enabledLayerCount);
        var hostLayers = InstanceLayers();
        foreach (var layer in layers)
            if (!hostLayers.Contains(layer))
            {
                Log($"vkCreateInstance: layer {layer} is not on this host (VK_ERROR_LAYER_NOT_PRESENT)");
                result = Result(VkResult.VK_ERROR_LAYER_NOT_PRESENT);
                return false;
            }
        var extensions = InstanceExtensions(null);
        foreach (var layer in layers) extensions.UnionWith(InstanceExtensions(layer));
        foreach (var ext in Names(ci->ppEnabledExtensionNames, ci->enabledExtensionCount))
            if (!extensions.Contains(ext))
            {
                Log($"vkCreateInstance: extension {ext} is not offered by this host (VUID-vkCreateInstance-ppEnabledExtensionNames-01388; VK_ERROR_EXTENSION_NOT_PRESENT)");
                result = Result(VkResult.VK_ERROR_EXTENSION_NOT_PRESENT);
                return false;
            }
        return true;
    }

    static List<string> Names(byte** names, uint count)
    {
        var list = new List<string>((int)Math.Min(count, 64));
        for (uint i = 0; i < count; i++) list.Add(Marshal.PtrToStringUTF8((nint)names[i]) ?? "");
        return list;
    }

    static HashSet<string> InstanceLayers()
    {
        var fn = (delegate* unmanaged<uint*, VkLayerProperties*, VkResult>)HostVulkan.GetInstanceProcAddr(default, "vkEnumerateInstanceLayerProperties");
        uint n = 0;
        if (fn == null || fn(&n, null) < 0) return [];
        var props = new VkLayerProperties[n];
        fixed (VkLayerProperties* p = props) fn(&n, p);
        return props.Take((int)n).Select(l => HostVulkan.Str(MemoryMarshal.CreateReadOnlySpan(in l.layerName[0], 256))).ToHashSet();
    }

    static HashSet<string> InstanceExtensions(string? layer)
    {
        var fn = (delegate* unmanaged<byte*, uint*, VkExtensionProperties*, VkResult>)HostVulkan.GetInstanceProcAddr(default, "vkEnumerateInstanceExtensionProperties");
        if (fn == null) return [];
        var name = layer == null ? null : System.Text.Encoding.UTF8.GetBytes(layer + "\0");
        fixed (byte* pName = name)
        {
            uint n = 0;
            if (fn(pName, &n, null) < 0) return [];
            var props = new VkExtensionProperties[n];
            fixed (VkExtensionProperties* p = props) fn(pName, &n, p);
            return props.Take((int)n).Select(e => HostVulkan.Str(MemoryMarshal.CreateReadOnlySpan(in e.extensionName[0], 256))).ToHashSet();
        }
    }
}
