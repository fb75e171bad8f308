using System.Runtime.InteropServices;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkResult;

namespace GuestIcd.Icd;

/// <summary>A VkSurfaceKHR. Surfaces live in the guest: the host has no window system for the guest, so a
/// surface is the guest's window (or nothing, headless) and the host only ever sees the swapchain's images.</summary>
internal abstract unsafe class GuestSurface : IDisposable
{
    public const uint Undefined = 0xFFFFFFFF;

    /// <summary>The swapchain that presents to this surface now (VK_ERROR_NATIVE_WINDOW_IN_USE_KHR for a second one).</summary>
    public GuestSwapchain? Owner;

    /// <summary>The window's size now, <see cref="Undefined"/> where the swapchain decides (headless);
    /// VK_ERROR_SURFACE_LOST_KHR when the window is gone.</summary>
    public abstract VkResult CurrentExtent(out uint width, out uint height);

    /// <summary>Puts a swapchain's pixels on the window system: one per swapchain.</summary>
    public abstract Presenter CreatePresenter(VkFormat format, uint width, uint height, VkPresentModeKHR mode);

    /// <summary>The present modes this kind of surface honours.</summary>
    public virtual VkPresentModeKHR[] PresentModes => Entry.CopyPresentModes;

    public abstract string Kind { get; }

    public virtual void Dispose() { }
}

/// <summary>One swapchain's way of showing its images. Called with the image's pixels in guest memory
/// (B8G8R8A8, rows <paramref name="rowPitch"/> bytes apart), from vkQueuePresentKHR.</summary>
internal abstract unsafe class Presenter : IDisposable
{
    public abstract VkResult Present(byte* pixels, ulong rowPitch, uint width, uint height);
    public virtual void Dispose() { }
}

/// <summary>VK_EXT_headless_surface: nothing to show on. GUESTICD_PRESENT_DUMP=DIR writes every presented image
/// there as DIR/frame-N.ppm (a debugging aid and what the headless tests read back).</summary>
internal sealed unsafe class HeadlessSurface : GuestSurface
{
    public override string Kind => "headless";

    public override VkResult CurrentExtent(out uint width, out uint height)
    {
        width = height = Undefined;
        return VK_SUCCESS;
    }

    public override Presenter CreatePresenter(VkFormat format, uint width, uint height, VkPresentModeKHR mode) => new DumpPresenter(format);

    sealed class DumpPresenter(VkFormat format) : Presenter
    {
        static readonly string? s_dir = Environment.GetEnvironmentVariable("GUESTICD_PRESENT_DUMP") is { Length: > 0 } d ? d : null;
        static int s_frame;
        byte[]? _row;

        public override VkResult Present(byte* pixels, ulong rowPitch, uint width, uint height)
        {
            if (s_dir is null) return VK_SUCCESS;
            // Not the hot path of any real application: only when asked for, and one file per frame.
            int n = Interlocked.Increment(ref s_frame) - 1;
            bool bgra = format is VkFormat.VK_FORMAT_B8G8R8A8_UNORM or VkFormat.VK_FORMAT_B8G8R8A8_SRGB;
            try
            {
                using var f = File.Create(Path.Combine(s_dir, $"frame-{n}.ppm"));
                f.Write(System.Text.Encoding.ASCII.GetBytes($"P6\n{width} {height}\n255\n"));
                _row ??= new byte[width * 3];
                for (uint y = 0; y < height; y++)
                {
                    var src = pixels + y * rowPitch;
                    for (uint x = 0; x < width; x++)
                    {
                        _row[x * 3 + 0] = src[x * 4 + (bgra ? 2 : 0)];
                        _row[x * 3 + 1] = src[x * 4 + 1];
                        _row[x * 3 + 2] = src[x * 4 + (bgra ? 0 : 2)];
                    }
                    f.Write(_row, 0, (int)width * 3);
                }
            }
            catch (IOException e) { Log.Warn($"GUESTICD_PRESENT_DUMP: {e.Message}"); }
            return VK_SUCCESS;
        }
    }
}

/// <summary>The window-system objects of one connection (= one VkInstance): surfaces and swapchains, by the ids
/// the connection hands out. Ids, not pointers, so a bad handle from the application is an error, not a crash.</summary>
internal sealed class WsiObjects
{
    readonly Dictionary<ulong, object> _byId = new();

    public ulong Add(Connection c, object o)
    {
        ulong id = c.Handles.NewId();
        lock (_byId) _byId[id] = o;
        return id;
    }

    public T? Get<T>(ulong id) where T : class
    {
        lock (_byId) return _byId.TryGetValue(id, out var o) ? o as T : null;
    }

    public T? Remove<T>(ulong id) where T : class
    {
        lock (_byId)
        {
            if (!_byId.TryGetValue(id, out var o) || o is not T t) return null;
            _byId.Remove(id);
            return t;
        }
    }
}

internal sealed partial class Connection
{
    public readonly WsiObjects Wsi = new();
}

/// <summary>VK_KHR_surface and the surface queries. What a surface supports is the guest's business: formats the
/// guest's window system shows without conversion (B8G8R8A8, which X's 24- and 32-bit TrueColor visuals are on
/// little-endian machines), images the host can render into and the guest can read (linear tiling).</summary>
internal static unsafe partial class Entry
{
    /// <summary>Instance extensions implemented here, in the guest, whatever the host offers.</summary>
    public static readonly (string Name, uint Spec)[] GuestInstanceExtensions =
    [
        ("VK_KHR_surface", 25), ("VK_KHR_get_surface_capabilities2", 1), ("VK_KHR_surface_protected_capabilities", 1),
        ("VK_EXT_headless_surface", 1), ("VK_KHR_xcb_surface", 6), ("VK_KHR_xlib_surface", 6), ("VK_KHR_wayland_surface", 6),
    ];

    public const string SwapchainExtension = "VK_KHR_swapchain";
    public const uint SwapchainSpec = 70;

    /// <summary>Device extensions implemented here, in the guest: the swapchain, present regions (a hint the
    /// whole-image copy may ignore) and swapchains whose images views may reinterpret (UNORM and SRGB).</summary>
    public static readonly (string Name, uint Spec)[] GuestDeviceExtensions =
        [(SwapchainExtension, SwapchainSpec), ("VK_KHR_incremental_present", 2), ("VK_KHR_swapchain_mutable_format", 1)];

    static readonly VkSurfaceFormatKHR[] s_formats =
    [
        // Mesa's order (SRGB first): applications that take the first format see what they would see natively.
        new() { format = VkFormat.VK_FORMAT_B8G8R8A8_SRGB, colorSpace = VkColorSpaceKHR.VK_COLOR_SPACE_SRGB_NONLINEAR_KHR },
        new() { format = VkFormat.VK_FORMAT_B8G8R8A8_UNORM, colorSpace = VkColorSpaceKHR.VK_COLOR_SPACE_SRGB_NONLINEAR_KHR },
    ];

    /// <summary>Presentation is a copy onto the window at vkQueuePresentKHR and the image is free again when the
    /// call returns, so each mode's promise holds: FIFO shows every image in order, MAILBOX never tears and
    /// never waits, IMMEDIATE never waits. (Wayland surfaces have their own: FIFO paced by frame callbacks.)</summary>
    public static readonly VkPresentModeKHR[] CopyPresentModes =
        [VkPresentModeKHR.VK_PRESENT_MODE_FIFO_KHR, VkPresentModeKHR.VK_PRESENT_MODE_MAILBOX_KHR, VkPresentModeKHR.VK_PRESENT_MODE_IMMEDIATE_KHR];

    public static bool IsSurfaceFormat(VkFormat f, VkColorSpaceKHR cs)
    {
        foreach (var s in s_formats) if (s.format == f && s.colorSpace == cs) return true;
        return false;
    }


    public const uint MinImageCount = 2, MaxImageCount = 8;

    static GuestSurface? SurfaceOf(nint dispatchable, VkSurfaceKHR surface) =>
        surface.IsNull ? null : Generic.ConnectionOf(dispatchable).Wsi.Get<GuestSurface>(surface.Handle);

    public static VkResult AddSurface(VkInstance instance, GuestSurface s, VkSurfaceKHR* pSurface)
    {
        *pSurface = new VkSurfaceKHR(Generic.ConnectionOf(instance.Handle).Wsi.Add(Generic.ConnectionOf(instance.Handle), s));
        Log.Debug($"created a {s.Kind} surface 0x{pSurface->Handle:X}");
        return VK_SUCCESS;
    }

    public static VkResult vkCreateHeadlessSurfaceEXT(VkInstance instance, VkHeadlessSurfaceCreateInfoEXT* pCreateInfo, VkAllocationCallbacks* pAllocator, VkSurfaceKHR* pSurface)
    {
        if (pCreateInfo == null || pSurface == null) return VK_ERROR_INITIALIZATION_FAILED;
        return AddSurface(instance, new HeadlessSurface(), pSurface);
    }

    public static void vkDestroySurfaceKHR(VkInstance instance, VkSurfaceKHR surface, VkAllocationCallbacks* pAllocator)
    {
        if (surface.IsNull) return;
        var s = Generic.ConnectionOf(instance.Handle).Wsi.Remove<GuestSurface>(surface.Handle);
        if (s is null) { Log.Warn($"vkDestroySurfaceKHR: 0x{surface.Handle:X} is not a surface of this instance"); return; }
        s.Dispose();
    }

    public static VkResult vkGetPhysicalDeviceSurfaceSupportKHR(VkPhysicalDevice physicalDevice, uint queueFamilyIndex, VkSurfaceKHR surface, uint* pSupported)
    {
        if (SurfaceOf(physicalDevice.Handle, surface) is null) return VK_ERROR_SURFACE_LOST_KHR;
        // The guest presents from memory it reads itself: every family that can run the swapchain's submits can present.
        *pSupported = queueFamilyIndex < QueueFamilyCount(physicalDevice) ? 1u : 0u;
        return VK_SUCCESS;
    }

    static uint QueueFamilyCount(VkPhysicalDevice physicalDevice)
    {
        ulong* a = stackalloc ulong[3];
        uint n = 0;
        a[0] = (ulong)physicalDevice.Handle; a[1] = (ulong)&n; a[2] = 0;
        Generic.Call(Protocol.Tables.vkGetPhysicalDeviceQueueFamilyProperties, a);
        return n;
    }

    /// <summary>Usage the swapchain's linear images can have on this host device, for both formats.</summary>
    static VkImageUsageFlags SupportedUsage(VkPhysicalDevice physicalDevice)
    {
        uint both = ~0u;
        ulong* a = stackalloc ulong[3];
        foreach (var f in s_formats)
        {
            VkFormatProperties props;
            a[0] = (ulong)physicalDevice.Handle; a[1] = (ulong)(uint)(int)f.format; a[2] = (ulong)&props;
            Generic.Call(Protocol.Tables.vkGetPhysicalDeviceFormatProperties, a);
            both &= (uint)props.linearTilingFeatures;
        }
        var feats = (VkFormatFeatureFlags)both;
        uint usage = 0;
        if ((feats & VkFormatFeatureFlags.VK_FORMAT_FEATURE_TRANSFER_SRC_BIT) != 0) usage |= (uint)VkImageUsageFlags.VK_IMAGE_USAGE_TRANSFER_SRC_BIT;
        if ((feats & VkFormatFeatureFlags.VK_FORMAT_FEATURE_TRANSFER_DST_BIT) != 0) usage |= (uint)VkImageUsageFlags.VK_IMAGE_USAGE_TRANSFER_DST_BIT;
        if ((feats & VkFormatFeatureFlags.VK_FORMAT_FEATURE_SAMPLED_IMAGE_BIT) != 0) usage |= (uint)VkImageUsageFlags.VK_IMAGE_USAGE_SAMPLED_BIT;
        if ((feats & VkFormatFeatureFlags.VK_FORMAT_FEATURE_STORAGE_IMAGE_BIT) != 0) usage |= (uint)VkImageUsageFlags.VK_IMAGE_USAGE_STORAGE_BIT;
        if ((feats & VkFormatFeatureFlags.VK_FORMAT_FEATURE_COLOR_ATTACHMENT_BIT) != 0)
            usage |= (uint)(VkImageUsageFlags.VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT | VkImageUsageFlags.VK_IMAGE_USAGE_INPUT_ATTACHMENT_BIT);
        return (VkImageUsageFlags)usage;
    }

    static uint MaxImageDimension2D(VkPhysicalDevice physicalDevice)
    {
        VkPhysicalDeviceProperties p;
        vkGetPhysicalDeviceProperties(physicalDevice, &p);
        return p.limits.maxImageDimension2D;
    }

    public static VkResult vkGetPhysicalDeviceSurfaceCapabilitiesKHR(VkPhysicalDevice physicalDevice, VkSurfaceKHR surface, VkSurfaceCapabilitiesKHR* pSurfaceCapabilities)
    {
        var s = SurfaceOf(physicalDevice.Handle, surface);
        if (s is null) return VK_ERROR_SURFACE_LOST_KHR;
        var r = s.CurrentExtent(out uint w, out uint h);
        if (r != VK_SUCCESS) return r;
        uint max = MaxImageDimension2D(physicalDevice);
        var c = new VkSurfaceCapabilitiesKHR
        {
            minImageCount = MinImageCount,
            maxImageCount = MaxImageCount,
            currentExtent = new VkExtent2D { width = w, height = h },
            // A window's swapchain is its size (the guest copies it 1:1); headless takes any size the device can render.
            minImageExtent = w == GuestSurface.Undefined ? new VkExtent2D { width = 1, height = 1 } : new VkExtent2D { width = w, height = h },
            maxImageExtent = w == GuestSurface.Undefined ? new VkExtent2D { width = max, height = max } : new VkExtent2D { width = w, height = h },
            maxImageArrayLayers = 1,
            supportedTransforms = VkSurfaceTransformFlagsKHR.VK_SURFACE_TRANSFORM_IDENTITY_BIT_KHR,
            currentTransform = VkSurfaceTransformFlagBitsKHR.VK_SURFACE_TRANSFORM_IDENTITY_BIT_KHR,
            supportedCompositeAlpha = (VkCompositeAlphaFlagsKHR)(uint)(VkCompositeAlphaFlagBitsKHR.VK_COMPOSITE_ALPHA_OPAQUE_BIT_KHR | VkCompositeAlphaFlagBitsKHR.VK_COMPOSITE_ALPHA_INHERIT_BIT_KHR),
            supportedUsageFlags = SupportedUsage(physicalDevice),
        };
        *pSurfaceCapabilities = c;
        return VK_SUCCESS;
    }

    public static VkResult vkGetPhysicalDeviceSurfaceCapabilities2KHR(VkPhysicalDevice physicalDevice, VkPhysicalDeviceSurfaceInfo2KHR* pSurfaceInfo, VkSurfaceCapabilities2KHR* pSurfaceCapabilities)
    {
        if (pSurfaceInfo == null || pSurfaceCapabilities == null) return VK_ERROR_SURFACE_LOST_KHR;
        var r = vkGetPhysicalDeviceSurfaceCapabilitiesKHR(physicalDevice, pSurfaceInfo->surface, &pSurfaceCapabilities->surfaceCapabilities);
        if (r != VK_SUCCESS) return r;
        for (var n = (VkBaseOutStructure*)pSurfaceCapabilities->pNext; n != null; n = n->pNext)
            if (n->sType == VkStructureType.VK_STRUCTURE_TYPE_SURFACE_PROTECTED_CAPABILITIES_KHR)
                ((VkSurfaceProtectedCapabilitiesKHR*)n)->supportsProtected = 0; // the ICD carries no protected memory
        return VK_SUCCESS;
    }

    public static VkResult vkGetPhysicalDeviceSurfaceFormatsKHR(VkPhysicalDevice physicalDevice, VkSurfaceKHR surface, uint* pSurfaceFormatCount, VkSurfaceFormatKHR* pSurfaceFormats)
    {
        if (SurfaceOf(physicalDevice.Handle, surface) is null) return VK_ERROR_SURFACE_LOST_KHR;
        return FillArray<VkSurfaceFormatKHR>(s_formats, pSurfaceFormatCount, pSurfaceFormats);
    }

    public static VkResult vkGetPhysicalDeviceSurfaceFormats2KHR(VkPhysicalDevice physicalDevice, VkPhysicalDeviceSurfaceInfo2KHR* pSurfaceInfo, uint* pSurfaceFormatCount, VkSurfaceFormat2KHR* pSurfaceFormats)
    {
        if (pSurfaceInfo == null || SurfaceOf(physicalDevice.Handle, pSurfaceInfo->surface) is null) return VK_ERROR_SURFACE_LOST_KHR;
        if (pSurfaceFormats == null) { *pSurfaceFormatCount = (uint)s_formats.Length; return VK_SUCCESS; }
        uint n = Math.Min(*pSurfaceFormatCount, (uint)s_formats.Length);
        // Only surfaceFormat is ours: sType and pNext are the application's.
        for (uint i = 0; i < n; i++) pSurfaceFormats[i].surfaceFormat = s_formats[i];
        *pSurfaceFormatCount = n;
        return n < s_formats.Length ? VK_INCOMPLETE : VK_SUCCESS;
    }

    public static VkResult vkGetPhysicalDeviceSurfacePresentModesKHR(VkPhysicalDevice physicalDevice, VkSurfaceKHR surface, uint* pPresentModeCount, VkPresentModeKHR* pPresentModes)
    {
        var s = SurfaceOf(physicalDevice.Handle, surface);
        if (s is null) return VK_ERROR_SURFACE_LOST_KHR;
        return FillArray<VkPresentModeKHR>(s.PresentModes, pPresentModeCount, pPresentModes);
    }

    public static VkResult vkGetPhysicalDevicePresentRectanglesKHR(VkPhysicalDevice physicalDevice, VkSurfaceKHR surface, uint* pRectCount, VkRect2D* pRects)
    {
        var s = SurfaceOf(physicalDevice.Handle, surface);
        if (s is null) return VK_ERROR_SURFACE_LOST_KHR;
        var r = s.CurrentExtent(out uint w, out uint h);
        if (r != VK_SUCCESS) return r;
        if (w == GuestSurface.Undefined) { uint max = MaxImageDimension2D(physicalDevice); w = h = max; }
        // One device, and it presents the whole window.
        Span<VkRect2D> rect = [new VkRect2D { offset = default, extent = new VkExtent2D { width = w, height = h } }];
        return FillArray<VkRect2D>(rect, pRectCount, pRects);
    }

    public static VkResult vkGetDeviceGroupPresentCapabilitiesKHR(VkDevice device, VkDeviceGroupPresentCapabilitiesKHR* pDeviceGroupPresentCapabilities)
    {
        if (pDeviceGroupPresentCapabilities == null) return VK_ERROR_UNKNOWN;
        var span = MemoryMarshal.CreateSpan(ref pDeviceGroupPresentCapabilities->presentMask[0], (int)VkConstants.VK_MAX_DEVICE_GROUP_SIZE);
        span.Clear();
        span[0] = 1; // a single physical device, which presents its own images
        pDeviceGroupPresentCapabilities->modes = VkDeviceGroupPresentModeFlagsKHR.VK_DEVICE_GROUP_PRESENT_MODE_LOCAL_BIT_KHR;
        return VK_SUCCESS;
    }

    public static VkResult vkGetDeviceGroupSurfacePresentModesKHR(VkDevice device, VkSurfaceKHR surface, VkDeviceGroupPresentModeFlagsKHR* pModes)
    {
        if (SurfaceOf(device.Handle, surface) is null) return VK_ERROR_SURFACE_LOST_KHR;
        *pModes = VkDeviceGroupPresentModeFlagsKHR.VK_DEVICE_GROUP_PRESENT_MODE_LOCAL_BIT_KHR;
        return VK_SUCCESS;
    }
}
