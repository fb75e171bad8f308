using System.Buffers.Binary;
using System.Globalization;
using System.Net.Sockets;

namespace GuestIcd.Transport;

/// <summary>
/// Hyper-V socket addressing, both ends. A Linux guest names a host service by an AF_VSOCK port P; the
/// kernel's Hyper-V vsock transport (net/vmw_vsock/hyperv_transport.c) turns it into the service GUID
/// <c>P-facb-11e6-bd58-64006a7986d3</c>, which the Windows host listens on with an AF_HYPERV socket
/// (<c>SOCKADDR_HV</c>). Everything here is pure encoding, so it is tested on any platform.
/// </summary>
public static class HvSockAddress
{
    /// <summary>Winsock's AF_HYPERV.</summary>
    public const AddressFamily AfHyperV = (AddressFamily)34;

    /// <summary>HV_PROTOCOL_RAW, the only protocol AF_HYPERV has (a byte stream).</summary>
    public const ProtocolType ProtocolRaw = (ProtocolType)1;

    /// <summary>sizeof(SOCKADDR_HV): Family (u16), Reserved (u16), VmId (GUID), ServiceId (GUID).</summary>
    public const int SockAddrSize = 36;

    /// <summary>HV_GUID_WILDCARD (= HV_GUID_ZERO): listen for every partition.</summary>
    public static readonly Guid Wildcard = Guid.Empty;

    /// <summary>HV_GUID_CHILDREN: listen for every child partition (the host's VMs).</summary>
    public static readonly Guid Children = new("90db8b89-0d35-4f79-8ce9-49ea0ac8b7cd");

    /// <summary>HV_GUID_LOOPBACK: the partition itself (a host talking to itself).</summary>
    public static readonly Guid Loopback = new("e0e16197-dd56-4a10-9195-5ee7a155a838");

    /// <summary>HV_GUID_PARENT: a guest's parent partition (the host).</summary>
    public static readonly Guid Parent = new("a42e7cda-d03f-480c-9cc2-a4de20abb878");

    // The last 12 bytes of every vsock service GUID, as Guid's little-endian byte form lays them out
    // (Data2 = 0xfacb, Data3 = 0x11e6, Data4 = bd 58 64 00 6a 79 86 d3).
    private static ReadOnlySpan<byte> TemplateTail => [0xcb, 0xfa, 0xe6, 0x11, 0xbd, 0x58, 0x64, 0x00, 0x6a, 0x79, 0x86, 0xd3];

    /// <summary>The service GUID a guest's vsock port <paramref name="port"/> reaches on the host.</summary>
    public static Guid ServiceIdForPort(uint port)
    {
        Span<byte> bytes = stackalloc byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, port);
        TemplateTail.CopyTo(bytes[4..]);
        return new Guid(bytes);
    }

    /// <summary>The vsock port behind a service GUID of the <c>P-facb-11e6-bd58-64006a7986d3</c> form;
    /// false for any other GUID (a Linux guest cannot reach it).</summary>
    public static bool TryPortForServiceId(Guid serviceId, out uint port)
    {
        Span<byte> bytes = stackalloc byte[16];
        serviceId.TryWriteBytes(bytes);
        port = BinaryPrimitives.ReadUInt32LittleEndian(bytes);
        if (bytes[4..].SequenceEqual(TemplateTail))
            return true;
        port = 0;
        return false;
    }

    /// <summary>
    /// Writes a <c>SOCKADDR_HV</c> into <paramref name="destination"/> (at least <see cref="SockAddrSize"/>
    /// bytes): the family and reserved words little-endian, each GUID as Windows stores one in memory
    /// (Data1, Data2, Data3 little-endian, then Data4's eight bytes in order).
    /// </summary>
    public static void Encode(Guid vmId, Guid serviceId, Span<byte> destination)
    {
        if (destination.Length < SockAddrSize)
            throw new ArgumentException($"SOCKADDR_HV needs {SockAddrSize} bytes, got {destination.Length}", nameof(destination));
        BinaryPrimitives.WriteUInt16LittleEndian(destination, (ushort)AfHyperV);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[2..], 0);
        vmId.TryWriteBytes(destination[4..20]);
        serviceId.TryWriteBytes(destination[20..36]);
    }

    /// <summary>Reads a <c>SOCKADDR_HV</c> (see <see cref="Encode"/>).</summary>
    /// <exception cref="ArgumentException">Too short, or not AF_HYPERV.</exception>
    public static (Guid VmId, Guid ServiceId) Decode(ReadOnlySpan<byte> source)
    {
        if (source.Length < SockAddrSize)
            throw new ArgumentException($"SOCKADDR_HV is {SockAddrSize} bytes, got {source.Length}", nameof(source));
        ushort family = BinaryPrimitives.ReadUInt16LittleEndian(source);
        if (family != (ushort)AfHyperV)
            throw new ArgumentException($"address family {family} is not AF_HYPERV ({(int)AfHyperV})", nameof(source));
        return (new Guid(source[4..20]), new Guid(source[20..36]));
    }

    /// <summary>Parses a service (or VM) id: a GUID with or without braces, or a vsock port number
    /// (decimal or 0x-hex), which stands for that port's service GUID.</summary>
    public static bool TryParseServiceId(string text, out Guid serviceId)
    {
        serviceId = default;
        if (Guid.TryParse(text, out serviceId))
            return true;
        if (TryParsePort(text, out uint port))
        {
            serviceId = ServiceIdForPort(port);
            return true;
        }
        return false;
    }

    /// <summary>A vsock port: decimal, or hex with a 0x prefix (as the Hyper-V documentation writes them).</summary>
    public static bool TryParsePort(string text, out uint port)
    {
        if (text.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
            return uint.TryParse(text.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out port);
        return uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out port);
    }

    /// <summary>A VM id as people write it: the well-known names, else the GUID.</summary>
    public static string VmName(Guid vmId) =>
        vmId == Wildcard ? "wildcard" : vmId == Children ? "children" : vmId == Loopback ? "loopback" : vmId == Parent ? "parent" : vmId.ToString();

    /// <summary>
    /// True on a Hyper-V guest: the VMBus driver registered its bus and enumerated devices on it
    /// (<c>SYSFS/bus/vmbus/devices/*</c>). <paramref name="sysfsRoot"/> is for tests.
    /// </summary>
    public static bool IsHyperVGuest(string sysfsRoot = "/sys")
    {
        try
        {
            string devices = Path.Combine(sysfsRoot, "bus", "vmbus", "devices");
            return Directory.Exists(devices) && Directory.EnumerateFileSystemEntries(devices).Any();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Which of the kernel modules hv_sock needs are missing, as a hint for a log line; null when
    /// both are there (or built in, which sysfs also shows under module/).</summary>
    public static string? MissingModules(string sysfsRoot = "/sys")
    {
        bool vsock = Directory.Exists(Path.Combine(sysfsRoot, "module", "vsock"));
        bool hvSock = Directory.Exists(Path.Combine(sysfsRoot, "module", "hv_sock"));
        return (vsock, hvSock) switch
        {
            (true, true) => null,
            (true, false) => "the hv_sock module is not loaded (modprobe hv_sock)",
            (false, true) => "the vsock module is not loaded (modprobe vsock)",
            _ => "neither vsock nor hv_sock is loaded (modprobe hv_sock loads both)",
        };
    }
}
