using System.Diagnostics;
using System.Runtime.InteropServices;
using GuestIcd.Transport.Native;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkResult;

namespace GuestIcd.Icd;

/// <summary>libwayland-client, loaded the first time a Wayland surface is created (headless and X applications
/// never load it). The protocol is spoken through wl_proxy_marshal_array_flags with the wl_interface tables the
/// library exports as data, so no generated protocol code is needed: the requests used are few and their opcodes
/// are fixed by wayland.xml.</summary>
internal static unsafe class WlLib
{
    static readonly WindowSystemLibrary s_library = new(TryLoad);

    public const uint MarshalFlagDestroy = 1; // WL_MARSHAL_FLAG_DESTROY

    public static delegate* unmanaged<nint, nint> display_create_queue;
    public static delegate* unmanaged<nint, void> event_queue_destroy;
    public static delegate* unmanaged<nint, nint> proxy_create_wrapper;
    public static delegate* unmanaged<nint, void> proxy_wrapper_destroy;
    public static delegate* unmanaged<nint, nint, void> proxy_set_queue;
    public static delegate* unmanaged<nint, uint, nint, uint, uint, ulong*, nint> proxy_marshal_array_flags;
    public static delegate* unmanaged<nint, nint*, void*, int> proxy_add_listener;
    public static delegate* unmanaged<nint, void> proxy_destroy;
    public static delegate* unmanaged<nint, uint> proxy_get_version;
    public static delegate* unmanaged<nint, nint, int> display_roundtrip_queue;
    public static delegate* unmanaged<nint, nint, int> display_dispatch_queue_pending;
    public static delegate* unmanaged<nint, nint, int> display_prepare_read_queue;
    public static delegate* unmanaged<nint, int> display_read_events;
    public static delegate* unmanaged<nint, void> display_cancel_read;
    public static delegate* unmanaged<nint, int> display_flush;
    public static delegate* unmanaged<nint, int> display_get_fd;
    public static delegate* unmanaged<nint, int> display_get_error;

    public static nint registry_interface, shm_interface, shm_pool_interface, buffer_interface, callback_interface;

    /// <summary>Loads libwayland-client once; throws with the reason when it is missing.</summary>
    public static void Load() => s_library.Load();

    static string? TryLoad()
    {
        if (!NativeLibrary.TryLoad("libwayland-client.so.0", out var wl)) return "libwayland-client.so.0 is not installed (apt-get install libwayland-client0)";
        nint F(string name) => NativeLibrary.TryGetExport(wl, name, out var p) ? p
            : throw new WindowSystemException($"{name} missing from libwayland-client (1.20 or later is needed)");
        try
        {
            display_create_queue = (delegate* unmanaged<nint, nint>)F("wl_display_create_queue");
            event_queue_destroy = (delegate* unmanaged<nint, void>)F("wl_event_queue_destroy");
            proxy_create_wrapper = (delegate* unmanaged<nint, nint>)F("wl_proxy_create_wrapper");
            proxy_wrapper_destroy = (delegate* unmanaged<nint, void>)F("wl_proxy_wrapper_destroy");
            proxy_set_queue = (delegate* unmanaged<nint, nint, void>)F("wl_proxy_set_queue");
            proxy_marshal_array_flags = (delegate* unmanaged<nint, uint, nint, uint, uint, ulong*, nint>)F("wl_proxy_marshal_array_flags");
            proxy_add_listener = (delegate* unmanaged<nint, nint*, void*, int>)F("wl_proxy_add_listener");
            proxy_destroy = (delegate* unmanaged<nint, void>)F("wl_proxy_destroy");
            proxy_get_version = (delegate* unmanaged<nint, uint>)F("wl_proxy_get_version");
            display_roundtrip_queue = (delegate* unmanaged<nint, nint, int>)F("wl_display_roundtrip_queue");
            display_dispatch_queue_pending = (delegate* unmanaged<nint, nint, int>)F("wl_display_dispatch_queue_pending");
            display_prepare_read_queue = (delegate* unmanaged<nint, nint, int>)F("wl_display_prepare_read_queue");
            display_read_events = (delegate* unmanaged<nint, int>)F("wl_display_read_events");
            display_cancel_read = (delegate* unmanaged<nint, void>)F("wl_display_cancel_read");
            display_flush = (delegate* unmanaged<nint, int>)F("wl_display_flush");
            display_get_fd = (delegate* unmanaged<nint, int>)F("wl_display_get_fd");
            display_get_error = (delegate* unmanaged<nint, int>)F("wl_display_get_error");
            registry_interface = F("wl_registry_interface");
            shm_interface = F("wl_shm_interface");
            shm_pool_interface = F("wl_shm_pool_interface");
            buffer_interface = F("wl_buffer_interface");
            callback_interface = F("wl_callback_interface");
        }
        catch (WindowSystemException e) { return e.Message; }
        s_listeners = (nint*)NativeMemory.Alloc((nuint)(sizeof(nint) * 4));
        s_listeners[0] = (nint)(delegate* unmanaged<void*, nint, uint, byte*, uint, void>)&RegistryGlobal;
        s_listeners[1] = (nint)(delegate* unmanaged<void*, nint, uint, void>)&RegistryGlobalRemove;
        s_listeners[2] = (nint)(delegate* unmanaged<void*, nint, void>)&BufferRelease;
        s_listeners[3] = (nint)(delegate* unmanaged<void*, nint, uint, void>)&CallbackDone;
        return null;
    }

    // Listener tables (arrays of function pointers, one per event of the interface, as libwayland wants them).
    static nint* s_listeners;
    public static nint* RegistryListener => s_listeners;
    public static nint* BufferListener => s_listeners + 2;
    public static nint* CallbackListener => s_listeners + 3;

    /// <summary>What the registry listener fills in: the wl_shm global, bound on the surface's queue.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Globals
    {
        public nint Registry;
        public nint Shm;
    }

    [UnmanagedCallersOnly]
    static void RegistryGlobal(void* data, nint registry, uint name, byte* iface, uint version)
    {
        var g = (Globals*)data;
        if (g->Shm != 0 || !MemoryMarshal.CreateReadOnlySpanFromNullTerminated(iface).SequenceEqual("wl_shm"u8)) return;
        // wl_registry.bind (opcode 0, "usun"): the name, then the new object's interface name, version and id.
        ulong* a = stackalloc ulong[4];
        a[0] = name;
        a[1] = (ulong)*(nint*)shm_interface; // wl_interface.name, its first member
        a[2] = 1;
        a[3] = 0;
        g->Shm = proxy_marshal_array_flags(registry, 0, shm_interface, 1, 0, a);
    }

    [UnmanagedCallersOnly]
    static void RegistryGlobalRemove(void* data, nint registry, uint name) { }

    /// <summary>wl_buffer.release: the compositor no longer reads the buffer (data: its busy flag).</summary>
    [UnmanagedCallersOnly]
    static void BufferRelease(void* data, nint buffer) => *(int*)data = 0;

    /// <summary>wl_callback.done of wl_surface.frame: a good time to draw the next frame (data: the pending flag).</summary>
    [UnmanagedCallersOnly]
    static void CallbackDone(void* data, nint callback, uint time)
    {
        var p = (nint*)data;
        if (p[0] == callback) p[0] = 0;
        proxy_destroy(callback);
    }

    public static nint Marshal0(nint proxy, uint opcode, ulong* args, uint flags = 0) =>
        proxy_marshal_array_flags(proxy, opcode, 0, proxy_get_version(proxy), flags, args);

    public static nint MarshalNew(nint proxy, uint opcode, nint iface, ulong* args) =>
        proxy_marshal_array_flags(proxy, opcode, iface, proxy_get_version(proxy), 0, args);
}

/// <summary>A VK_KHR_wayland_surface: the application's wl_surface on the guest's compositor. The ICD's requests
/// go through wrappers of the application's wl_display and wl_surface bound to an event queue of its own, so the
/// events the ICD waits for (wl_buffer.release, frame callbacks) are dispatched by the ICD only and the
/// application's own queue and listeners are never touched.</summary>
internal sealed unsafe class WaylandSurface : GuestSurface
{
    public readonly nint Display, AppSurface;
    public readonly nint Queue, DisplayWrapper, SurfaceWrapper, Shm;
    public readonly uint SurfaceVersion;
    /// <summary>Presents of every swapchain of this surface take turns on the queue.</summary>
    public readonly object Lock = new();

    static readonly VkPresentModeKHR[] s_modes = [VkPresentModeKHR.VK_PRESENT_MODE_FIFO_KHR, VkPresentModeKHR.VK_PRESENT_MODE_MAILBOX_KHR];

    public WaylandSurface(nint display, nint surface)
    {
        WlLib.Load();
        Display = display;
        AppSurface = surface;
        if (WlLib.display_get_error(display) != 0) throw new WindowSystemException($"the wl_display has failed (error {WlLib.display_get_error(display)})");
        Queue = WlLib.display_create_queue(display);
        if (Queue == 0) throw new WindowSystemException("wl_display_create_queue failed");
        DisplayWrapper = WlLib.proxy_create_wrapper(display);
        SurfaceWrapper = WlLib.proxy_create_wrapper(surface);
        if (DisplayWrapper == 0 || SurfaceWrapper == 0) { Dispose(); throw new WindowSystemException("wl_proxy_create_wrapper failed"); }
        WlLib.proxy_set_queue(DisplayWrapper, Queue);
        WlLib.proxy_set_queue(SurfaceWrapper, Queue);
        SurfaceVersion = WlLib.proxy_get_version(surface);

        // wl_display.get_registry (opcode 1), then one round trip for the globals: the ICD needs only wl_shm.
        var g = new WlLib.Globals();
        ulong* a = stackalloc ulong[1];
        a[0] = 0;
        g.Registry = WlLib.MarshalNew(DisplayWrapper, 1, WlLib.registry_interface, a);
        if (g.Registry == 0) { Dispose(); throw new WindowSystemException("wl_display.get_registry failed"); }
        WlLib.proxy_add_listener(g.Registry, WlLib.RegistryListener, &g);
        int rt = WlLib.display_roundtrip_queue(display, Queue);
        WlLib.proxy_destroy(g.Registry); // wl_registry has no destructor request
        Shm = g.Shm;
        if (rt < 0 || Shm == 0)
        {
            Dispose();
            throw new WindowSystemException(rt < 0 ? $"the compositor connection failed (error {WlLib.display_get_error(display)})" : "the compositor offers no wl_shm");
        }
    }

    public override string Kind => "wayland";

    public override VkPresentModeKHR[] PresentModes => s_modes;

    /// <summary>A Wayland surface has no size of its own: the swapchain gives it one (0xFFFFFFFF, as the spec
    /// has it for such surfaces). A failed connection is a lost surface.</summary>
    public override VkResult CurrentExtent(out uint width, out uint height)
    {
        width = height = Undefined;
        return WlLib.display_get_error(Display) != 0 ? VK_ERROR_SURFACE_LOST_KHR : VK_SUCCESS;
    }

    public override Presenter CreatePresenter(VkFormat format, uint width, uint height, VkPresentModeKHR mode) =>
        new WaylandPresenter(this, width, height, mode == VkPresentModeKHR.VK_PRESENT_MODE_FIFO_KHR);

    /// <summary>Reads and dispatches the ICD's queue until <paramref name="done"/> holds or the deadline (a
    /// Stopwatch timestamp) passes; a deadline of 0 dispatches what has come without waiting. False on a
    /// connection error.</summary>
    public bool DispatchUntil(Func<WaylandPresenter, bool> done, WaylandPresenter p, long deadline)
    {
        while (true)
        {
            long now = Stopwatch.GetTimestamp();
            int ms = deadline <= now ? 0 : (int)Math.Clamp((deadline - now) * 1000 / Stopwatch.Frequency, 1, 1000);
            if (!Pump(ms)) return false;
            if (done(p) || Stopwatch.GetTimestamp() >= deadline) return true;
        }
    }

    /// <summary>One read of the connection (waiting up to <paramref name="ms"/>) and a dispatch of the ICD's queue,
    /// by libwayland's prepare/read protocol so that the application's own reader is never starved.</summary>
    bool Pump(int ms)
    {
        if (WlLib.display_get_error(Display) != 0) return false;
        while (WlLib.display_prepare_read_queue(Display, Queue) != 0)
            if (WlLib.display_dispatch_queue_pending(Display, Queue) < 0) return false;
        WlLib.display_flush(Display);
        var pfd = new Libc.PollFd { fd = WlLib.display_get_fd(Display), events = Libc.POLLIN };
        if (Libc.poll(&pfd, 1, ms) > 0) { if (WlLib.display_read_events(Display) < 0) return false; }
        else WlLib.display_cancel_read(Display);
        return WlLib.display_dispatch_queue_pending(Display, Queue) >= 0;
    }

    public override void Dispose()
    {
        if (Shm != 0) WlLib.proxy_destroy(Shm); // wl_shm version 1 has no release request
        if (SurfaceWrapper != 0) WlLib.proxy_wrapper_destroy(SurfaceWrapper);
        if (DisplayWrapper != 0) WlLib.proxy_wrapper_destroy(DisplayWrapper);
        if (Queue != 0) WlLib.event_queue_destroy(Queue);
    }
}

/// <summary>Puts a swapchain's images on a wl_surface: each present copies the image (rendered by the host into
/// guest-mapped memory) into a wl_shm buffer the compositor does not hold, then attach, damage and commit. A
/// buffer is reused only after its wl_buffer.release. FIFO waits for the previous commit's frame callback before
/// committing the next image (the compositor has shown it); MAILBOX never waits and lets the compositor show the
/// latest.</summary>
internal sealed unsafe class WaylandPresenter : Presenter
{
    const uint XRGB8888 = 1; // WL_SHM_FORMAT_XRGB8888: B, G, R, X in memory on little-endian machines
    const int MaxBuffers = 4;
    // A compositor withholds frame callbacks from surfaces it does not show (minimised, not yet mapped): FIFO
    // then goes on after this long instead of blocking the application for good.
    const int FrameCallbackWaitMs = 1000;
    const int ReleaseWaitMs = 5000;

    readonly WaylandSurface _s;
    readonly uint _width, _height, _stride;
    readonly nuint _bytes;
    readonly bool _fifo;
    readonly nint[] _buffer = new nint[MaxBuffers];
    readonly byte*[] _pixels = new byte*[MaxBuffers];
    // Native, because the listeners write them: busy flags, one per buffer, then the pending frame callback.
    readonly int* _busy;
    readonly nint* _frame;
    int _count;
    bool _warnedFrame;

    public WaylandPresenter(WaylandSurface s, uint width, uint height, bool fifo)
    {
        _s = s;
        _width = width;
        _height = height;
        _stride = width * 4;
        _bytes = (nuint)_stride * height;
        _fifo = fifo;
        _busy = (int*)NativeMemory.AllocZeroed(MaxBuffers * sizeof(int));
        _frame = (nint*)NativeMemory.AllocZeroed((nuint)sizeof(nint));
        lock (_s.Lock) AddBuffer(); // one now: a compositor without memory for it fails at creation, not at present
        Log.Info($"Wayland presentation: wl_shm XRGB8888 {width}x{height} buffers, {(fifo ? "FIFO by frame callbacks" : "MAILBOX")}");
    }

    void AddBuffer()
    {
        int fd;
        fixed (byte* name = "guesticd-wl-shm"u8) fd = Libc.memfd_create(name, Libc.MFD_CLOEXEC); // u8 literals end in a NUL
        if (fd < 0) throw new WindowSystemException("memfd_create failed");
        try
        {
            if (Libc.ftruncate(fd, (long)_bytes) != 0) throw new WindowSystemException($"no {_bytes} bytes of shared memory for a wl_shm buffer");
            var p = Libc.mmap(null, _bytes, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, fd, 0);
            if (p == Libc.MAP_FAILED) throw new WindowSystemException("mmap of a wl_shm buffer failed");
            // wl_shm.create_pool (opcode 0, "nhi"): libwayland sends a duplicate of the descriptor.
            ulong* a = stackalloc ulong[6];
            a[0] = 0; a[1] = (uint)fd; a[2] = (uint)_bytes;
            var pool = WlLib.MarshalNew(_s.Shm, 0, WlLib.shm_pool_interface, a);
            // wl_shm_pool.create_buffer (opcode 0, "niiiiu"), then the pool's destroy (opcode 1): the buffer keeps the memory.
            a[0] = 0; a[1] = 0; a[2] = _width; a[3] = _height; a[4] = _stride; a[5] = XRGB8888;
            var buffer = pool == 0 ? 0 : WlLib.MarshalNew(pool, 0, WlLib.buffer_interface, a);
            if (pool != 0) WlLib.Marshal0(pool, 1, null, WlLib.MarshalFlagDestroy);
            if (buffer == 0) { Libc.munmap(p, _bytes); throw new WindowSystemException("wl_shm_pool.create_buffer failed"); }
            int i = _count++;
            _buffer[i] = buffer;
            _pixels[i] = (byte*)p;
            _busy[i] = 0;
            WlLib.proxy_add_listener(buffer, WlLib.BufferListener, _busy + i);
        }
        finally { Libc.close(fd); }
    }

    int FreeBuffer()
    {
        for (int i = 0; i < _count; i++) if (_busy[i] == 0) return i;
        return -1;
    }

    public override VkResult Present(byte* pixels, ulong rowPitch, uint width, uint height)
    {
        lock (_s.Lock)
        {
            // Events already read: releases and frame callbacks that came since the last present.
            if (!_s.DispatchUntil(static _ => true, this, 0)) return VK_ERROR_SURFACE_LOST_KHR;
            if (_fifo && _frame[0] != 0)
            {
                long deadline = Stopwatch.GetTimestamp() + FrameCallbackWaitMs * Stopwatch.Frequency / 1000;
                if (!_s.DispatchUntil(static p => p._frame[0] == 0, this, deadline)) return VK_ERROR_SURFACE_LOST_KHR;
                if (_frame[0] != 0)
                {
                    if (!_warnedFrame) Log.Info($"the compositor sent no frame callback in {FrameCallbackWaitMs} ms (surface not shown?): FIFO goes on without it");
                    _warnedFrame = true;
                    WlLib.proxy_destroy(_frame[0]);
                    _frame[0] = 0;
                }
            }
            int b = FreeBuffer();
            if (b < 0 && _count < MaxBuffers)
            {
                try { AddBuffer(); }
                catch (WindowSystemException e) { Log.Warn($"vkQueuePresentKHR: {e.Message}"); return VK_ERROR_OUT_OF_HOST_MEMORY; }
                b = _count - 1;
            }
            if (b < 0)
            {
                long deadline = Stopwatch.GetTimestamp() + ReleaseWaitMs * Stopwatch.Frequency / 1000;
                if (!_s.DispatchUntil(static p => p.FreeBuffer() >= 0, this, deadline)) return VK_ERROR_SURFACE_LOST_KHR;
                b = FreeBuffer();
                if (b < 0)
                {
                    Log.Warn($"vkQueuePresentKHR: the compositor released none of {_count} wl_shm buffers in {ReleaseWaitMs} ms");
                    return VK_ERROR_SURFACE_LOST_KHR;
                }
            }

            var dst = _pixels[b];
            if (rowPitch == _stride) Buffer.MemoryCopy(pixels, dst, _bytes, _bytes);
            else for (uint y = 0; y < height; y++) Buffer.MemoryCopy(pixels + y * rowPitch, dst + y * _stride, _stride, _stride);

            ulong* a = stackalloc ulong[4];
            // wl_surface.attach (opcode 1, "?oii")
            a[0] = (ulong)_buffer[b]; a[1] = 0; a[2] = 0;
            WlLib.Marshal0(_s.SurfaceWrapper, 1, a);
            // wl_surface.damage_buffer (opcode 9, version 4) where the surface has it, else damage (opcode 2)
            a[0] = 0; a[1] = 0;
            if (_s.SurfaceVersion >= 4) { a[2] = _width; a[3] = _height; WlLib.Marshal0(_s.SurfaceWrapper, 9, a); }
            else { a[2] = int.MaxValue; a[3] = int.MaxValue; WlLib.Marshal0(_s.SurfaceWrapper, 2, a); }
            if (_fifo)
            {
                // wl_surface.frame (opcode 3, "n"): made through the wrapper, so its done event comes to the ICD's queue.
                a[0] = 0;
                var cb = WlLib.MarshalNew(_s.SurfaceWrapper, 3, WlLib.callback_interface, a);
                if (cb != 0)
                {
                    _frame[0] = cb;
                    WlLib.proxy_add_listener(cb, WlLib.CallbackListener, _frame);
                }
            }
            WlLib.Marshal0(_s.SurfaceWrapper, 6, null); // wl_surface.commit
            _busy[b] = 1;
            WlLib.display_flush(_s.Display);
            return WlLib.display_get_error(_s.Display) != 0 ? VK_ERROR_SURFACE_LOST_KHR : VK_SUCCESS;
        }
    }

    public override void Dispose()
    {
        lock (_s.Lock)
        {
            if (_frame[0] != 0) WlLib.proxy_destroy(_frame[0]);
            for (int i = 0; i < _count; i++)
            {
                WlLib.Marshal0(_buffer[i], 0, null, WlLib.MarshalFlagDestroy); // wl_buffer.destroy
                Libc.munmap(_pixels[i], _bytes);
            }
            _count = 0;
            WlLib.display_flush(_s.Display);
            NativeMemory.Free(_busy);
            NativeMemory.Free(_frame);
        }
    }
}

/// <summary>VK_KHR_wayland_surface's commands (vulkan_wayland.h, outside the generated registry subset).</summary>
internal static unsafe class WaylandSurfaces
{
    const int VK_STRUCTURE_TYPE_WAYLAND_SURFACE_CREATE_INFO_KHR = 1000006000;

    [StructLayout(LayoutKind.Sequential)]
    struct VkWaylandSurfaceCreateInfoKHR
    {
        public int sType;
        public void* pNext;
        public uint flags;
        public nint display;
        public nint surface;
    }

    public static nint Lookup(ReadOnlySpan<byte> name, bool physicalDeviceOnly)
    {
        if (name.SequenceEqual("vkGetPhysicalDeviceWaylandPresentationSupportKHR"u8))
            return (nint)(delegate* unmanaged<VkPhysicalDevice, uint, nint, uint>)&vkGetPhysicalDeviceWaylandPresentationSupportKHR;
        if (physicalDeviceOnly) return 0;
        if (name.SequenceEqual("vkCreateWaylandSurfaceKHR"u8))
            return (nint)(delegate* unmanaged<VkInstance, VkWaylandSurfaceCreateInfoKHR*, VkAllocationCallbacks*, VkSurfaceKHR*, VkResult>)&vkCreateWaylandSurfaceKHR;
        return 0;
    }

    [UnmanagedCallersOnly]
    static VkResult vkCreateWaylandSurfaceKHR(VkInstance instance, VkWaylandSurfaceCreateInfoKHR* pCreateInfo, VkAllocationCallbacks* pAllocator, VkSurfaceKHR* pSurface)
    {
        try
        {
            if (pCreateInfo == null || pSurface == null || pCreateInfo->sType != VK_STRUCTURE_TYPE_WAYLAND_SURFACE_CREATE_INFO_KHR
                || pCreateInfo->display == 0 || pCreateInfo->surface == 0)
            {
                Log.Warn("vkCreateWaylandSurfaceKHR: no VkWaylandSurfaceCreateInfoKHR with a wl_display and a wl_surface");
                return VK_ERROR_INITIALIZATION_FAILED;
            }
            return Entry.AddSurface(instance, new WaylandSurface(pCreateInfo->display, pCreateInfo->surface), pSurface);
        }
        catch (WindowSystemException e) { Log.Warn($"vkCreateWaylandSurfaceKHR: {e.Message}"); return VK_ERROR_INITIALIZATION_FAILED; }
        catch (Exception e) { Log.Error($"vkCreateWaylandSurfaceKHR failed: {e.GetType().Name}: {e.Message}"); return VK_ERROR_INITIALIZATION_FAILED; }
    }

    // The guest presents from memory it reads itself, with wl_shm, which every compositor offers.
    [UnmanagedCallersOnly]
    static uint vkGetPhysicalDeviceWaylandPresentationSupportKHR(VkPhysicalDevice physicalDevice, uint queueFamilyIndex, nint display) => 1;
}
