using System.Runtime.InteropServices;
using GuestIcd.Transport.Native;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkResult;

namespace GuestIcd.Icd;

/// <summary>libxcb and libxcb-shm, loaded the first time an X surface is created (headless applications never
/// load them). Function pointers typed by xcb's C prototypes; cookies are one-uint structs, returned and passed
/// in a register on x86-64 like a uint.</summary>
internal static unsafe class XcbLib
{
    static readonly WindowSystemLibrary s_library = new(TryLoad);

    public static delegate* unmanaged<nint, uint> generate_id;
    public static delegate* unmanaged<nint, uint, uint, uint, uint*, uint> create_gc;
    public static delegate* unmanaged<nint, uint, uint> free_gc;
    public static delegate* unmanaged<nint, byte, uint, uint, ushort, ushort, short, short, byte, byte, uint, byte*, uint> put_image;
    public static delegate* unmanaged<nint, uint, uint> get_geometry;
    public static delegate* unmanaged<nint, uint, nint*, GeometryReply*> get_geometry_reply;
    public static delegate* unmanaged<nint, int> flush;
    public static delegate* unmanaged<nint, int> connection_has_error;
    public static delegate* unmanaged<nint, uint> get_maximum_request_length;
    public static delegate* unmanaged<nint, uint> get_input_focus;
    public static delegate* unmanaged<nint, uint, nint*, void*> get_input_focus_reply;
    public static delegate* unmanaged<nint, uint, void*> request_check;
    // libxcb-shm (optional: without it, or without MIT-SHM on the server, images travel in xcb_put_image)
    public static delegate* unmanaged<nint, uint> shm_query_version;
    public static delegate* unmanaged<nint, uint, nint*, ShmVersionReply*> shm_query_version_reply;
    public static delegate* unmanaged<nint, uint, int, byte, uint> shm_attach_fd_checked;
    public static delegate* unmanaged<nint, uint, uint> shm_detach;
    public static delegate* unmanaged<nint, uint, uint, ushort, ushort, ushort, ushort, ushort, ushort, short, short, byte, byte, byte, uint, uint, uint> shm_put_image;

    [StructLayout(LayoutKind.Sequential)]
    public struct GeometryReply
    {
        public byte response_type, depth;
        public ushort sequence;
        public uint length, root;
        public short x, y;
        public ushort width, height, border_width;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct ShmVersionReply
    {
        public byte response_type, shared_pixmaps;
        public ushort sequence;
        public uint length;
        public ushort major_version, minor_version;
    }

    /// <summary>Loads libxcb (and libxcb-shm if present) once; throws with the reason when libxcb is missing.</summary>
    public static void Load() => s_library.Load();

    static string? TryLoad()
    {
        if (!NativeLibrary.TryLoad("libxcb.so.1", out var xcb)) return "libxcb.so.1 is not installed (apt-get install libxcb1)";
        nint F(nint lib, string name) => NativeLibrary.TryGetExport(lib, name, out var p) ? p : throw new WindowSystemException($"{name} missing from libxcb");
        try
        {
            generate_id = (delegate* unmanaged<nint, uint>)F(xcb, "xcb_generate_id");
            create_gc = (delegate* unmanaged<nint, uint, uint, uint, uint*, uint>)F(xcb, "xcb_create_gc");
            free_gc = (delegate* unmanaged<nint, uint, uint>)F(xcb, "xcb_free_gc");
            put_image = (delegate* unmanaged<nint, byte, uint, uint, ushort, ushort, short, short, byte, byte, uint, byte*, uint>)F(xcb, "xcb_put_image");
            get_geometry = (delegate* unmanaged<nint, uint, uint>)F(xcb, "xcb_get_geometry");
            get_geometry_reply = (delegate* unmanaged<nint, uint, nint*, GeometryReply*>)F(xcb, "xcb_get_geometry_reply");
            flush = (delegate* unmanaged<nint, int>)F(xcb, "xcb_flush");
            connection_has_error = (delegate* unmanaged<nint, int>)F(xcb, "xcb_connection_has_error");
            get_maximum_request_length = (delegate* unmanaged<nint, uint>)F(xcb, "xcb_get_maximum_request_length");
            get_input_focus = (delegate* unmanaged<nint, uint>)F(xcb, "xcb_get_input_focus");
            get_input_focus_reply = (delegate* unmanaged<nint, uint, nint*, void*>)F(xcb, "xcb_get_input_focus_reply");
            request_check = (delegate* unmanaged<nint, uint, void*>)F(xcb, "xcb_request_check");
        }
        catch (WindowSystemException e) { return e.Message; }
        if (NativeLibrary.TryLoad("libxcb-shm.so.0", out var shm)
            && NativeLibrary.TryGetExport(shm, "xcb_shm_query_version", out var qv)
            && NativeLibrary.TryGetExport(shm, "xcb_shm_query_version_reply", out var qvr)
            && NativeLibrary.TryGetExport(shm, "xcb_shm_attach_fd_checked", out var af)
            && NativeLibrary.TryGetExport(shm, "xcb_shm_detach", out var dt)
            && NativeLibrary.TryGetExport(shm, "xcb_shm_put_image", out var pi))
        {
            shm_query_version = (delegate* unmanaged<nint, uint>)qv;
            shm_query_version_reply = (delegate* unmanaged<nint, uint, nint*, ShmVersionReply*>)qvr;
            shm_attach_fd_checked = (delegate* unmanaged<nint, uint, int, byte, uint>)af;
            shm_detach = (delegate* unmanaged<nint, uint, uint>)dt;
            shm_put_image = (delegate* unmanaged<nint, uint, uint, ushort, ushort, ushort, ushort, ushort, ushort, short, short, byte, byte, byte, uint, uint, uint>)pi;
        }
        else Log.Info("libxcb-shm.so.0 not found: X presents travel in xcb_put_image requests");
        return null;
    }

    /// <summary>Whether the X server takes shared memory by file descriptor (MIT-SHM 1.2).</summary>
    public static bool ServerHasShmFd(nint c)
    {
        if (shm_query_version == null) return false;
        nint err = 0;
        var reply = shm_query_version_reply(c, shm_query_version(c), &err);
        if (err != 0) NativeMemory.Free((void*)err);
        if (reply == null) return false;
        bool ok = reply->major_version > 1 || (reply->major_version == 1 && reply->minor_version >= 2);
        NativeMemory.Free(reply);
        return ok;
    }
}

/// <summary>A VK_KHR_xcb_surface (or xlib, through its xcb connection): the application's window on the guest's
/// X server.</summary>
internal sealed unsafe class XcbSurface : GuestSurface
{
    public readonly nint Connection;
    public readonly uint Window;
    readonly string _kind;

    public XcbSurface(nint connection, uint window, string kind)
    {
        XcbLib.Load();
        Connection = connection;
        Window = window;
        _kind = kind;
    }

    public override string Kind => _kind;

    public override VkResult CurrentExtent(out uint width, out uint height)
    {
        width = height = 0;
        if (XcbLib.connection_has_error(Connection) != 0) return VK_ERROR_SURFACE_LOST_KHR;
        nint err = 0;
        var g = XcbLib.get_geometry_reply(Connection, XcbLib.get_geometry(Connection, Window), &err);
        if (err != 0) NativeMemory.Free((void*)err);
        if (g == null) return VK_ERROR_SURFACE_LOST_KHR; // the window is gone
        width = g->width;
        height = g->height;
        NativeMemory.Free(g);
        return VK_SUCCESS;
    }

    public byte Depth()
    {
        nint err = 0;
        var g = XcbLib.get_geometry_reply(Connection, XcbLib.get_geometry(Connection, Window), &err);
        if (err != 0) NativeMemory.Free((void*)err);
        if (g == null) throw new WindowSystemException($"window 0x{Window:X} is gone");
        byte d = g->depth;
        NativeMemory.Free(g);
        return d;
    }

    public override Presenter CreatePresenter(VkFormat format, uint width, uint height, VkPresentModeKHR mode) => new XcbPresenter(this, width, height);
}

/// <summary>Puts a swapchain's images on an X window: through a shared-memory segment (MIT-SHM, one guest-local
/// copy and no pixels through the X socket) where the server takes one, else in xcb_put_image requests sent
/// straight from the mapped image.</summary>
internal sealed unsafe class XcbPresenter : Presenter
{
    const byte ZPixmap = 2;
    readonly XcbSurface _s;
    readonly nint _c;
    readonly uint _gc;
    readonly byte _depth;
    readonly uint _width, _height;
    // MIT-SHM
    readonly uint _seg;
    readonly byte* _shm;
    readonly nuint _shmBytes;
    uint _pendingSync; // the get_input_focus sent after the last put: its reply means the server read the segment
    bool _syncPending;
    byte* _rows; // a tight copy for xcb_put_image when the image's rows are padded

    public XcbPresenter(XcbSurface s, uint width, uint height)
    {
        _s = s;
        _c = s.Connection;
        _width = width;
        _height = height;
        _depth = s.Depth();
        if (_depth is not (24 or 32)) throw new WindowSystemException($"window 0x{s.Window:X} has depth {_depth}; the ICD presents to 24- and 32-bit TrueColor windows");
        _gc = XcbLib.generate_id(_c);
        XcbLib.create_gc(_c, _gc, s.Window, 0, null);
        if (Environment.GetEnvironmentVariable("GUESTICD_X11_NO_SHM") != "1" && XcbLib.ServerHasShmFd(_c))
        {
            _shmBytes = (nuint)width * height * 4;
            int fd;
            fixed (byte* name = "guesticd-present"u8) fd = Libc.memfd_create(name, Libc.MFD_CLOEXEC); // u8 literals end in a NUL
            if (fd >= 0 && Libc.ftruncate(fd, (long)_shmBytes) == 0)
            {
                var p = Libc.mmap(null, _shmBytes, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, fd, 0);
                if (p != Libc.MAP_FAILED)
                {
                    _seg = XcbLib.generate_id(_c);
                    // xcb owns the descriptor from here and closes it once sent.
                    var err = XcbLib.request_check(_c, XcbLib.shm_attach_fd_checked(_c, _seg, fd, 1));
                    fd = -1;
                    if (err == null) _shm = (byte*)p;
                    else { NativeMemory.Free(err); Libc.munmap(p, _shmBytes); _seg = 0; }
                }
            }
            if (fd >= 0) Libc.close(fd);
        }
        Log.Info($"X11 presentation to window 0x{s.Window:X} (depth {_depth}) by {(_shm != null ? "MIT-SHM" : "xcb_put_image")}");
    }

    public bool UsesShm => _shm != null;

    public override VkResult Present(byte* pixels, ulong rowPitch, uint width, uint height)
    {
        if (XcbLib.connection_has_error(_c) != 0) return VK_ERROR_SURFACE_LOST_KHR;
        ulong tight = (ulong)width * 4;
        if (_shm != null)
        {
            WaitForServer();
            if (rowPitch == tight) Buffer.MemoryCopy(pixels, _shm, _shmBytes, tight * height);
            else for (uint y = 0; y < height; y++) Buffer.MemoryCopy(pixels + y * rowPitch, _shm + y * tight, tight, tight);
            XcbLib.shm_put_image(_c, _s.Window, _gc, (ushort)width, (ushort)height, 0, 0, (ushort)width, (ushort)height, 0, 0, _depth, ZPixmap, 0, _seg, 0);
            _pendingSync = XcbLib.get_input_focus(_c);
            _syncPending = true;
        }
        else
        {
            byte* src = pixels;
            if (rowPitch != tight)
            {
                if (_rows == null) _rows = (byte*)NativeMemory.Alloc((nuint)(tight * _height));
                for (uint y = 0; y < height; y++) Buffer.MemoryCopy(pixels + y * rowPitch, _rows + y * tight, tight, tight);
                src = _rows;
            }
            // One request holds at most the server's maximum request length (4-byte units), header included.
            ulong maxBytes = (ulong)XcbLib.get_maximum_request_length(_c) * 4 - 64;
            uint band = (uint)Math.Max(1, Math.Min(height, maxBytes / tight));
            for (uint y = 0; y < height; y += band)
            {
                uint rows = Math.Min(band, height - y);
                XcbLib.put_image(_c, ZPixmap, _s.Window, _gc, (ushort)width, (ushort)rows, 0, (short)y, 0, _depth, (uint)(rows * tight), src + y * tight);
            }
        }
        XcbLib.flush(_c);
        return VK_SUCCESS;
    }

    void WaitForServer()
    {
        if (!_syncPending) return;
        nint err = 0;
        var r = XcbLib.get_input_focus_reply(_c, _pendingSync, &err);
        if (r != null) NativeMemory.Free(r);
        if (err != 0) NativeMemory.Free((void*)err);
        _syncPending = false;
    }

    public override void Dispose()
    {
        if (XcbLib.connection_has_error(_c) == 0)
        {
            WaitForServer();
            if (_shm != null) XcbLib.shm_detach(_c, _seg);
            XcbLib.free_gc(_c, _gc);
            XcbLib.flush(_c);
        }
        if (_shm != null) Libc.munmap(_shm, _shmBytes);
        if (_rows != null) NativeMemory.Free(_rows);
    }
}
