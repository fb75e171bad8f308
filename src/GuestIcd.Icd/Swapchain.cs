using System.Diagnostics;
using GuestIcd.Protocol;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkResult;

namespace GuestIcd.Icd;

/// <summary>What swapchains need of their device: a queue for the submits that signal an acquire's semaphore and
/// fence, and a fence that tells a present when the image's rendering is done.</summary>
internal sealed unsafe partial class GuestDevice
{
    /// <summary>The family of the first queue the application created (where those submits go).</summary>
    public uint QueueFamily;
    public VkQueue WsiQueue;
    public VkFence PresentFence;
    /// <summary>Presents of one device take turns on <see cref="PresentFence"/>.</summary>
    public readonly object PresentLock = new();
}

/// <summary>A VkSwapchainKHR: a set of ordinary host VkImages that the guest created through the normal path,
/// linear and bound to HOST_VISIBLE memory that the guest maps. On shared-memory transports that memory is the
/// heap the guest already maps, so at vkQueuePresentKHR the host's rendering is already in guest memory and
/// nothing crosses the wire; over TCP the pages the host changed come back with the fence wait, like any other
/// mapped memory. The guest then hands the pixels to its own window system (<see cref="Presenter"/>).</summary>
internal sealed unsafe class GuestSwapchain : IDisposable
{
    public struct Image
    {
        public VkImage Handle;
        public VkDeviceMemory Memory;
        public byte* Pixels;
        public ulong RowPitch;
        public bool Acquired;
    }

    public readonly nint Device;
    public readonly GuestSurface Surface;
    public readonly VkFormat Format;
    public readonly uint Width, Height;
    public readonly Image[] Images;
    public Presenter? Presenter;
    public bool Retired;
    int _next;
    readonly object _lock = new();
    long _waitingSince;
    bool _warnedForever;

    // Present-to-present intervals, kept for the log line at destruction (the benchmark reads it).
    readonly long[] _intervals = new long[4096];
    long _presents, _lastPresent;

    public GuestSwapchain(nint device, GuestSurface surface, VkFormat format, uint width, uint height, int count)
    {
        Device = device;
        Surface = surface;
        Format = format;
        Width = width;
        Height = height;
        Images = new Image[count];
    }

    /// <summary>The next image the application does not hold, in turn; -1 when none is free by the timeout.</summary>
    public int Acquire(ulong timeoutNs)
    {
        long deadline = timeoutNs >= 1UL << 62 ? long.MaxValue : Stopwatch.GetTimestamp() + (long)(timeoutNs / 1000 * (ulong)Stopwatch.Frequency / 1_000_000);
        lock (_lock)
        {
            while (true)
            {
                for (int k = 0; k < Images.Length; k++)
                {
                    int i = (_next + k) % Images.Length;
                    if (Images[i].Acquired) continue;
                    _waitingSince = 0;
                    Images[i].Acquired = true;
                    _next = (i + 1) % Images.Length;
                    return i;
                }
                // Every image is held: only a present from another thread can free one.
                long now = Stopwatch.GetTimestamp();
                if (now >= deadline || timeoutNs == 0) return -1;
                if (deadline == long.MaxValue && !_warnedForever && (_waitingSince == 0 ? (_waitingSince = now) : _waitingSince) < now - 5 * Stopwatch.Frequency)
                {
                    _warnedForever = true;
                    Log.Warn($"vkAcquireNextImageKHR has waited 5 s with no timeout while the application holds all {Images.Length} images (VUID-vkAcquireNextImageKHR-surface-07783): only a present can free one");
                }
                long waitMs = deadline == long.MaxValue ? 1000 : Math.Max(1, (deadline - now) * 1000 / Stopwatch.Frequency);
                Monitor.Wait(_lock, (int)Math.Min(waitMs, int.MaxValue));
            }
        }
    }

    public bool IsAcquired(uint index)
    {
        lock (_lock) return index < Images.Length && Images[index].Acquired;
    }

    public void Release(uint index)
    {
        lock (_lock)
        {
            Images[index].Acquired = false;
            Monitor.PulseAll(_lock);
        }
    }

    /// <summary>Shows image <paramref name="index"/> (its rendering is complete) and gives it back.</summary>
    public VkResult Present(uint index)
    {
        ref var img = ref Images[index];
        // A retired swapchain still shows the images acquired before it was retired (spec, oldSwapchain).
        VkResult r;
        {
            r = Surface.CurrentExtent(out uint w, out uint h);
            if (r == VK_SUCCESS)
            {
                r = Presenter!.Present(img.Pixels, img.RowPitch, Width, Height);
                // Shown, clipped or padded by the window system, but the window is no longer the swapchain's size.
                if (r == VK_SUCCESS && w != GuestSurface.Undefined && (w != Width || h != Height)) r = VK_SUBOPTIMAL_KHR;
            }
        }
        long now = Stopwatch.GetTimestamp();
        if (_lastPresent != 0) _intervals[(_presents - 1) % _intervals.Length] = now - _lastPresent;
        _presents++;
        _lastPresent = now;
        Release(index);
        return r;
    }

    /// <summary>"N presents, present-to-present mean/median/p99" over the last intervals; not a hot path.</summary>
    public string Statistics()
    {
        int n = (int)Math.Min(Math.Max(_presents - 1, 0), _intervals.Length);
        if (n == 0) return $"{_presents} presents";
        var s = _intervals.Take(n).Select(t => t * 1000.0 / Stopwatch.Frequency).OrderBy(x => x).ToArray();
        return $"{_presents} presents, present-to-present mean {s.Average():F3} ms, median {s[n / 2]:F3} ms, p99 {s[Math.Min(n - 1, n * 99 / 100)]:F3} ms";
    }

    public void Dispose() => Presenter?.Dispose();
}

internal static unsafe partial class Entry
{
    static GuestSwapchain? SwapchainOf(GuestDevice dev, nint device, VkSwapchainKHR swapchain)
    {
        var sc = swapchain.IsNull ? null : dev.Connection.Wsi.Get<GuestSwapchain>(swapchain.Handle);
        return sc is not null && sc.Device == device ? sc : null;
    }

    public static VkResult vkCreateSwapchainKHR(VkDevice device, VkSwapchainCreateInfoKHR* pCreateInfo, VkAllocationCallbacks* pAllocator, VkSwapchainKHR* pSwapchain)
    {
        if (pCreateInfo == null || pSwapchain == null || pCreateInfo->sType != VkStructureType.VK_STRUCTURE_TYPE_SWAPCHAIN_CREATE_INFO_KHR)
            return Refuse("vkCreateSwapchainKHR: no VkSwapchainCreateInfoKHR");
        var dev = GuestDevice.Of(device);
        var c = dev.Connection;
        var ci = pCreateInfo;
        var surface = c.Wsi.Get<GuestSurface>(ci->surface.Handle);
        if (surface is null) return VK_ERROR_SURFACE_LOST_KHR;
        var old = ci->oldSwapchain.IsNull ? null : SwapchainOf(dev, device.Handle, ci->oldSwapchain);
        if (!ci->oldSwapchain.IsNull && (old is null || old.Surface != surface))
            return Refuse($"vkCreateSwapchainKHR: oldSwapchain 0x{ci->oldSwapchain.Handle:X} is not a swapchain of this device and surface");
        if (surface.Owner is not null && surface.Owner != old && !surface.Owner.Retired) return VK_ERROR_NATIVE_WINDOW_IN_USE_KHR;
        if (!IsSurfaceFormat(ci->imageFormat, ci->imageColorSpace))
            return Refuse($"vkCreateSwapchainKHR: format {ci->imageFormat} / {ci->imageColorSpace} is not one of the surface's");
        if (Array.IndexOf(surface.PresentModes, ci->presentMode) < 0) return Refuse($"vkCreateSwapchainKHR: present mode {ci->presentMode} is not one of the surface's");
        if (ci->imageArrayLayers != 1) return Refuse($"vkCreateSwapchainKHR: imageArrayLayers {ci->imageArrayLayers} (the surface offers 1)");
        if (ci->minImageCount > MaxImageCount) return Refuse($"vkCreateSwapchainKHR: minImageCount {ci->minImageCount} above the surface's {MaxImageCount}");
        if ((ci->flags & ~VkSwapchainCreateFlagsKHR.VK_SWAPCHAIN_CREATE_MUTABLE_FORMAT_BIT_KHR) != 0)
            return Refuse($"vkCreateSwapchainKHR: flags 0x{(uint)ci->flags:X} (the ICD offers VK_SWAPCHAIN_CREATE_MUTABLE_FORMAT_BIT_KHR only)");
        var formats = FormatList(ci);
        if ((ci->flags & VkSwapchainCreateFlagsKHR.VK_SWAPCHAIN_CREATE_MUTABLE_FORMAT_BIT_KHR) != 0)
        {
            // VUID-VkSwapchainCreateInfoKHR-flags-03168: the views' formats come with the flag, and views of our
            // linear B8G8R8A8 images may be UNORM or SRGB.
            if (formats == null || formats->viewFormatCount == 0 || formats->pViewFormats == null || formats->viewFormatCount > 16)
                return Refuse("vkCreateSwapchainKHR: VK_SWAPCHAIN_CREATE_MUTABLE_FORMAT_BIT_KHR without a VkImageFormatListCreateInfo naming its formats");
            for (uint i = 0; i < formats->viewFormatCount; i++)
                if (!IsSurfaceFormat(formats->pViewFormats[i], ci->imageColorSpace))
                    return Refuse($"vkCreateSwapchainKHR: view format {formats->pViewFormats[i]} is not one of the surface's");
        }
        var pd = new VkPhysicalDevice(c.Handles.ParentOf(device.Handle));
        if (pd.Handle == 0) return Refuse("vkCreateSwapchainKHR: the device's physical device is gone");
        uint maxDim = MaxImageDimension2D(pd);
        if (ci->imageExtent.width == 0 || ci->imageExtent.height == 0 || ci->imageExtent.width > maxDim || ci->imageExtent.height > maxDim)
            return Refuse($"vkCreateSwapchainKHR: imageExtent {ci->imageExtent.width}x{ci->imageExtent.height} outside 1..{maxDim}");
        var supported = SupportedUsage(pd);
        if ((ci->imageUsage & ~supported) != 0 || ci->imageUsage == 0)
            return Refuse($"vkCreateSwapchainKHR: imageUsage 0x{(uint)ci->imageUsage:X} outside the surface's 0x{(uint)supported:X}");
        if (ci->imageSharingMode == VkSharingMode.VK_SHARING_MODE_CONCURRENT && (ci->pQueueFamilyIndices == null || ci->queueFamilyIndexCount < 2 || ci->queueFamilyIndexCount > 64))
            return Refuse("vkCreateSwapchainKHR: concurrent sharing without its queue families");

        int count = (int)Math.Max(ci->minImageCount, MinImageCount);
        var sc = new GuestSwapchain(device.Handle, surface, ci->imageFormat, ci->imageExtent.width, ci->imageExtent.height, count);
        var r = CreateImages(dev, device, sc, ci, formats);
        if (r == VK_SUCCESS)
        {
            try { sc.Presenter = surface.CreatePresenter(ci->imageFormat, sc.Width, sc.Height, ci->presentMode); }
            catch (WindowSystemException e) { Log.Warn($"vkCreateSwapchainKHR: {e.Message}"); r = VK_ERROR_SURFACE_LOST_KHR; }
        }
        if (r != VK_SUCCESS)
        {
            DestroyImages(dev, device, sc);
            sc.Dispose();
            return r;
        }
        // The old swapchain is retired whether or not this one is created (spec); its acquired images stay usable.
        if (old is not null) old.Retired = true;
        surface.Owner = sc;
        *pSwapchain = new VkSwapchainKHR(c.Wsi.Add(c, sc));
        Log.Info($"swapchain 0x{pSwapchain->Handle:X}: {count} {sc.Width}x{sc.Height} {ci->imageFormat} images on a {surface.Kind} surface, {ci->presentMode}");
        return VK_SUCCESS;
    }

    /// <summary>The VkImageFormatListCreateInfo in the create info's chain, if any.</summary>
    static VkImageFormatListCreateInfo* FormatList(VkSwapchainCreateInfoKHR* ci)
    {
        int hops = 0;
        for (var n = (VkBaseInStructure*)ci->pNext; n != null && hops++ < 64; n = n->pNext)
            if (n->sType == VkStructureType.VK_STRUCTURE_TYPE_IMAGE_FORMAT_LIST_CREATE_INFO) return (VkImageFormatListCreateInfo*)n;
        return null;
    }

    static VkResult Refuse(string why)
    {
        Log.Warn(why);
        return VK_ERROR_INITIALIZATION_FAILED;
    }

    static VkResult CreateImages(GuestDevice dev, VkDevice device, GuestSwapchain sc, VkSwapchainCreateInfoKHR* ci, VkImageFormatListCreateInfo* formats)
    {
        ulong* a = stackalloc ulong[5];
        bool mutable = (ci->flags & VkSwapchainCreateFlagsKHR.VK_SWAPCHAIN_CREATE_MUTABLE_FORMAT_BIT_KHR) != 0;
        var list = mutable ? *formats : default;
        list.pNext = null; // the host sees only the format list, not the rest of the swapchain's chain
        for (int i = 0; i < sc.Images.Length; i++)
        {
            ref var img = ref sc.Images[i];
            var ici = new VkImageCreateInfo
            {
                sType = VkStructureType.VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO,
                pNext = mutable ? &list : null,
                flags = mutable ? VkImageCreateFlags.VK_IMAGE_CREATE_MUTABLE_FORMAT_BIT : 0,
                imageType = VkImageType.VK_IMAGE_TYPE_2D,
                format = ci->imageFormat,
                extent = new VkExtent3D { width = sc.Width, height = sc.Height, depth = 1 },
                mipLevels = 1,
                arrayLayers = 1,
                samples = VkSampleCountFlagBits.VK_SAMPLE_COUNT_1_BIT,
                // Linear: the guest reads the rows straight out of the memory the host rendered into.
                tiling = VkImageTiling.VK_IMAGE_TILING_LINEAR,
                usage = ci->imageUsage,
                sharingMode = ci->imageSharingMode,
                queueFamilyIndexCount = ci->imageSharingMode == VkSharingMode.VK_SHARING_MODE_CONCURRENT ? ci->queueFamilyIndexCount : 0,
                pQueueFamilyIndices = ci->imageSharingMode == VkSharingMode.VK_SHARING_MODE_CONCURRENT ? ci->pQueueFamilyIndices : null,
                initialLayout = VkImageLayout.VK_IMAGE_LAYOUT_UNDEFINED,
            };
            VkImage image;
            a[0] = (ulong)device.Handle; a[1] = (ulong)&ici; a[2] = 0; a[3] = (ulong)&image;
            var r = (VkResult)(int)Generic.Call(Tables.vkCreateImage, a);
            if (r != VK_SUCCESS) return r;
            img.Handle = image;

            VkMemoryRequirements req;
            a[1] = image.Handle; a[2] = (ulong)&req;
            Generic.Call(Tables.vkGetImageMemoryRequirements, a);
            uint types = req.memoryTypeBits & dev.HostVisibleTypes;
            if (types == 0) { Log.Warn("vkCreateSwapchainKHR: the host offers no HOST_VISIBLE memory for linear images"); return VK_ERROR_OUT_OF_DEVICE_MEMORY; }
            var mai = new VkMemoryAllocateInfo
            {
                sType = VkStructureType.VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                allocationSize = req.size,
                memoryTypeIndex = (uint)System.Numerics.BitOperations.TrailingZeroCount(types),
            };
            VkDeviceMemory memory;
            r = vkAllocateMemory(device, &mai, null, &memory);
            if (r != VK_SUCCESS) return r;
            img.Memory = memory;

            a[1] = image.Handle; a[2] = memory.Handle; a[3] = 0;
            r = (VkResult)(int)Generic.Call(Tables.vkBindImageMemory, a);
            if (r != VK_SUCCESS) return r;
            void* mapped;
            r = vkMapMemory(device, memory, 0, VkConstants.VK_WHOLE_SIZE, 0, &mapped);
            if (r != VK_SUCCESS) return r;

            var sub = new VkImageSubresource { aspectMask = VkImageAspectFlags.VK_IMAGE_ASPECT_COLOR_BIT };
            VkSubresourceLayout layout;
            a[1] = image.Handle; a[2] = (ulong)&sub; a[3] = (ulong)&layout;
            Generic.Call(Tables.vkGetImageSubresourceLayout, a);
            if (layout.rowPitch < sc.Width * 4UL || layout.offset + layout.rowPitch * sc.Height > req.size)
            {
                Log.Warn($"vkCreateSwapchainKHR: the host's linear layout (offset {layout.offset}, row pitch {layout.rowPitch}) does not fit its {req.size} bytes");
                return VK_ERROR_INITIALIZATION_FAILED;
            }
            img.Pixels = (byte*)mapped + layout.offset;
            img.RowPitch = layout.rowPitch;
        }
        return VK_SUCCESS;
    }

    static void DestroyImages(GuestDevice dev, VkDevice device, GuestSwapchain sc)
    {
        ulong* a = stackalloc ulong[3];
        foreach (var img in sc.Images)
        {
            if (!img.Handle.IsNull)
            {
                a[0] = (ulong)device.Handle; a[1] = img.Handle.Handle; a[2] = 0;
                Generic.Call(Tables.vkDestroyImage, a);
            }
            if (!img.Memory.IsNull) vkFreeMemory(device, img.Memory, null);
        }
    }

    public static void vkDestroySwapchainKHR(VkDevice device, VkSwapchainKHR swapchain, VkAllocationCallbacks* pAllocator)
    {
        if (swapchain.IsNull) return;
        var dev = GuestDevice.Of(device);
        var sc = SwapchainOf(dev, device.Handle, swapchain);
        if (sc is null) { Log.Warn($"vkDestroySwapchainKHR: 0x{swapchain.Handle:X} is not a swapchain of this device"); return; }
        dev.Connection.Wsi.Remove<GuestSwapchain>(swapchain.Handle);
        if (sc.Surface.Owner == sc) sc.Surface.Owner = null;
        Log.Info($"swapchain 0x{swapchain.Handle:X} destroyed: {sc.Statistics()}");
        DestroyImages(dev, device, sc);
        sc.Dispose();
    }

    public static VkResult vkGetSwapchainImagesKHR(VkDevice device, VkSwapchainKHR swapchain, uint* pSwapchainImageCount, VkImage* pSwapchainImages)
    {
        var sc = SwapchainOf(GuestDevice.Of(device), device.Handle, swapchain);
        if (sc is null || pSwapchainImageCount == null) return Refuse("vkGetSwapchainImagesKHR: not a swapchain of this device");
        Span<VkImage> images = stackalloc VkImage[sc.Images.Length];
        for (int i = 0; i < images.Length; i++) images[i] = sc.Images[i].Handle;
        return FillArray<VkImage>(images, pSwapchainImageCount, pSwapchainImages);
    }

    public static VkResult vkAcquireNextImageKHR(VkDevice device, VkSwapchainKHR swapchain, ulong timeout, VkSemaphore semaphore, VkFence fence, uint* pImageIndex)
    {
        var dev = GuestDevice.Of(device);
        var sc = SwapchainOf(dev, device.Handle, swapchain);
        if (sc is null || pImageIndex == null) { Log.Warn("vkAcquireNextImageKHR: not a swapchain of this device"); return VK_ERROR_UNKNOWN; }
        if (sc.Retired) return VK_ERROR_OUT_OF_DATE_KHR;
        var r = sc.Surface.CurrentExtent(out uint w, out uint h);
        if (r != VK_SUCCESS) return r;
        // The window changed size: a window's swapchain must be its size (the surface's min and max extent).
        if (w != GuestSurface.Undefined && (w != sc.Width || h != sc.Height)) return VK_ERROR_OUT_OF_DATE_KHR;
        int index = sc.Acquire(timeout);
        if (index < 0) return timeout == 0 ? VK_NOT_READY : VK_TIMEOUT;
        // The image is free now (presents finish reading before they return): signal at once, on the host, in order.
        if (!semaphore.IsNull || !fence.IsNull)
        {
            r = SignalNow(dev, device, semaphore, fence);
            if (r != VK_SUCCESS) { sc.Release((uint)index); return r; }
        }
        *pImageIndex = (uint)index;
        return VK_SUCCESS;
    }

    public static VkResult vkAcquireNextImage2KHR(VkDevice device, VkAcquireNextImageInfoKHR* pAcquireInfo, uint* pImageIndex)
    {
        if (pAcquireInfo == null) return VK_ERROR_UNKNOWN;
        return vkAcquireNextImageKHR(device, pAcquireInfo->swapchain, pAcquireInfo->timeout, pAcquireInfo->semaphore, pAcquireInfo->fence, pImageIndex);
    }

    static VkQueue WsiQueue(GuestDevice dev, VkDevice device)
    {
        if (!dev.WsiQueue.IsNull) return dev.WsiQueue;
        VkQueue q;
        ulong* a = stackalloc ulong[4];
        a[0] = (ulong)device.Handle; a[1] = dev.QueueFamily; a[2] = 0; a[3] = (ulong)&q;
        Generic.Call(Tables.vkGetDeviceQueue, a);
        dev.WsiQueue = q;
        return q;
    }

    /// <summary>An empty submit that signals the acquire's semaphore and fence.</summary>
    static VkResult SignalNow(GuestDevice dev, VkDevice device, VkSemaphore semaphore, VkFence fence)
    {
        var si = new VkSubmitInfo
        {
            sType = VkStructureType.VK_STRUCTURE_TYPE_SUBMIT_INFO,
            signalSemaphoreCount = semaphore.IsNull ? 0u : 1u,
            pSignalSemaphores = &semaphore,
        };
        lock (dev.PresentLock) return vkQueueSubmit(WsiQueue(dev, device), semaphore.IsNull ? 0u : 1u, &si, fence);
    }

    public static VkResult vkQueuePresentKHR(VkQueue queue, VkPresentInfoKHR* pPresentInfo)
    {
        const int MaxWaits = 64, MaxSwapchains = 16;
        var p = pPresentInfo;
        if (p == null || p->sType != VkStructureType.VK_STRUCTURE_TYPE_PRESENT_INFO_KHR || p->swapchainCount == 0 || p->swapchainCount > MaxSwapchains
            || p->pSwapchains == null || p->pImageIndices == null || p->waitSemaphoreCount > MaxWaits || (p->waitSemaphoreCount > 0 && p->pWaitSemaphores == null))
        {
            Log.Warn("vkQueuePresentKHR: a VkPresentInfoKHR without its swapchains and indices (or too many of them)");
            return VK_ERROR_UNKNOWN;
        }
        var dev = GuestDevice.OfChild(queue.Handle);
        nint device = dev.Connection.Handles.ParentOf(queue.Handle);
        for (int i = 0; i < p->swapchainCount; i++)
        {
            var sc = SwapchainOf(dev, device, p->pSwapchains[i]);
            if (sc is null || !sc.IsAcquired(p->pImageIndices[i]))
            {
                Log.Warn($"vkQueuePresentKHR: image {p->pImageIndices[i]} of 0x{p->pSwapchains[i].Handle:X} is not an image the application acquired");
                return VK_ERROR_UNKNOWN;
            }
        }
        VkResult worst = VK_SUCCESS;
        lock (dev.PresentLock)
        {
            var r = WaitForRendering(dev, new VkDevice(device), queue, p->waitSemaphoreCount, p->pWaitSemaphores);
            if (r != VK_SUCCESS) return r;
            for (int i = 0; i < p->swapchainCount; i++)
            {
                var sc = SwapchainOf(dev, device, p->pSwapchains[i]);
                var one = sc is null ? VK_ERROR_OUT_OF_DATE_KHR : sc.Present(p->pImageIndices[i]);
                if (p->pResults != null) p->pResults[i] = one;
                if (one < 0 ? worst >= 0 : worst == VK_SUCCESS) worst = one;
            }
        }
        return worst;
    }

    /// <summary>The present's semaphores waited on, on the host, by an empty submit whose fence the guest waits
    /// for: a fence of vkQueueSubmit covers everything submitted before it on the queue, so the pixels are final.</summary>
    static VkResult WaitForRendering(GuestDevice dev, VkDevice device, VkQueue queue, uint waitCount, VkSemaphore* waits)
    {
        if (dev.PresentFence.IsNull)
        {
            var fci = new VkFenceCreateInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
            VkFence f;
            var cr = vkCreateFence(device, &fci, null, &f);
            if (cr != VK_SUCCESS) return cr;
            dev.PresentFence = f;
        }
        var stages = stackalloc VkPipelineStageFlags[(int)Math.Max(waitCount, 1)];
        for (int i = 0; i < waitCount; i++) stages[i] = VkPipelineStageFlags.VK_PIPELINE_STAGE_ALL_COMMANDS_BIT;
        var si = new VkSubmitInfo
        {
            sType = VkStructureType.VK_STRUCTURE_TYPE_SUBMIT_INFO,
            waitSemaphoreCount = waitCount,
            pWaitSemaphores = waits,
            pWaitDstStageMask = stages,
        };
        var fence = dev.PresentFence;
        var r = vkQueueSubmit(queue, waitCount > 0 ? 1u : 0u, &si, fence);
        if (r != VK_SUCCESS) return r;
        r = vkWaitForFences(device, 1, &fence, 1, ulong.MaxValue);
        if (r != VK_SUCCESS) return r;
        return vkResetFences(device, 1, &fence);
    }
}

/// <summary>The guest's window system refused something (no libxcb, a window that is gone).</summary>
internal sealed class WindowSystemException(string message) : Exception(message);

/// <summary>A window system's client library, loaded at run time on the first surface of its kind (so headless
/// applications never load it) and tried once: a missing library gives the same reason on every later try.</summary>
internal sealed class WindowSystemLibrary(Func<string?> tryLoad)
{
    readonly object _lock = new();
    bool _tried;
    string? _error;

    /// <summary>Throws <see cref="WindowSystemException"/> with the reason when the library could not be loaded.</summary>
    public void Load()
    {
        lock (_lock)
        {
            if (!_tried)
            {
                _tried = true;
                _error = tryLoad();
            }
            if (_error is not null) throw new WindowSystemException(_error);
        }
    }
}
