using System.Runtime.InteropServices;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkResult;

namespace GuestIcd.Icd;

/// <summary>VK_KHR_xcb_surface and VK_KHR_xlib_surface. Their commands and structs live in vulkan_xcb.h and
/// vulkan_xlib.h, outside the registry subset the generator emits, so they are declared and looked up here.
/// An xlib surface is presented through the Display's xcb connection (libX11-xcb's XGetXCBConnection), loaded
/// only when such a surface is created.</summary>
internal static unsafe class PlatformSurfaces
{
    const int VK_STRUCTURE_TYPE_XLIB_SURFACE_CREATE_INFO_KHR = 1000004000;
    const int VK_STRUCTURE_TYPE_XCB_SURFACE_CREATE_INFO_KHR = 1000005000;

    [StructLayout(LayoutKind.Sequential)]
    struct VkXcbSurfaceCreateInfoKHR
    {
        public int sType;
        public void* pNext;
        public uint flags;
        public nint connection;
        public uint window;
    }

    [StructLayout(LayoutKind.Sequential)]
    struct VkXlibSurfaceCreateInfoKHR
    {
        public int sType;
        public void* pNext;
        public uint flags;
        public nint dpy;
        public nuint window;
    }

    public static nint Lookup(ReadOnlySpan<byte> name, bool physicalDeviceOnly)
    {
        if (WaylandSurfaces.Lookup(name, physicalDeviceOnly) is var wl and not 0) return wl;
        if (name.SequenceEqual("vkGetPhysicalDeviceXcbPresentationSupportKHR"u8))
            return (nint)(delegate* unmanaged<VkPhysicalDevice, uint, nint, uint, uint>)&vkGetPhysicalDeviceXcbPresentationSupportKHR;
        if (name.SequenceEqual("vkGetPhysicalDeviceXlibPresentationSupportKHR"u8))
            return (nint)(delegate* unmanaged<VkPhysicalDevice, uint, nint, nuint, uint>)&vkGetPhysicalDeviceXlibPresentationSupportKHR;
        if (physicalDeviceOnly) return 0;
        if (name.SequenceEqual("vkCreateXcbSurfaceKHR"u8))
            return (nint)(delegate* unmanaged<VkInstance, VkXcbSurfaceCreateInfoKHR*, VkAllocationCallbacks*, VkSurfaceKHR*, VkResult>)&vkCreateXcbSurfaceKHR;
        if (name.SequenceEqual("vkCreateXlibSurfaceKHR"u8))
            return (nint)(delegate* unmanaged<VkInstance, VkXlibSurfaceCreateInfoKHR*, VkAllocationCallbacks*, VkSurfaceKHR*, VkResult>)&vkCreateXlibSurfaceKHR;
        return 0;
    }

    [UnmanagedCallersOnly]
    static VkResult vkCreateXcbSurfaceKHR(VkInstance instance, VkXcbSurfaceCreateInfoKHR* pCreateInfo, VkAllocationCallbacks* pAllocator, VkSurfaceKHR* pSurface)
    {
        try
        {
            if (pCreateInfo == null || pSurface == null || pCreateInfo->sType != VK_STRUCTURE_TYPE_XCB_SURFACE_CREATE_INFO_KHR || pCreateInfo->connection == 0)
            {
                Log.Warn("vkCreateXcbSurfaceKHR: no VkXcbSurfaceCreateInfoKHR with a connection");
                return VK_ERROR_INITIALIZATION_FAILED;
            }
            return Entry.AddSurface(instance, new XcbSurface(pCreateInfo->connection, pCreateInfo->window, "xcb"), pSurface);
        }
        catch (WindowSystemException e) { Log.Warn($"vkCreateXcbSurfaceKHR: {e.Message}"); return VK_ERROR_INITIALIZATION_FAILED; }
        catch (Exception e) { Log.Error($"vkCreateXcbSurfaceKHR failed: {e.GetType().Name}: {e.Message}"); return VK_ERROR_INITIALIZATION_FAILED; }
    }

    static delegate* unmanaged<nint, nint> s_getXcbConnection;

    [UnmanagedCallersOnly]
    static VkResult vkCreateXlibSurfaceKHR(VkInstance instance, VkXlibSurfaceCreateInfoKHR* pCreateInfo, VkAllocationCallbacks* pAllocator, VkSurfaceKHR* pSurface)
    {
        try
        {
            if (pCreateInfo == null || pSurface == null || pCreateInfo->sType != VK_STRUCTURE_TYPE_XLIB_SURFACE_CREATE_INFO_KHR || pCreateInfo->dpy == 0)
            {
                Log.Warn("vkCreateXlibSurfaceKHR: no VkXlibSurfaceCreateInfoKHR with a Display");
                return VK_ERROR_INITIALIZATION_FAILED;
            }
            if (s_getXcbConnection == null)
            {
                if (!NativeLibrary.TryLoad("libX11-xcb.so.1", out var lib) || !NativeLibrary.TryGetExport(lib, "XGetXCBConnection", out var fn))
                {
                    Log.Warn("vkCreateXlibSurfaceKHR: libX11-xcb.so.1 is not installed (apt-get install libx11-xcb1)");
                    return VK_ERROR_INITIALIZATION_FAILED;
                }
                s_getXcbConnection = (delegate* unmanaged<nint, nint>)fn;
            }
            var c = s_getXcbConnection(pCreateInfo->dpy);
            if (c == 0) { Log.Warn("vkCreateXlibSurfaceKHR: the Display has no xcb connection"); return VK_ERROR_INITIALIZATION_FAILED; }
            return Entry.AddSurface(instance, new XcbSurface(c, (uint)pCreateInfo->window, "xlib"), pSurface);
        }
        catch (WindowSystemException e) { Log.Warn($"vkCreateXlibSurfaceKHR: {e.Message}"); return VK_ERROR_INITIALIZATION_FAILED; }
        catch (Exception e) { Log.Error($"vkCreateXlibSurfaceKHR failed: {e.GetType().Name}: {e.Message}"); return VK_ERROR_INITIALIZATION_FAILED; }
    }

    // Presentation reads guest memory and draws with the window's own connection: any family, any visual the
    // window can have (the swapchain refuses depths it cannot draw).
    [UnmanagedCallersOnly]
    static uint vkGetPhysicalDeviceXcbPresentationSupportKHR(VkPhysicalDevice physicalDevice, uint queueFamilyIndex, nint connection, uint visual_id) => 1;

    [UnmanagedCallersOnly]
    static uint vkGetPhysicalDeviceXlibPresentationSupportKHR(VkPhysicalDevice physicalDevice, uint queueFamilyIndex, nint dpy, nuint visualID) => 1;
}
