using GuestIcd.Transport.Native;
using System.Buffers.Binary;
using Microsoft.Extensions.Logging;

namespace GuestIcd.VirtioGpu;

/// <summary>
/// One frontend (one QEMU, one VM) on the vhost-user socket: the message loop, the memory table, the
/// vrings and their kick/call eventfds, around one <see cref="VirtioGpuDevice"/>. Runs on one thread;
/// a malformed message ends this connection with a logged reason and nothing else.
/// </summary>
public sealed unsafe class VhostUserConnection : IDisposable
{
    private sealed class Vring
    {
        public ushort Num;
        public ulong DescUva, UsedUva, AvailUva;
        public bool HasAddress;
        public ushort Base;
        public int Kick = -1, Call = -1, Err = -1;
        public bool Enabled, Started, Broken;
        public SplitVirtqueue? Queue;
    }

    private readonly int _fd;
    private readonly int _wakeFd;
    private readonly ILogger _log;
    private readonly VirtioGpuDevice _device;
    private readonly Vring[] _vrings = [new(), new()];
    private readonly byte[] _payload = new byte[VhostUser.MaxPayload];
    private readonly int[] _fds = new int[VhostUser.MaxFds];
    private int _fdCount;
    private ulong _ackedFeatures;
    private ulong _protocolFeatures;
    private GuestMemory _memory = GuestMemory.Empty;
    private int _gpuSocket = -1;
    private volatile bool _stop;
    private bool _disposed;

    /// <param name="fd">The accepted socket; this object owns and closes it.</param>
    public VhostUserConnection(int fd, string description, VirtioGpuOptions options, ILogger log, IGpuContextHost? host)
    {
        _fd = fd;
        Description = description;
        _log = log;
        _device = new VirtioGpuDevice(options, log, host);
        _wakeFd = Libc.eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK);
        if (_wakeFd < 0)
            throw new IOException($"eventfd failed ({Libc.Describe(Libc.Errno)})");
    }

    public string Description { get; }

    public VirtioGpuDevice Device => _device;

    /// <summary>Features the backend offers: the transport's and the device's.</summary>
    public ulong OfferedFeatures => (1UL << VhostUser.FeatureVersion1) | (1UL << VhostUser.FeatureProtocolFeatures)
        | (1UL << VhostUser.FeatureIndirectDesc) | (1UL << VhostUser.FeatureEventIdx) | _device.Features;

    public static ulong OfferedProtocolFeatures =>
        (1UL << VhostUser.ProtocolReplyAck) | (1UL << VhostUser.ProtocolConfig) | (1UL << VhostUser.ProtocolResetDevice);

    /// <summary>Ends <see cref="Run"/> from another thread.</summary>
    public void Stop()
    {
        _stop = true;
        Native.Signal(_wakeFd);
    }

    /// <summary>Serves the frontend until it disconnects, breaks the protocol, or <see cref="Stop"/>.
    /// Returns why it ended.</summary>
    public string Run()
    {
        var fds = new Libc.PollFd[2 + 2 * VirtioGpuDevice.QueueCount];
        var wakes = new List<(int Fd, uint Context)>();
        try
        {
            while (!_stop)
            {
                int n = 0;
                fds[n++] = new Libc.PollFd { fd = _fd, events = Libc.POLLIN };
                fds[n++] = new Libc.PollFd { fd = _wakeFd, events = Libc.POLLIN };
                for (int i = 0; i < _vrings.Length; i++)
                    if (_vrings[i].Kick >= 0 && Runnable(_vrings[i]))
                        fds[n++] = new Libc.PollFd { fd = _vrings[i].Kick, events = Libc.POLLIN };
                int kicks = n;
                _device.CollectWakeFds(wakes);
                if (fds.Length < n + wakes.Count)
                    Array.Resize(ref fds, n + wakes.Count + 8);
                foreach (var (fd, _) in wakes)
                    fds[n++] = new Libc.PollFd { fd = fd, events = Libc.POLLIN };
                int r;
                fixed (Libc.PollFd* p = fds)
                    r = Libc.poll(p, (nuint)n, -1);
                if (r < 0)
                {
                    int errno = Libc.Errno;
                    if (errno == Libc.EINTR)
                        continue;
                    return $"poll failed ({Libc.Describe(errno)})";
                }
                if (fds[1].revents != 0)
                    Native.Drain(_wakeFd);
                bool woke = false;
                for (int k = kicks; k < n; k++)
                    if (fds[k].revents != 0)
                        woke |= _device.Wake(wakes[k - kicks].Context);
                if (woke)
                    SignalControl();
                for (int k = 2; k < kicks; k++)
                {
                    if (fds[k].revents == 0)
                        continue;
                    Native.Drain(fds[k].fd);
                    for (int i = 0; i < _vrings.Length; i++)
                        if (_vrings[i].Kick == fds[k].fd)
                            Service(i);
                }
                if ((fds[0].revents & (Libc.POLLIN | Libc.POLLHUP | Libc.POLLERR)) != 0)
                {
                    string? end = HandleMessage();
                    if (end is not null)
                        return end;
                }
            }
            return "stopped";
        }
        catch (VhostUserProtocolException e)
        {
            return e.Message;
        }
    }

    private void SignalControl()
    {
        var v = _vrings[VirtioGpuDevice.ControlQueue];
        if (v.Queue is not null && v.Queue.WantsInterrupt)
            Native.Signal(v.Call);
    }

    /// <summary>Held answers go out before a ring or the memory table changes under them.</summary>
    private void AnswerHeld()
    {
        if (_device.AnswerAllHeld())
        {
            var v = _vrings[VirtioGpuDevice.ControlQueue];
            Native.Signal(v.Call);
        }
    }

    private static bool Runnable(Vring v) => v.Started && v.Enabled && !v.Broken;

    /// <summary>Processes a queue's available requests and interrupts the driver when it wants it.</summary>
    private void Service(int index)
    {
        var v = _vrings[index];
        if (!Runnable(v))
            return;
        if (v.Queue is null && !BuildQueue(index, v))
            return;
        bool ok = _device.Process(index, v.Queue!, out bool signal);
        if (!ok)
            v.Broken = true;
        if (signal && v.Queue!.WantsInterrupt)
            Native.Signal(v.Call);
    }

    private bool BuildQueue(int index, Vring v)
    {
        byte* desc = v.HasAddress ? _memory.TranslateFrontend(v.DescUva, SplitVirtqueue.DescBytes(v.Num)) : null;
        byte* avail = v.HasAddress ? _memory.TranslateFrontend(v.AvailUva, SplitVirtqueue.AvailBytes(v.Num)) : null;
        byte* used = v.HasAddress ? _memory.TranslateFrontend(v.UsedUva, SplitVirtqueue.UsedBytes(v.Num)) : null;
        if (v.Num == 0 || desc == null || avail == null || used == null)
        {
            v.Broken = true;
            _log.LogError("vhost-user-gpu {Peer}: queue {Queue} not started: its rings (size {Num}) are not inside guest memory", Description, index, v.Num);
            return false;
        }
        v.Queue = new SplitVirtqueue(_memory, v.Num, desc, avail, used, v.Base, (ulong)_device.MaxRequestBytes, 1 << 20)
        {
            IndirectAllowed = (_ackedFeatures & (1UL << VhostUser.FeatureIndirectDesc)) != 0,
            EventIndex = (_ackedFeatures & (1UL << VhostUser.FeatureEventIdx)) != 0,
        };
        return true;
    }

    // ---- messages ----------------------------------------------------------------------------------

    /// <summary>Reads and handles one message; returns why the connection ends, or null.</summary>
    private string? HandleMessage()
    {
        Span<byte> header = stackalloc byte[VhostUser.HeaderSize];
        _fdCount = 0;
        try
        {
            if (!ReceiveHeader(header))
                return "the frontend closed the connection";
            uint request = BinaryPrimitives.ReadUInt32LittleEndian(header);
            uint flags = BinaryPrimitives.ReadUInt32LittleEndian(header[4..]);
            uint size = BinaryPrimitives.ReadUInt32LittleEndian(header[8..]);
            if ((flags & VhostUser.VersionMask) != VhostUser.FlagVersion)
                throw new VhostUserProtocolException($"{VhostUser.Name(request)} has protocol version {flags & VhostUser.VersionMask}, not 1");
            if (size > VhostUser.MaxPayload)
                throw new VhostUserProtocolException($"{VhostUser.Name(request)} claims a {size}-byte payload (at most {VhostUser.MaxPayload})");
            ReceiveExactly(_payload.AsSpan(0, (int)size));
            Dispatch(request, flags, _payload.AsSpan(0, (int)size));
            return null;
        }
        finally
        {
            // Descriptors a message brought and nothing took are not kept.
            for (int i = 0; i < _fdCount; i++)
                if (_fds[i] >= 0)
                    Libc.close(_fds[i]);
            _fdCount = 0;
        }
    }

    private int TakeFd()
    {
        for (int i = 0; i < _fdCount; i++)
        {
            if (_fds[i] >= 0)
            {
                int fd = _fds[i];
                _fds[i] = -1;
                return fd;
            }
        }
        return -1;
    }

    private int RemainingFds()
    {
        int n = 0;
        for (int i = 0; i < _fdCount; i++)
            if (_fds[i] >= 0) n++;
        return n;
    }

    private static void Expect(uint request, ReadOnlySpan<byte> p, int size)
    {
        if (p.Length != size)
            throw new VhostUserProtocolException($"{VhostUser.Name(request)} has a {p.Length}-byte payload, {size} expected");
    }

    private Vring RingOf(uint request, uint index)
    {
        if (index >= _vrings.Length)
            throw new VhostUserProtocolException($"{VhostUser.Name(request)} names queue {index}; the device has {_vrings.Length}");
        return _vrings[index];
    }

    private void Dispatch(uint request, uint flags, ReadOnlySpan<byte> p)
    {
        bool replied = false;
        bool ok = true;
        Span<byte> reply = stackalloc byte[VhostUser.MaxConfigSize + 12];
        switch (request)
        {
            case VhostUser.GetFeatures:
                BinaryPrimitives.WriteUInt64LittleEndian(reply, OfferedFeatures);
                Reply(request, reply[..8]);
                replied = true;
                break;
            case VhostUser.SetFeatures:
            {
                Expect(request, p, 8);
                ulong f = BinaryPrimitives.ReadUInt64LittleEndian(p);
                // A frontend may ack transport bits it handles itself (QEMU's vhost-user-gpu acks RING_RESET): harmless,
                // except those that change how rings are laid out or addressed, which this backend cannot follow.
                const ulong layout = (1UL << VhostUser.FeatureRingPacked) | (1UL << VhostUser.FeatureAccessPlatform);
                if ((f & ~OfferedFeatures & layout) != 0)
                    throw new VhostUserProtocolException($"SET_FEATURES acks 0x{f & ~OfferedFeatures & layout:x} (packed rings or an IOMMU), never offered");
                if ((f & ~OfferedFeatures) != 0)
                    _log.LogInformation("vhost-user-gpu {Peer}: the frontend acks 0x{Extra:x} beyond what was offered; ignored", Description, f & ~OfferedFeatures);
                _ackedFeatures = f & OfferedFeatures;
                // Without protocol features a ring runs as soon as it has a kick; with them it waits for SET_VRING_ENABLE.
                if ((f & (1UL << VhostUser.FeatureProtocolFeatures)) == 0)
                    foreach (var v in _vrings) v.Enabled = true;
                break;
            }
            case VhostUser.GetProtocolFeatures:
                BinaryPrimitives.WriteUInt64LittleEndian(reply, OfferedProtocolFeatures);
                Reply(request, reply[..8]);
                replied = true;
                break;
            case VhostUser.SetProtocolFeatures:
            {
                Expect(request, p, 8);
                ulong f = BinaryPrimitives.ReadUInt64LittleEndian(p);
                if ((f & ~OfferedProtocolFeatures) != 0)
                    throw new VhostUserProtocolException($"SET_PROTOCOL_FEATURES acks 0x{f & ~OfferedProtocolFeatures:x} that were not offered");
                _protocolFeatures = f;
                break;
            }
            case VhostUser.GetQueueNum:
                BinaryPrimitives.WriteUInt64LittleEndian(reply, (ulong)_vrings.Length);
                Reply(request, reply[..8]);
                replied = true;
                break;
            case VhostUser.SetOwner:
                break;
            case VhostUser.ResetOwner:
            case VhostUser.ResetDevice:
                ResetRings();
                _device.Reset("the frontend reset the device");
                break;
            case VhostUser.SetMemTable:
                ok = SetMemTable(p);
                break;
            case VhostUser.SetVringNum:
            {
                Expect(request, p, 8);
                var v = RingOf(request, BinaryPrimitives.ReadUInt32LittleEndian(p));
                uint num = BinaryPrimitives.ReadUInt32LittleEndian(p[4..]);
                if (num == 0 || num > 32768 || (num & (num - 1)) != 0)
                    throw new VhostUserProtocolException($"SET_VRING_NUM asks for {num} descriptors (a power of two up to 32768)");
                v.Num = (ushort)num;
                v.Queue = null;
                break;
            }
            case VhostUser.SetVringAddr:
            {
                Expect(request, p, 40);
                var v = RingOf(request, BinaryPrimitives.ReadUInt32LittleEndian(p));
                v.DescUva = BinaryPrimitives.ReadUInt64LittleEndian(p[8..]);
                v.UsedUva = BinaryPrimitives.ReadUInt64LittleEndian(p[16..]);
                v.AvailUva = BinaryPrimitives.ReadUInt64LittleEndian(p[24..]);
                v.HasAddress = true;
                v.Queue = null;
                v.Broken = false;
                break;
            }
            case VhostUser.SetVringBase:
            {
                Expect(request, p, 8);
                var v = RingOf(request, BinaryPrimitives.ReadUInt32LittleEndian(p));
                v.Base = (ushort)BinaryPrimitives.ReadUInt32LittleEndian(p[4..]);
                v.Queue = null;
                break;
            }
            case VhostUser.GetVringBase:
            {
                Expect(request, p, 8);
                uint index = BinaryPrimitives.ReadUInt32LittleEndian(p);
                var v = RingOf(request, index);
                AnswerHeld();
                // Stops the ring: the frontend takes it back from here.
                ushort last = v.Queue?.LastAvail ?? v.Base;
                v.Base = last;
                v.Started = false;
                v.Queue = null;
                CloseFd(ref v.Kick);
                BinaryPrimitives.WriteUInt32LittleEndian(reply, index);
                BinaryPrimitives.WriteUInt32LittleEndian(reply[4..], last);
                Reply(request, reply[..8]);
                replied = true;
                break;
            }
            case VhostUser.SetVringKick:
            case VhostUser.SetVringCall:
            case VhostUser.SetVringErr:
            {
                Expect(request, p, 8);
                ulong u = BinaryPrimitives.ReadUInt64LittleEndian(p);
                var v = RingOf(request, (uint)(u & VhostUser.VringIndexMask));
                int fd = (u & VhostUser.VringNoFd) != 0 ? -1 : TakeFd();
                if ((u & VhostUser.VringNoFd) == 0 && fd < 0)
                    throw new VhostUserProtocolException($"{VhostUser.Name(request)} came without its file descriptor");
                if (request == VhostUser.SetVringKick)
                {
                    CloseFd(ref v.Kick);
                    v.Kick = fd;
                    v.Started = fd >= 0;
                    Service((int)(u & VhostUser.VringIndexMask)); // the driver may have kicked before we listened
                }
                else if (request == VhostUser.SetVringCall)
                {
                    CloseFd(ref v.Call);
                    v.Call = fd;
                }
                else
                {
                    CloseFd(ref v.Err);
                    v.Err = fd;
                }
                break;
            }
            case VhostUser.SetVringEnable:
            {
                Expect(request, p, 8);
                uint index = BinaryPrimitives.ReadUInt32LittleEndian(p);
                var v = RingOf(request, index);
                v.Enabled = BinaryPrimitives.ReadUInt32LittleEndian(p[4..]) != 0;
                if (v.Enabled)
                    Service((int)index);
                break;
            }
            case VhostUser.GetConfig:
            {
                if (p.Length < 12)
                    throw new VhostUserProtocolException($"GET_CONFIG has a {p.Length}-byte payload");
                uint offset = BinaryPrimitives.ReadUInt32LittleEndian(p), size = BinaryPrimitives.ReadUInt32LittleEndian(p[4..]);
                if (size > VhostUser.MaxConfigSize || p.Length != 12 + size)
                    throw new VhostUserProtocolException($"GET_CONFIG asks for {size} bytes in a {p.Length}-byte payload");
                p[..12].CopyTo(reply);
                Span<byte> data = reply.Slice(12, (int)size);
                data.Clear();
                // Past the 16 bytes of virtio_gpu_config (a frontend may be told a larger config_size) read as zero.
                var config = _device.Config;
                if (offset < config.Length)
                    config[(int)offset..Math.Min(config.Length, (int)(offset + Math.Min(size, (uint)config.Length)))].CopyTo(data);
                Reply(request, reply[..(12 + (int)size)]);
                replied = true;
                break;
            }
            case VhostUser.SetConfig:
            {
                if (p.Length < 12)
                    throw new VhostUserProtocolException($"SET_CONFIG has a {p.Length}-byte payload");
                uint offset = BinaryPrimitives.ReadUInt32LittleEndian(p), size = BinaryPrimitives.ReadUInt32LittleEndian(p[4..]);
                if (size > VhostUser.MaxConfigSize || p.Length != 12 + size)
                    throw new VhostUserProtocolException($"SET_CONFIG carries {size} bytes in a {p.Length}-byte payload");
                _device.WriteConfig(offset, p.Slice(12, (int)size));
                break;
            }
            case VhostUser.GpuSetSocket:
            {
                // vhost-user-gpu-pci hands over its display socket; this device shows no display and keeps it
                // only so the frontend sees it accepted.
                int fd = TakeFd();
                if (fd < 0)
                    throw new VhostUserProtocolException("GPU_SET_SOCKET came without its file descriptor");
                CloseFd(ref _gpuSocket);
                _gpuSocket = fd;
                break;
            }
            default:
                _log.LogWarning("vhost-user-gpu {Peer}: {Request} is not supported; refused", Description, VhostUser.Name(request));
                ok = false;
                break;
        }
        if (!replied && (flags & VhostUser.FlagNeedReply) != 0 && (_protocolFeatures & (1UL << VhostUser.ProtocolReplyAck)) != 0)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(reply, ok ? 0UL : 1UL);
            Reply(request, reply[..8]);
        }
    }

    private bool SetMemTable(ReadOnlySpan<byte> p)
    {
        if (p.Length < 8)
            throw new VhostUserProtocolException($"SET_MEM_TABLE has a {p.Length}-byte payload");
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(p);
        if (count == 0 || count > VhostUser.MaxMemoryRegions || p.Length < 8 + 32 * (int)count)
            throw new VhostUserProtocolException($"SET_MEM_TABLE describes {count} regions in {p.Length} bytes (1 to {VhostUser.MaxMemoryRegions})");
        if (RemainingFds() != count)
            throw new VhostUserProtocolException($"SET_MEM_TABLE describes {count} regions but brought {RemainingFds()} file descriptors");
        var regions = new GuestRegion[count];
        var mappings = new List<(nint, nuint)>();
        var taken = new List<int>();
        try
        {
            for (int i = 0; i < count; i++)
            {
                var r = p[(8 + 32 * i)..];
                ulong gpa = BinaryPrimitives.ReadUInt64LittleEndian(r), size = BinaryPrimitives.ReadUInt64LittleEndian(r[8..]);
                ulong uva = BinaryPrimitives.ReadUInt64LittleEndian(r[16..]), offset = BinaryPrimitives.ReadUInt64LittleEndian(r[24..]);
                int fd = TakeFd();
                taken.Add(fd);
                if (size == 0 || size > 1UL << 44 || offset > 1UL << 44 || gpa + size < gpa || uva + size < uva)
                    throw new VhostUserProtocolException($"SET_MEM_TABLE region {i} (0x{gpa:x}+0x{size:x} at file offset 0x{offset:x}) is not a region");
                for (int j = 0; j < i; j++)
                    if (gpa < regions[j].GuestPhysical + regions[j].Size && regions[j].GuestPhysical < gpa + size)
                        throw new VhostUserProtocolException($"SET_MEM_TABLE regions {j} and {i} overlap");
                // Touching a mapping past its file's end is SIGBUS: the file must hold the whole region.
                long fileSize = fd >= 0 ? Libc.lseek(fd, 0, 2 /* SEEK_END */) : -1;
                if (fileSize < 0 || (ulong)fileSize < offset + size)
                    throw new VhostUserProtocolException($"SET_MEM_TABLE region {i} needs {offset + size} bytes of its file, which has {fileSize}");
                // Mapped from file offset 0 (the offset need not be aligned to the file's page size).
                nuint length = (nuint)(size + offset);
                void* m = Libc.mmap(null, length, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED | Libc.MAP_NORESERVE, fd, 0);
                if (m == Libc.MAP_FAILED)
                    throw new VhostUserProtocolException($"SET_MEM_TABLE region {i}: mapping {size} bytes failed ({Libc.Describe(Libc.Errno)})");
                mappings.Add(((nint)m, length));
                regions[i] = new GuestRegion(gpa, size, uva, (byte*)m + offset, fd, (long)offset);
            }
        }
        catch
        {
            foreach (var (b, len) in mappings) Libc.munmap((void*)b, len);
            foreach (int fd in taken) if (fd >= 0) Libc.close(fd);
            throw;
        }
        AnswerHeld();
        var old = _memory;
        _memory = new GuestMemory(regions, mappings.ToArray());
        _device.Memory = _memory;
        foreach (var v in _vrings)
        {
            // Rings are translated again through the new table; their position is kept.
            if (v.Queue is not null)
                v.Base = v.Queue.LastAvail;
            v.Queue = null;
        }
        old.Dispose();
        _log.LogInformation("vhost-user-gpu {Peer}: guest memory: {Count} regions, {Mib} MiB", Description, count, _memory.TotalBytes >> 20);
        return true;
    }

    private void ResetRings()
    {
        foreach (var v in _vrings)
        {
            CloseFd(ref v.Kick);
            CloseFd(ref v.Call);
            CloseFd(ref v.Err);
            v.Started = v.Broken = v.HasAddress = false;
            v.Enabled = (_ackedFeatures & (1UL << VhostUser.FeatureProtocolFeatures)) == 0;
            v.Queue = null;
            v.Base = 0;
        }
    }

    private static void CloseFd(ref int fd)
    {
        if (fd >= 0)
            Libc.close(fd);
        fd = -1;
    }

    // ---- socket I/O --------------------------------------------------------------------------------

    private const int MessageTimeoutMs = 5000;

    private bool ReceiveHeader(Span<byte> header)
    {
        byte* control = stackalloc byte[Libc.CmsgSpace(sizeof(int) * VhostUser.MaxFds)];
        int got;
        fixed (byte* h = header)
        {
            var iov = new Libc.IoVec { iov_base = h, iov_len = (nuint)header.Length };
            var msg = new Libc.MsgHdr
            {
                msg_iov = &iov, msg_iovlen = 1, msg_control = control,
                msg_controllen = (nuint)Libc.CmsgSpace(sizeof(int) * VhostUser.MaxFds),
            };
            nint n;
            do n = Libc.recvmsg(_fd, &msg, Libc.MSG_CMSG_CLOEXEC | Libc.MSG_DONTWAIT);
            while (n < 0 && Libc.Errno == Libc.EINTR);
            if (n < 0)
            {
                int errno = Libc.Errno;
                if (errno == Libc.EAGAIN)
                    throw new VhostUserProtocolException("the socket was readable but had nothing");
                return false;
            }
            if (n == 0)
                return false;
            got = (int)n;
            CollectFds(&msg);
            if ((msg.msg_flags & Libc.MSG_CTRUNC) != 0)
                throw new VhostUserProtocolException($"a message brought more than {VhostUser.MaxFds} file descriptors");
        }
        if (got < header.Length)
            ReceiveExactly(header[got..]);
        return true;
    }

    private void CollectFds(Libc.MsgHdr* msg)
    {
        if (msg->msg_controllen < (nuint)sizeof(Libc.CmsgHdr))
            return;
        var c = (Libc.CmsgHdr*)msg->msg_control;
        if (c->cmsg_level != Libc.SOL_SOCKET || c->cmsg_type != Libc.SCM_RIGHTS)
            return;
        int count = ((int)c->cmsg_len - Libc.CmsgDataOffset) / sizeof(int);
        int* fds = (int*)((byte*)c + Libc.CmsgDataOffset);
        for (int i = 0; i < count && _fdCount < _fds.Length; i++)
            _fds[_fdCount++] = fds[i];
    }

    private void ReceiveExactly(Span<byte> buffer)
    {
        long deadline = Environment.TickCount64 + MessageTimeoutMs;
        fixed (byte* b = buffer)
        {
            int at = 0;
            while (at < buffer.Length)
            {
                var pfd = new Libc.PollFd { fd = _fd, events = Libc.POLLIN };
                int left = (int)Math.Max(0, deadline - Environment.TickCount64);
                int r = Libc.poll(&pfd, 1, left);
                if (r == 0)
                    throw new VhostUserProtocolException($"a message stopped {buffer.Length - at} bytes short for {MessageTimeoutMs} ms");
                if (r < 0)
                {
                    if (Libc.Errno == Libc.EINTR) continue;
                    throw new VhostUserProtocolException($"poll failed ({Libc.Describe(Libc.Errno)})");
                }
                nint n = Libc.recv(_fd, b + at, (nuint)(buffer.Length - at), Libc.MSG_DONTWAIT);
                if (n == 0)
                    throw new VhostUserProtocolException($"the frontend closed the connection {buffer.Length - at} bytes into a message");
                if (n < 0)
                {
                    int errno = Libc.Errno;
                    if (errno is Libc.EINTR or Libc.EAGAIN) continue;
                    throw new VhostUserProtocolException($"recv failed ({Libc.Describe(errno)})");
                }
                at += (int)n;
            }
        }
    }

    private void Reply(uint request, ReadOnlySpan<byte> payload)
    {
        Span<byte> m = stackalloc byte[VhostUser.HeaderSize + payload.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(m, request);
        BinaryPrimitives.WriteUInt32LittleEndian(m[4..], VhostUser.FlagVersion | VhostUser.FlagReply);
        BinaryPrimitives.WriteUInt32LittleEndian(m[8..], (uint)payload.Length);
        payload.CopyTo(m[VhostUser.HeaderSize..]);
        fixed (byte* b = m)
        {
            int at = 0;
            while (at < m.Length)
            {
                nint n = Libc.send(_fd, b + at, (nuint)(m.Length - at), Libc.MSG_NOSIGNAL);
                if (n < 0)
                {
                    if (Libc.Errno == Libc.EINTR) continue;
                    throw new VhostUserProtocolException($"sending the reply to {VhostUser.Name(request)} failed ({Libc.Describe(Libc.Errno)})");
                }
                at += (int)n;
            }
        }
    }

    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        _device.Dispose();
        foreach (var v in _vrings)
        {
            CloseFd(ref v.Kick);
            CloseFd(ref v.Call);
            CloseFd(ref v.Err);
            v.Queue = null;
        }
        CloseFd(ref _gpuSocket);
        _memory.Dispose();
        Libc.close(_fd);
        Libc.close(_wakeFd);
    }
}
