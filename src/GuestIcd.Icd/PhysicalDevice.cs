using System.Runtime.InteropServices;
using GuestIcd.Protocol;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkResult;

namespace GuestIcd.Icd;

/// <summary>What the guest remembers about one physical device of one connection, attached to its
/// dispatchable object when first needed.</summary>
internal sealed class GuestPhysicalDevice
{
    /// <summary>The host's device extensions that this ICD carries, filtered once.</summary>
    public VkExtensionProperties[]? Extensions;

    public static GuestPhysicalDevice Of(VkPhysicalDevice physicalDevice)
    {
        var s = GuestHandleMap.StateOf<GuestPhysicalDevice>(physicalDevice.Handle);
        if (s is not null) return s;
        GuestHandleMap.Attach(physicalDevice.Handle, new GuestPhysicalDevice());
        return GuestHandleMap.StateOf<GuestPhysicalDevice>(physicalDevice.Handle)!;
    }
}

internal static unsafe partial class Entry
{
    /// <summary>A property of this ICD build (which extensions it can carry), not of any object.</summary>
    static readonly HashSet<string> s_carriedDeviceExtensions = Tables.Extensions.Where(e => e.Device && e.Carried).Select(e => e.Name).ToHashSet();

    /// <summary>The host device as a virtual GPU named after it, at most at the API version this ICD carries.</summary>
    static void Present(VkPhysicalDeviceProperties* p)
    {
        var name = MemoryMarshal.CreateSpan(ref p->deviceName[0], (int)VkConstants.VK_MAX_PHYSICAL_DEVICE_NAME_SIZE);
        int len = name.IndexOf((byte)0);
        if (len < 0) len = name.Length - 1;
        ReadOnlySpan<byte> prefix = "GuestIcd: "u8;
        int keep = Math.Min(len, name.Length - 1 - prefix.Length);
        name[..keep].CopyTo(name[prefix.Length..]);
        prefix.CopyTo(name);
        name[prefix.Length + keep] = 0;
        p->deviceType = VkPhysicalDeviceType.VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU;
        p->apiVersion = Math.Min(p->apiVersion, OurApiVersion);
    }

    public static void vkGetPhysicalDeviceProperties(VkPhysicalDevice physicalDevice, VkPhysicalDeviceProperties* pProperties)
    {
        ulong* a = stackalloc ulong[2];
        a[0] = (ulong)physicalDevice.Handle;
        a[1] = (ulong)pProperties;
        Generic.Call(Tables.vkGetPhysicalDeviceProperties, a);
        Present(pProperties);
    }

    public static void vkGetPhysicalDeviceProperties2(VkPhysicalDevice physicalDevice, VkPhysicalDeviceProperties2* pProperties)
    {
        ulong* a = stackalloc ulong[2];
        a[0] = (ulong)physicalDevice.Handle;
        a[1] = (ulong)pProperties;
        Generic.Call(Tables.vkGetPhysicalDeviceProperties2, a);
        Present(&pProperties->properties);
    }

    /// <summary>The host's device extensions that this ICD carries end to end; the rest stay hidden.</summary>
    public static VkResult vkEnumerateDeviceExtensionProperties(VkPhysicalDevice physicalDevice, byte* pLayerName, uint* pPropertyCount, VkExtensionProperties* pProperties)
    {
        if (pLayerName != null) return VK_ERROR_LAYER_NOT_PRESENT;
        var state = GuestPhysicalDevice.Of(physicalDevice);
        var list = Volatile.Read(ref state.Extensions);
        if (list is null)
        {
            ulong* a = stackalloc ulong[4];
            uint count = 0;
            a[0] = (ulong)physicalDevice.Handle; a[1] = 0; a[2] = (ulong)&count; a[3] = 0;
            var r = (VkResult)(int)Generic.Call(Tables.vkEnumerateDeviceExtensionProperties, a);
            if (r < 0) return r;
            var all = new VkExtensionProperties[count];
            fixed (VkExtensionProperties* p = all)
            {
                a[2] = (ulong)&count; a[3] = (ulong)p;
                r = (VkResult)(int)Generic.Call(Tables.vkEnumerateDeviceExtensionProperties, a);
                if (r < 0) return r;
            }
            // The swapchain extensions are the guest's own (Swapchain.cs), whatever the host offers.
            list = all.Take((int)count).Where(e => s_carriedDeviceExtensions.Contains(NameOf(e)))
                .Concat(GuestDeviceExtensions.Select(e => Extension(e.Name, e.Spec))).ToArray();
            Volatile.Write(ref state.Extensions, list);
        }
        return FillArray<VkExtensionProperties>(list, pPropertyCount, pProperties);
    }

    public static VkResult vkEnumerateDeviceLayerProperties(VkPhysicalDevice physicalDevice, uint* pPropertyCount, VkLayerProperties* pProperties)
        => FillArray<VkLayerProperties>([], pPropertyCount, pProperties);
}
