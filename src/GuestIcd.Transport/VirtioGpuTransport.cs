using System.Buffers.Binary;
using System.Runtime.InteropServices;
using GuestIcd.Protocol;
using GuestIcd.Transport.Native;

namespace GuestIcd.Transport;

/// <summary>
/// Guest end of the virtio-gpu transport (<c>GUESTICD_TRANSPORT=virtio-gpu[:/dev/dri/renderDN]</c>): only the
/// kernel's virtio-gpu DRM UAPI. The render node must offer the GuestIcd capset (id 24); its protocol
/// version is checked before a context exists. One DRM context per process; its rings and HOST_VISIBLE
/// heap live in one buffer resource whose guest pages the host maps directly (zero copy).
/// </summary>
/// <remarks>
/// <para>Resource layout: a 4096-byte control page (u32 at 0: the host writes 1 once INIT took, 2 when the session has ended),
/// ring guest→host, ring host→guest, heap. The context's SUBMIT_3D commands: NOP {u32 0}, INIT {u32 1, u32 resource,
/// u32 ring bytes, u32 0, u64 heap bytes}, DOORBELL {u32 2} (new bytes in the ring) and WAIT {u32 3}, whose
/// fence the host signals when it rings back (the fence may also signal early; the guest then re-checks).</para>
/// <para>The rings are <see cref="UnixRingTransport"/>'s, with a socketpair for doorbells whose other end a
/// relay thread turns into DOORBELL submissions, and WAIT fences into bytes.</para>
/// <para>CONTEXT_INIT is used when the device offers it (one ring); otherwise the kernel makes the context
/// on first use. Where the device offers blobs as well (crosvm, a QEMU frontend that passes RESOURCE_BLOB on),
/// the resource is a guest-memory blob (VIRTGPU_BLOB_MEM_GUEST, mappable): a plain memory object, no 3D
/// format or bind. Otherwise it is a 3D buffer resource with the kernel's attached backing. Either way the
/// host maps the resource's guest pages; what the device offers decides, at run time.</para>
/// </remarks>
public static unsafe partial class VirtioGpuTransport
{
    public const uint CapsetId = 24;
    public const uint CapsetMagic = 0x44434947;
    public const int CapsetSize = 64;
    internal const uint OpNop = 0, OpInit = 1, OpDoorbell = 2, OpWait = 3;
    internal const int ControlBytes = 4096;
    /// <summary>The control page's state word, written by the host: running once INIT took, ended when the session is over.</summary>
    internal const uint ControlRunning = 1, ControlEnded = 2;
    /// <summary>The heap is pinned guest RAM (the kernel backs the resource at creation), so it stays modest.</summary>
    public const long MaxHeapBytes = 128L << 20;
    public const int RingBytes = 1 << 20;

    /// <summary>True when a render node offers our capset (what <c>auto</c> checks first).</summary>
    public static bool Present() => FindNode(out _) is not null;

    /// <summary>Connects through <paramref name="renderNode"/> (null: the first render node offering our capset).</summary>
    /// <exception cref="TransportClosedException">No such node, another protocol major, or the device refused a step; one line says which.</exception>
    /// <param name="debug">Where to say which path was taken (null: nowhere).</param>
    public static UnixRingTransport Connect(string? renderNode, int timeoutMs, long heapBytes, Action<string>? debug = null)
    {
        _ = timeoutMs; // every step is a local ioctl; the host answers INIT's fence synchronously
        string? reason = null;
        string node = string.IsNullOrEmpty(renderNode) ? FindNode(out reason) ?? throw new TransportClosedException(
            $"virtio-gpu: no render node offers the GuestIcd capset ({reason ?? "no /dev/dri/renderD*"})") : renderNode;
        int fd = Open(node);
        byte* region = null;
        nuint size = 0;
        int g0 = -1, g1 = -1;
        try
        {
            if (!QueryCapset(fd, out ushort major, out ushort minor, out string identity, out reason))
                throw new TransportClosedException($"virtio-gpu {node}: {reason}");
            if (major != Handshake.ProtocolMajor)
                throw new TransportClosedException($"virtio-gpu {node}: the host ({identity}) speaks protocol {major}.{minor}; this guest speaks {Handshake.ProtocolMajor}.{Handshake.ProtocolMinor}");
            bool contextInit = GetParam(fd, ParamContextInit) == 1;
            // Blobs only in an explicit context: a blob made before the implicit context exists is attached to it
            // only by the kernel's lazy path, which drivers without CONTEXT_INIT have not always had.
            bool blobOffered = GetParam(fd, ParamResourceBlob) == 1, blob = contextInit && blobOffered;
            if (contextInit)
            {
                var sp = stackalloc ulong[4] { 1 /* CAPSET_ID */, CapsetId, 2 /* NUM_RINGS */, 1 };
                var ci = new ContextInit { NumParams = 2, Params = (ulong)sp };
                if (Ioctl(fd, IoctlContextInit, &ci) != 0)
                    throw new TransportClosedException($"virtio-gpu {node}: CONTEXT_INIT with capset {CapsetId} failed ({Libc.Describe(Marshal.GetLastPInvokeError())})");
            }
            heapBytes = Math.Min(heapBytes, MaxHeapBytes) & ~4095L;
            long total = ControlBytes + UnixRingTransport.SharedSize(RingBytes) + heapBytes;
            uint boHandle, resHandle;
            if (blob)
            {
                var cb = new ResourceCreateBlob { BlobMem = BlobMemGuest, BlobFlags = BlobFlagUseMappable, Size = (ulong)total };
                if (Ioctl(fd, IoctlResourceCreateBlob, &cb) != 0)
                    throw new TransportClosedException($"virtio-gpu {node}: creating the {total >> 20} MiB shared blob failed ({Libc.Describe(Marshal.GetLastPInvokeError())}; GUESTICD_HEAP_MB sets the heap)");
                (boHandle, resHandle) = (cb.BoHandle, cb.ResHandle);
            }
            else
            {
                var rc = new ResourceCreate { Target = 0, Format = 64, Bind = 0x10, Width = (uint)total, Height = 1, Depth = 1, ArraySize = 1, Size = (uint)total, Stride = (uint)total };
                if (Ioctl(fd, IoctlResourceCreate, &rc) != 0)
                    throw new TransportClosedException($"virtio-gpu {node}: creating the {total >> 20} MiB shared resource failed ({Libc.Describe(Marshal.GetLastPInvokeError())}; GUESTICD_HEAP_MB sets the heap)");
                (boHandle, resHandle) = (rc.BoHandle, rc.ResHandle);
            }
            string path = blob ? "a guest-memory blob" : "a 3D buffer resource";
            debug?.Invoke($"virtio-gpu {node}: ring and heap in {path} ({total} bytes, resource {resHandle}; context init {(contextInit ? "yes" : "no")}, blobs {(blobOffered ? "offered" : "not offered")})");
            var map = new Map { Handle = boHandle };
            if (Ioctl(fd, IoctlMap, &map) != 0)
                throw new TransportClosedException($"virtio-gpu {node}: DRM_IOCTL_VIRTGPU_MAP failed ({Libc.Describe(Marshal.GetLastPInvokeError())})");
            size = (nuint)total;
            region = (byte*)Libc.mmap(null, size, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, fd, (long)map.Offset);
            if (region == Libc.MAP_FAILED)
            {
                region = null;
                throw new TransportClosedException($"virtio-gpu {node}: mapping the shared resource failed ({Libc.Describe(Libc.Errno)})");
            }
            SharedRing.Initialize(region + ControlBytes);
            SharedRing.Initialize(region + ControlBytes + SharedRing.RegionSize(RingBytes));
            Span<byte> init = stackalloc byte[24];
            BinaryPrimitives.WriteUInt32LittleEndian(init, OpInit);
            BinaryPrimitives.WriteUInt32LittleEndian(init[4..], resHandle);
            BinaryPrimitives.WriteUInt32LittleEndian(init[8..], RingBytes);
            BinaryPrimitives.WriteUInt64LittleEndian(init[16..], (ulong)heapBytes);
            uint bo = boHandle;
            int fence = Submit(fd, init, &bo, 1, wantFence: true);
            if (fence < 0 || !WaitFence(fence, 5000) || Volatile.Read(ref *(uint*)region) != ControlRunning)
                throw new TransportClosedException($"virtio-gpu {node}: the host did not start a session");
            int* sv = stackalloc int[2];
            if (Libc.socketpair(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC, 0, sv) != 0)
                throw new TransportClosedException($"virtio-gpu: socketpair failed ({Libc.Describe(Libc.Errno)})");
            g0 = sv[0];
            g1 = sv[1];
            var transport = new UnixRingTransport(g0, region + ControlBytes, size - ControlBytes, RingBytes, isHost: false,
                $"virtio-gpu:{node} ({identity}, ring {RingBytes} B, heap {heapBytes >> 20} MiB, {(blob ? "blob" : "3D resource")})", heapBytes);
            var relay = new Relay(fd, g1, region);
            new Thread(relay.Run) { IsBackground = true, Name = "guesticd virtio-gpu relay" }.Start();
            fd = g0 = g1 = -1;
            region = null;
            return transport;
        }
        finally
        {
            if (region != null) Libc.munmap(region, size);
            if (g0 >= 0) Libc.close(g0);
            if (g1 >= 0) Libc.close(g1);
            if (fd >= 0) Libc.close(fd);
        }
    }

    /// <summary>Turns the transport's doorbell bytes into DOORBELL submissions and the host's WAIT fences
    /// into bytes; ends (closing its socket end: the guest sees the host gone) when the host session ends,
    /// and closes the DRM file when the guest side closes, which destroys the context on the host.</summary>
    /// <summary>How long the relay lets the device be quiet before it checks the host is alive (a NOP whose
    /// fence must signal within <see cref="LivenessTimeoutMs"/>): a hostsim that died answers nothing, and
    /// the guest's calls must then fail (VK_ERROR_DEVICE_LOST) rather than wait forever.</summary>
    internal const int IdleProbeMs = 300, LivenessTimeoutMs = 700;

    private sealed class Relay(int drm, int socket, byte* control)
    {
        public void Run()
        {
            var pfd = stackalloc Libc.PollFd[3];
            byte* buffer = stackalloc byte[256];
            Span<byte> doorbell = stackalloc byte[4];
            Span<byte> wait = stackalloc byte[4];
            Span<byte> nop = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(doorbell, OpDoorbell);
            BinaryPrimitives.WriteUInt32LittleEndian(wait, OpWait);
            BinaryPrimitives.WriteUInt32LittleEndian(nop, OpNop);
            int fence = Submit(drm, wait, null, 0, wantFence: true);
            int probe = -1;
            long probeDeadline = 0;
            byte bell = 1;
            while (fence >= 0)
            {
                pfd[0] = new Libc.PollFd { fd = socket, events = Libc.POLLIN };
                pfd[1] = new Libc.PollFd { fd = fence, events = Libc.POLLIN };
                pfd[2] = new Libc.PollFd { fd = probe, events = Libc.POLLIN };
                int timeout = probe >= 0 ? (int)Math.Max(0, probeDeadline - Environment.TickCount64) : IdleProbeMs;
                int r = Libc.poll(pfd, probe >= 0 ? 3u : 2u, timeout);
                if (r < 0)
                {
                    if (Libc.Errno == Libc.EINTR) continue;
                    break;
                }
                if (r == 0)
                {
                    if (probe >= 0)
                        break; // the host did not answer a NOP in time: it is gone
                    probe = Submit(drm, nop, null, 0, wantFence: true);
                    if (probe < 0)
                        break;
                    probeDeadline = Environment.TickCount64 + LivenessTimeoutMs;
                    continue;
                }
                if (probe >= 0 && pfd[2].revents != 0)
                {
                    Libc.close(probe);
                    probe = -1;
                }
                if (pfd[0].revents != 0)
                {
                    nint n = Libc.read(socket, buffer, 256);
                    if (n == 0 || (n < 0 && Libc.Errno is not (Libc.EINTR or Libc.EAGAIN)))
                        break; // the transport is gone: this process is done with the device
                    if (n > 0 && Submit(drm, doorbell, null, 0, wantFence: false) == -2)
                        break;
                }
                if (pfd[1].revents != 0)
                {
                    Libc.close(fence);
                    fence = -1;
                    if (Volatile.Read(ref *(uint*)control) == ControlEnded)
                        break; // the host ended the session
                    Libc.send(socket, &bell, 1, Libc.MSG_DONTWAIT | Libc.MSG_NOSIGNAL);
                    fence = Submit(drm, wait, null, 0, wantFence: true);
                }
            }
            if (fence >= 0) Libc.close(fence);
            if (probe >= 0) Libc.close(probe);
            Libc.shutdown(socket, Libc.SHUT_RDWR);
            Libc.close(socket);
            Libc.munmap(control, ControlBytes);
            Libc.close(drm);
        }
    }

    // ---- render nodes and the capset ----------------------------------------------------------------

    private static string? FindNode(out string? reason)
    {
        reason = null;
        if (!Directory.Exists("/dev/dri"))
            return null;
        foreach (string node in Directory.GetFiles("/dev/dri", "renderD*").Order(StringComparer.Ordinal))
        {
            int fd;
            try { fd = Open(node); }
            catch (TransportClosedException e) { reason = e.Message; continue; }
            bool ours = QueryCapset(fd, out _, out _, out _, out reason);
            Libc.close(fd);
            if (ours)
                return node;
        }
        return null;
    }

    private static bool QueryCapset(int fd, out ushort major, out ushort minor, out string identity, out string? reason)
    {
        major = minor = 0;
        identity = "";
        reason = null;
        // Driver-private ioctl numbers mean other things to other drivers: ask only virtio_gpu.
        byte* name = stackalloc byte[32];
        new Span<byte>(name, 32).Clear();
        var version = new DrmVersion { NameLen = 31, Name = (ulong)name };
        if (Ioctl(fd, IoctlVersion, &version) != 0 || !new ReadOnlySpan<byte>(name, 32).StartsWith("virtio_gpu\0"u8))
        {
            reason = "not a virtio-gpu node";
            return false;
        }
        if (GetParam(fd, Param3DFeatures) != 1)
        {
            reason = "not a virtio-gpu node with 3D (VIRGL) features";
            return false;
        }
        byte* caps = stackalloc byte[CapsetSize];
        new Span<byte>(caps, CapsetSize).Clear();
        var gc = new GetCaps { CapSetId = CapsetId, CapSetVer = 1, Addr = (ulong)caps, Size = CapsetSize };
        if (Ioctl(fd, IoctlGetCaps, &gc) != 0)
        {
            reason = $"no GuestIcd capset {CapsetId} ({Libc.Describe(Marshal.GetLastPInvokeError())})";
            return false;
        }
        var c = new ReadOnlySpan<byte>(caps, CapsetSize);
        if (BinaryPrimitives.ReadUInt32LittleEndian(c) != CapsetMagic)
        {
            reason = $"capset {CapsetId} is not GuestIcd's";
            return false;
        }
        major = BinaryPrimitives.ReadUInt16LittleEndian(c[8..]);
        minor = BinaryPrimitives.ReadUInt16LittleEndian(c[10..]);
        var id = c.Slice(16, 48);
        int nul = id.IndexOf((byte)0);
        identity = System.Text.Encoding.UTF8.GetString(nul < 0 ? id : id[..nul]);
        return true;
    }

    private static int Open(string node)
    {
        int fd;
        fixed (byte* p = System.Text.Encoding.UTF8.GetBytes(node + "\0"))
            fd = Libc.open(p, Libc.O_RDWR | Libc.O_CLOEXEC, 0);
        if (fd < 0)
            throw new TransportClosedException($"virtio-gpu: cannot open {node} ({Libc.Describe(Libc.Errno)})");
        return fd;
    }

    private static ulong GetParam(int fd, ulong param)
    {
        ulong value = 0;
        var gp = new GetParamArgs { Param = param, Value = (ulong)&value };
        return Ioctl(fd, IoctlGetParam, &gp) == 0 ? value : 0;
    }

    /// <summary>One EXECBUFFER; returns its out-fence fd (wantFence), 0 (no fence), or -2 on failure.</summary>
    private static int Submit(int fd, ReadOnlySpan<byte> command, uint* bos, uint boCount, bool wantFence)
    {
        fixed (byte* c = command)
        {
            var eb = new ExecBuffer
            {
                Flags = wantFence ? ExecbufFenceFdOut : 0, Size = (uint)command.Length, Command = (ulong)c,
                BoHandles = (ulong)bos, NumBoHandles = boCount, FenceFd = -1,
            };
            if (Ioctl(fd, IoctlExecBuffer, &eb) != 0)
                return -2;
            return wantFence ? eb.FenceFd : 0;
        }
    }

    private static bool WaitFence(int fence, int timeoutMs)
    {
        var pfd = new Libc.PollFd { fd = fence, events = Libc.POLLIN };
        int r = Libc.poll(&pfd, 1, timeoutMs);
        Libc.close(fence);
        return r == 1;
    }

    // ---- virtgpu_drm.h (Linux 6.1) --------------------------------------------------------------------

    private const ulong Param3DFeatures = 1, ParamResourceBlob = 3, ParamContextInit = 6;
    private const uint BlobMemGuest = 1, BlobFlagUseMappable = 1;
    private const uint ExecbufFenceFdOut = 2;

    private static uint Iowr(uint nr, int size) => (3u << 30) | ((uint)size << 16) | ((uint)'d' << 8) | (0x40 + nr);

    private static readonly uint IoctlVersion = (3u << 30) | ((uint)sizeof(DrmVersion) << 16) | ((uint)'d' << 8);
    private static readonly uint IoctlMap = Iowr(0x01, sizeof(Map));
    private static readonly uint IoctlExecBuffer = Iowr(0x02, sizeof(ExecBuffer));
    private static readonly uint IoctlGetParam = Iowr(0x03, sizeof(GetParamArgs));
    private static readonly uint IoctlResourceCreate = Iowr(0x04, sizeof(ResourceCreate));
    private static readonly uint IoctlGetCaps = Iowr(0x09, sizeof(GetCaps));
    private static readonly uint IoctlResourceCreateBlob = Iowr(0x0a, sizeof(ResourceCreateBlob));
    private static readonly uint IoctlContextInit = Iowr(0x0b, sizeof(ContextInit));

    [StructLayout(LayoutKind.Sequential)] private struct Map { public ulong Offset; public uint Handle, Pad; }
    [StructLayout(LayoutKind.Sequential)]
    private struct DrmVersion { public int Major, Minor, Patch, Pad; public ulong NameLen, Name, DateLen, Date, DescLen, Desc; }
    [StructLayout(LayoutKind.Sequential)]
    private struct ExecBuffer { public uint Flags, Size; public ulong Command, BoHandles; public uint NumBoHandles; public int FenceFd; public uint RingIdx, Pad; }
    [StructLayout(LayoutKind.Sequential)] private struct GetParamArgs { public ulong Param, Value; }
    [StructLayout(LayoutKind.Sequential)]
    private struct ResourceCreate { public uint Target, Format, Bind, Width, Height, Depth, ArraySize, LastLevel, NrSamples, Flags, BoHandle, ResHandle, Size, Stride; }
    [StructLayout(LayoutKind.Sequential)] private struct GetCaps { public uint CapSetId, CapSetVer; public ulong Addr; public uint Size, Pad; }
    [StructLayout(LayoutKind.Sequential)] private struct ContextInit { public uint NumParams, Pad; public ulong Params; }
    /// <summary>struct drm_virtgpu_resource_create_blob (Linux 5.11+; 48 bytes). cmd/cmd_size/blob_id are for host blobs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct ResourceCreateBlob { public uint BlobMem, BlobFlags, BoHandle, ResHandle; public ulong Size; public uint Pad, CmdSize; public ulong Cmd, BlobId; }

    /// <summary>The UAPI layouts this file relies on, as (name, size, offsets of the members that the kernel
    /// reads or writes); tests compare them with the kernel header's (offsetof in C).</summary>
    internal static IEnumerable<(string Name, int Size, (string Member, int Offset)[] Members)> UapiLayouts()
    {
        yield return ("drm_virtgpu_map", System.Runtime.CompilerServices.Unsafe.SizeOf<Map>(), [("offset", (int)Marshal.OffsetOf<Map>(nameof(Map.Offset))), ("handle", (int)Marshal.OffsetOf<Map>(nameof(Map.Handle)))]);
        yield return ("drm_virtgpu_getparam", System.Runtime.CompilerServices.Unsafe.SizeOf<GetParamArgs>(), [("param", (int)Marshal.OffsetOf<GetParamArgs>(nameof(GetParamArgs.Param))), ("value", (int)Marshal.OffsetOf<GetParamArgs>(nameof(GetParamArgs.Value)))]);
        yield return ("drm_virtgpu_get_caps", System.Runtime.CompilerServices.Unsafe.SizeOf<GetCaps>(), [("addr", (int)Marshal.OffsetOf<GetCaps>(nameof(GetCaps.Addr))), ("size", (int)Marshal.OffsetOf<GetCaps>(nameof(GetCaps.Size)))]);
        yield return ("drm_virtgpu_resource_create", System.Runtime.CompilerServices.Unsafe.SizeOf<ResourceCreate>(), [("bo_handle", (int)Marshal.OffsetOf<ResourceCreate>(nameof(ResourceCreate.BoHandle))),
            ("res_handle", (int)Marshal.OffsetOf<ResourceCreate>(nameof(ResourceCreate.ResHandle))), ("stride", (int)Marshal.OffsetOf<ResourceCreate>(nameof(ResourceCreate.Stride)))]);
        yield return ("drm_virtgpu_resource_create_blob", System.Runtime.CompilerServices.Unsafe.SizeOf<ResourceCreateBlob>(), [("blob_mem", (int)Marshal.OffsetOf<ResourceCreateBlob>(nameof(ResourceCreateBlob.BlobMem))),
            ("bo_handle", (int)Marshal.OffsetOf<ResourceCreateBlob>(nameof(ResourceCreateBlob.BoHandle))),
            ("res_handle", (int)Marshal.OffsetOf<ResourceCreateBlob>(nameof(ResourceCreateBlob.ResHandle))),
            ("size", (int)Marshal.OffsetOf<ResourceCreateBlob>(nameof(ResourceCreateBlob.Size))),
            ("cmd_size", (int)Marshal.OffsetOf<ResourceCreateBlob>(nameof(ResourceCreateBlob.CmdSize))),
            ("blob_id", (int)Marshal.OffsetOf<ResourceCreateBlob>(nameof(ResourceCreateBlob.BlobId)))]);
        yield return ("drm_virtgpu_context_init", System.Runtime.CompilerServices.Unsafe.SizeOf<ContextInit>(), [("ctx_set_params", (int)Marshal.OffsetOf<ContextInit>(nameof(ContextInit.Params)))]);
    }

    // ioctl is variadic; on x86-64 SysV a pointer vararg travels like a fixed argument.
    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int ioctl(int fd, nuint request, void* arg);

    private static int Ioctl<T>(int fd, uint request, T* arg) where T : unmanaged
    {
        int r;
        do r = ioctl(fd, request, arg);
        while (r != 0 && Marshal.GetLastPInvokeError() == Libc.EINTR);
        return r;
    }
}
