using System.Runtime.InteropServices;
using GuestIcd.Vulkan;

namespace GuestIcd.Icd;

/// <summary>The three symbols the Khronos loader looks up with dlsym (loader-ICD interface, LoaderDriverInterface.md).</summary>
internal static unsafe class Loader
{
    /// <summary>Interface 7: the loader may also ask for these through vkGetInstanceProcAddr; we answer both ways.</summary>
    const uint MaxInterfaceVersion = 7;

    [UnmanagedCallersOnly(EntryPoint = "vk_icdNegotiateLoaderICDInterfaceVersion")]
    static VkResult Negotiate(uint* pSupportedVersion)
    {
        try
        {
            // Below 5 the loader would not hand us the application's apiVersion rules we rely on.
            if (*pSupportedVersion < 5) return VkResult.VK_ERROR_INCOMPATIBLE_DRIVER;
            *pSupportedVersion = Math.Min(*pSupportedVersion, MaxInterfaceVersion);
            return VkResult.VK_SUCCESS;
        }
        catch { return VkResult.VK_ERROR_INCOMPATIBLE_DRIVER; }
    }

    [UnmanagedCallersOnly(EntryPoint = "vk_icdGetInstanceProcAddr")]
    static nint GetInstanceProcAddr(VkInstance instance, byte* pName)
    {
        try { return Entry.vkGetInstanceProcAddr(instance, pName); }
        catch { return 0; }
    }

    [UnmanagedCallersOnly(EntryPoint = "vk_icdGetPhysicalDeviceProcAddr")]
    static nint GetPhysicalDeviceProcAddr(VkInstance instance, byte* pName)
    {
        try { return Entry.GetPhysicalDeviceProcAddr(pName); }
        catch { return 0; }
    }
}
