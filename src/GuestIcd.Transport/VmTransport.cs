using System.Buffers.Binary;
using GuestIcd.Transport.Native;

namespace GuestIcd.Transport;

/// <summary>
/// Guest end of the VM transport: the <see cref="UnixRingTransport"/> rings and shared heap live in the BAR of
/// an ivshmem-plain PCI device (1af4:1110), which the host backs with a file it maps too, and the doorbells
/// travel over the virtio-serial port <see cref="PortName"/>, whose host end is a unix socket qemu connects to
/// (<see cref="VmTransportListener"/>).
/// </summary>
/// <remarks>
/// <para>BAR layout per session: ring guest→host, ring host→guest (<see cref="SharedRing.RegionSize"/> each),
/// then the heap (HOST_VISIBLE memory, zero-copy for both sides) in the rest.</para>
/// <para>The port carries sessions one after another: a <see cref="PreambleSize"/>-byte preamble
/// ({"GICDVM01", u32 version, u32 ringBytes, u64 heapBytes}) starts one, 0x01 bytes are doorbells, and a 0x00
/// goodbye (sent by Dispose) ends it. The port and the BAR exist once per VM, so a guest has one
/// connection at a time: a second open of the port fails with EBUSY, reported as "busy".</para>
/// </remarks>
public static unsafe class VmTransport
{
    public const string PortName = "org.guesticd.0";
    public const ushort IvshmemVendor = 0x1af4;
    public const ushort IvshmemDevice = 0x1110;
    /// <summary>Ring size when the BAR has room; smaller BARs get smaller rings.</summary>
    public const int PreferredRingBytes = 1 << 20;

    internal const int PreambleSize = 24;
    internal const uint PreambleVersion = 1;
    // "GICDVM01" little-endian
    internal const ulong PreambleMagic = 0x31304D5644434947;

    /// <summary>True when this machine is a guest with the GuestIcd virtio-serial port (what <c>auto</c> checks).</summary>
    public static bool PortPresent() => FindPort() is not null;

    /// <summary>
    /// Opens the ivshmem BAR and the virtio-serial port, lays out the rings and a heap of up to
    /// <paramref name="heapBytes"/> in the BAR and starts a session.
    /// </summary>
    /// <exception cref="TransportClosedException">The device or the port is missing or unusable; one line says which.</exception>
    public static UnixRingTransport Connect(int timeoutMs, long heapBytes)
    {
        string bar = FindIvshmemBar() ?? throw new TransportClosedException(
            $"vm: no ivshmem device (PCI {IvshmemVendor:x4}:{IvshmemDevice:x4}) in this guest (qemu: -device ivshmem-plain)");
        string port = FindPort() ?? throw new TransportClosedException(
            $"vm: no virtio-serial port named {PortName} in this guest (qemu: -device virtserialport,name={PortName})");

        long barSize = new FileInfo(bar).Length;
        int barFd = Open(bar, Libc.O_RDWR | Libc.O_CLOEXEC, "the ivshmem BAR");
        byte* region = (byte*)Libc.mmap(null, (nuint)barSize, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, barFd, 0);
        int errno = Libc.Errno;
        Libc.close(barFd);
        if (region == Libc.MAP_FAILED)
            throw new TransportClosedException($"vm: mmap of the ivshmem BAR {bar} ({barSize} B) failed ({Libc.Describe(errno)})");

        int portFd = -1;
        try
        {
            portFd = Open(port, Libc.O_RDWR | Libc.O_NONBLOCK | Libc.O_CLOEXEC, $"the virtio-serial port {PortName}");
            var transport = Start(portFd, region, (nuint)barSize, heapBytes, timeoutMs, $"vm:{port} + ivshmem {bar}");
            portFd = -1;
            region = null;
            return transport;
        }
        finally
        {
            if (portFd >= 0)
                Libc.close(portFd);
            if (region != null)
                Libc.munmap(region, (nuint)barSize);
        }
    }

    /// <summary>The ring size for a shared region of <paramref name="regionBytes"/>: <see cref="PreferredRingBytes"/>,
    /// halved until both rings take at most half the region; 0 when even the smallest does not fit.</summary>
    internal static int ChooseRingBytes(long regionBytes)
    {
        for (int ring = PreferredRingBytes; ring >= UnixRingTransport.MinRingBytes; ring >>= 1)
            if (UnixRingTransport.SharedSize(ring) * 2 <= regionBytes || ring == UnixRingTransport.MinRingBytes && UnixRingTransport.SharedSize(ring) <= regionBytes)
                return ring;
        return 0;
    }

    /// <summary>Starts a session on an open channel <paramref name="channelFd"/> (non-blocking; taken over by
    /// the transport on success) and a mapped shared region: initialises the rings, sends the preamble.
    /// Also what the host-only tests drive with a socket in place of the char device.</summary>
    internal static UnixRingTransport Start(int channelFd, byte* region, nuint regionSize, long heapBytes, int timeoutMs, string description)
    {
        int ringBytes = ChooseRingBytes((long)regionSize);
        if (ringBytes == 0)
            throw new TransportClosedException($"{description}: the shared region ({regionSize} B) is too small for two rings");
        long rest = ((long)regionSize - UnixRingTransport.SharedSize(ringBytes)) & ~4095L;
        long heap = Math.Clamp(heapBytes, 0, rest) & ~4095L;

        SharedRing.Initialize(region);
        SharedRing.Initialize(region + SharedRing.RegionSize(ringBytes));

        byte* preamble = stackalloc byte[PreambleSize];
        WritePreamble(new Span<byte>(preamble, PreambleSize), PreambleVersion, (uint)ringBytes, (ulong)heap);
        long deadline = Libc.Deadline(timeoutMs);
        int sent = 0;
        while (sent < PreambleSize)
        {
            nint n = Libc.write(channelFd, preamble + sent, (nuint)(PreambleSize - sent));
            if (n > 0)
            {
                sent += (int)n;
                continue;
            }
            int errno = Libc.Errno;
            if (n < 0 && errno == Libc.EINTR)
                continue;
            if (n < 0 && errno != Libc.EAGAIN)
                throw new TransportClosedException($"{description}: sending the session preamble failed ({Libc.Describe(errno)})");
            int remaining = Libc.RemainingMs(deadline);
            if (remaining == 0)
                throw new TransportClosedException($"{description}: the host took no preamble within {timeoutMs} ms (is hostsim listening with vm:SOCKET,shm=FILE?)");
            var pfd = new Libc.PollFd { fd = channelFd, events = Libc.POLLOUT };
            Libc.poll(&pfd, 1, Math.Min(remaining, 100));
        }
        return new UnixRingTransport(UnixRingTransport.Channel.GuestCharDevice, channelFd, region, regionSize, ringBytes,
            $"{description} (ring {ringBytes} B, heap {heap >> 20} MiB)", heap);
    }

    internal static void WritePreamble(Span<byte> destination, uint version, uint ringBytes, ulong heapBytes)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, PreambleMagic);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[8..], version);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[12..], ringBytes);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[16..], heapBytes);
    }

    private static int Open(string path, int flags, string what)
    {
        int fd;
        fixed (byte* p = System.Text.Encoding.UTF8.GetBytes(path + "\0"))
            fd = Libc.open(p, flags, 0);
        if (fd >= 0)
            return fd;
        int errno = Libc.Errno;
        string why = errno == Libc.EBUSY ? "busy: another GuestIcd connection in this guest holds it" : "open failed";
        throw new TransportClosedException($"vm: cannot open {what} at {path}: {why} ({Libc.Describe(errno)})");
    }

    /// <summary>/sys/bus/pci/devices/BDF/resource2 of the first ivshmem device, or null.</summary>
    private static string? FindIvshmemBar()
    {
        const string Devices = "/sys/bus/pci/devices";
        if (!Directory.Exists(Devices))
            return null;
        foreach (string dir in Directory.GetDirectories(Devices).Order(StringComparer.Ordinal))
        {
            if (ReadHex(Path.Combine(dir, "vendor")) == IvshmemVendor && ReadHex(Path.Combine(dir, "device")) == IvshmemDevice
                && File.Exists(Path.Combine(dir, "resource2")))
                return Path.Combine(dir, "resource2");
        }
        return null;
    }

    /// <summary>/dev/vportNpM of the port named <see cref="PortName"/>, or null.</summary>
    private static string? FindPort()
    {
        const string Ports = "/sys/class/virtio-ports";
        if (!Directory.Exists(Ports))
            return null;
        foreach (string dir in Directory.GetDirectories(Ports).Order(StringComparer.Ordinal))
        {
            string? name = ReadText(Path.Combine(dir, "name"));
            if (name == PortName)
                return "/dev/" + Path.GetFileName(dir);
        }
        return null;
    }

    private static string? ReadText(string path)
    {
        try
        {
            return File.ReadAllText(path).Trim();
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static int ReadHex(string path)
    {
        string? text = ReadText(path);
        if (text is null)
            return -1;
        if (text.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
            text = text[2..];
        return int.TryParse(text, System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture, out int v) ? v : -1;
    }
}
