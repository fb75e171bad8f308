using System.Runtime.InteropServices;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkResult;

namespace GuestIcd.Icd;

/// <summary>Guest-side semantics of the commands the generator marks hand-written, one family per file
/// (Instance.cs, PhysicalDevice.cs, Device.cs, Memory.cs, DescriptorUpdateTemplate.cs, Fence.cs); each family
/// keeps its objects' state on the object it belongs to (GuestDevice, GuestPhysicalDevice), never in a
/// process-wide table. This file holds what the entry points share.</summary>
internal static unsafe partial class Entry
{
    /// <summary>An exception reached an entry point: log it, and answer as a lost device rather than abort the application.</summary>
    public static VkResult Fail(int command, Exception e)
    {
        if (e is not DeviceLostException) Log.Error($"{Tables.Commands[command].Name} failed: {e.GetType().Name}: {e.Message}");
        return VK_ERROR_DEVICE_LOST;
    }

    /// <summary>The two-call idiom over a local array: count query, VK_INCOMPLETE when the caller's room is short.</summary>
    public static VkResult FillArray<T>(ReadOnlySpan<T> items, uint* pCount, T* pItems) where T : unmanaged
    {
        if (pItems == null) { *pCount = (uint)items.Length; return VK_SUCCESS; }
        uint n = Math.Min(*pCount, (uint)items.Length);
        items[..(int)n].CopyTo(new Span<T>(pItems, (int)n));
        *pCount = n;
        return n < items.Length ? VK_INCOMPLETE : VK_SUCCESS;
    }

    public static VkExtensionProperties Extension(string name, uint specVersion)
    {
        var p = new VkExtensionProperties { specVersion = specVersion };
        var dst = MemoryMarshal.CreateSpan(ref p.extensionName[0], (int)VkConstants.VK_MAX_EXTENSION_NAME_SIZE);
        System.Text.Encoding.ASCII.GetBytes(name.AsSpan(0, Math.Min(name.Length, dst.Length - 1)), dst);
        return p;
    }

    public static string NameOf(in VkExtensionProperties p)
    {
        var s = MemoryMarshal.CreateReadOnlySpan(in p.extensionName[0], (int)VkConstants.VK_MAX_EXTENSION_NAME_SIZE);
        int n = s.IndexOf((byte)0);
        return System.Text.Encoding.ASCII.GetString(n < 0 ? s : s[..n]);
    }

    public static nint vkGetInstanceProcAddr(VkInstance instance, byte* pName)
    {
        if (pName == null) return 0;
        var name = MemoryMarshal.CreateReadOnlySpanFromNullTerminated(pName);
        var fn = Entrypoints.Lookup(name, out _);
        // Platform surfaces are outside vulkan_core.h, so outside the generated table.
        return fn != 0 ? fn : PlatformSurfaces.Lookup(name, physicalDeviceOnly: false);
    }

    public static nint vkGetDeviceProcAddr(VkDevice device, byte* pName)
    {
        if (pName == null) return 0;
        var fn = Entrypoints.Lookup(MemoryMarshal.CreateReadOnlySpanFromNullTerminated(pName), out var index);
        // Only device-level commands come from vkGetDeviceProcAddr (Vulkan spec, vkGetDeviceProcAddr).
        return fn != 0 && (Tables.Commands[index].Level == CommandLevel.Device || index == Tables.vkGetDeviceProcAddr) ? fn : 0;
    }

    /// <summary>vk_icdGetPhysicalDeviceProcAddr answers physical-device commands only, NULL for the rest.</summary>
    public static nint GetPhysicalDeviceProcAddr(byte* pName)
    {
        if (pName == null) return 0;
        var name = MemoryMarshal.CreateReadOnlySpanFromNullTerminated(pName);
        var fn = Entrypoints.Lookup(name, out var index);
        if (fn == 0) return PlatformSurfaces.Lookup(name, physicalDeviceOnly: true);
        return Tables.Commands[index].Level == CommandLevel.PhysicalDevice ? fn : 0;
    }
}
