using System.Globalization;
using System.Net;

namespace GuestIcd.Transport;

/// <summary>
/// A parsed transport spec, the form <c>GUESTICD_TRANSPORT</c> and hostsim's <c>--listen</c> take:
/// <c>unix:PATH</c>, <c>tcp:HOST:PORT</c> (IPv6 in brackets: <c>tcp:[::1]:7000</c>), <c>vsock:CID:PORT</c>
/// for a guest and <c>vsock:PORT</c> for a host, <c>hvsock:PORT</c> for a Hyper-V guest and
/// <c>hyperv:SERVICE-GUID[:VMID]</c> for a Windows host; a guest also accepts <c>auto</c> (the default unix socket).
/// </summary>
/// <param name="Kind">Which transport.</param>
/// <param name="Address">Unix: the socket path; TCP: the host name or address (no brackets).</param>
/// <param name="Port">TCP or vsock port; 0 on a host means "any".</param>
/// <param name="Cid">Vsock: the peer's context id (guest side only).</param>
public sealed record TransportSpec(TransportKind Kind, string Address, uint Port, uint Cid)
{
    private const string GuestForms = "unix:PATH, tcp:HOST:PORT, vsock:CID:PORT, hvsock:PORT, vm, virtio-gpu[:/dev/dri/renderDN] or auto";
    private const string HostForms = "unix:PATH, tcp:ADDRESS:PORT, vsock:PORT, hyperv:SERVICE-GUID[:VMID] or vm:SOCKET,shm=FILE[,size=BYTES]";

    /// <summary>HyperV on a host: the service GUID listened on; HvSock on a guest: the one its port reaches.</summary>
    public Guid ServiceId { get; init; }

    /// <summary>HyperV on a host: the VM (or HV_GUID_WILDCARD / HV_GUID_CHILDREN) served.</summary>
    public Guid VmId { get; init; }

    /// <summary>Vm on a host: the ivshmem backing file.</summary>
    public string? ShmPath { get; init; }

    /// <summary>Vm on a host: the size FILE is truncated to (0: leave it).</summary>
    public long ShmSize { get; init; }

    /// <summary>Parses what a guest connects to. <paramref name="defaultUnixPath"/> is what <c>auto</c>
    /// (and an empty spec) means.</summary>
    /// <exception cref="ArgumentException">Unknown scheme or malformed spec; the message shows the forms.</exception>
    public static TransportSpec ParseGuest(string? spec, string? defaultUnixPath = null)
    {
        if (string.IsNullOrEmpty(spec) || spec == "auto")
        {
            if (string.IsNullOrEmpty(defaultUnixPath))
                throw new ArgumentException($"transport '{spec}': 'auto' needs a default unix socket path");
            return new TransportSpec(TransportKind.Unix, defaultUnixPath, 0, 0);
        }
        if (spec == "vm")
            return new TransportSpec(TransportKind.Vm, "", 0, 0);
        if (spec == "virtio-gpu")
            return new TransportSpec(TransportKind.VirtioGpu, "", 0, 0);
        if (spec.StartsWith("virtio-gpu:", StringComparison.Ordinal))
            return new TransportSpec(TransportKind.VirtioGpu, spec["virtio-gpu:".Length..], 0, 0);
        (string scheme, string rest) = SplitScheme(spec, GuestForms);
        switch (scheme)
        {
            case "unix":
                return Unix(spec, rest, GuestForms);
            case "tcp":
            {
                (string host, uint port) = HostAndPort(spec, rest, allowAnyPort: false);
                return new TransportSpec(TransportKind.Tcp, host, port, 0);
            }
            case "vsock":
            {
                int colon = rest.IndexOf(':', StringComparison.Ordinal);
                if (colon < 0)
                    throw Bad(spec, "a guest connects to vsock:CID:PORT (the host's CID is 2)");
                uint cid = Number(spec, rest[..colon], "CID", uint.MaxValue - 1);
                uint port = Number(spec, rest[(colon + 1)..], "port", uint.MaxValue - 1);
                if (port == 0)
                    throw Bad(spec, "vsock port 0 is not a port to connect to");
                return new TransportSpec(TransportKind.Vsock, "", port, cid);
            }
            case "hvsock":
                return HvSockSpec(spec, rest);
            default:
                throw Unknown(spec, scheme, GuestForms);
        }
    }

    /// <summary>Parses where a host listens.</summary>
    /// <exception cref="ArgumentException">Unknown scheme or malformed spec; the message shows the forms.</exception>
    public static TransportSpec ParseHost(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        (string scheme, string rest) = SplitScheme(spec, HostForms);
        switch (scheme)
        {
            case "unix":
                return Unix(spec, rest, HostForms);
            case "tcp":
            {
                (string host, uint port) = HostAndPort(spec, rest, allowAnyPort: true);
                if (!IPAddress.TryParse(host, out _) && host is not ("localhost" or "*"))
                    throw Bad(spec, "a host listens on an IP address (or localhost, or * for every address)");
                return new TransportSpec(TransportKind.Tcp, host, port, 0);
            }
            case "vsock":
                if (rest.Contains(':', StringComparison.Ordinal))
                    throw Bad(spec, "a host listens on vsock:PORT (every CID)");
                return new TransportSpec(TransportKind.Vsock, "", Number(spec, rest, "port", uint.MaxValue - 1), uint.MaxValue);
            case "vm":
                return Vm(spec, rest);
            case "hyperv":
                return HyperVSpec(spec, rest);
            default:
                throw Unknown(spec, scheme, HostForms);
        }
    }

    /// <summary>The address a TCP host spec binds.</summary>
    public IPEndPoint TcpEndPoint()
    {
        if (Kind != TransportKind.Tcp)
            throw new InvalidOperationException($"{this} is not a TCP spec");
        IPAddress address = Address switch
        {
            "localhost" => IPAddress.Loopback,
            "*" => System.Net.Sockets.Socket.OSSupportsIPv6 ? IPAddress.IPv6Any : IPAddress.Any,
            _ => IPAddress.Parse(Address),
        };
        return new IPEndPoint(address, (int)Port);
    }

    public override string ToString() => Kind switch
    {
        TransportKind.Unix => $"unix:{Address}",
        TransportKind.Tcp => $"tcp:{TcpTransport.FormatHost(Address)}:{Port}",
        TransportKind.VirtioGpu => Address.Length == 0 ? "virtio-gpu" : $"virtio-gpu:{Address}",
        TransportKind.HvSock => HvSockTransport.Name(Port),
        TransportKind.HyperV => HyperVListener.Name(ServiceId, VmId),
        TransportKind.Vm => ShmPath is null ? "vm" : $"vm:{Address},shm={ShmPath}" + (ShmSize > 0 ? $",size={ShmSize}" : ""),
        _ => Cid == uint.MaxValue ? $"vsock:{Port}" : $"vsock:{Cid}:{Port}",
    };

    /// <summary>hvsock:PORT (decimal or 0x-hex), or hvsock:SERVICE-GUID of the port form; the host is always CID 2.</summary>
    private static TransportSpec HvSockSpec(string spec, string rest)
    {
        uint port;
        if (Guid.TryParse(rest, out Guid service))
        {
            if (!HvSockAddress.TryPortForServiceId(service, out port))
                throw Bad(spec, $"a Linux guest reaches only service GUIDs of the form PORT-facb-11e6-bd58-64006a7986d3; {service} is not one");
        }
        else if (!HvSockAddress.TryParsePort(rest, out port))
            throw Bad(spec, $"port '{rest}' is not a number (decimal or 0x-hex) or a PORT-facb-11e6-bd58-64006a7986d3 service GUID");
        if (port is 0 or uint.MaxValue)
            throw Bad(spec, $"hvsock port {port} is not a port to connect to");
        return new TransportSpec(TransportKind.HvSock, "", port, 2) { ServiceId = HvSockAddress.ServiceIdForPort(port) };
    }

    /// <summary>hyperv:SERVICE[:VMID]: SERVICE a GUID or a vsock port (its GUID); VMID a GUID, or wildcard
    /// (the default), children, loopback.</summary>
    private static TransportSpec HyperVSpec(string spec, string rest)
    {
        string[] parts = rest.Split(':');
        if (parts.Length > 2 || parts[0].Length == 0)
            throw Bad(spec, "expected hyperv:SERVICE-GUID[:VMID]");
        if (!HvSockAddress.TryParseServiceId(parts[0], out Guid service))
            throw Bad(spec, $"service '{parts[0]}' is not a GUID (or a vsock port)");
        Guid vm = HvSockAddress.Wildcard;
        if (parts.Length == 2)
        {
            vm = parts[1] switch
            {
                "wildcard" or "*" => HvSockAddress.Wildcard,
                "children" => HvSockAddress.Children,
                "loopback" => HvSockAddress.Loopback,
                "parent" => HvSockAddress.Parent,
                _ => Guid.TryParse(parts[1], out Guid id) ? id : throw Bad(spec, $"VM '{parts[1]}' is not a GUID (Get-VM NAME | Select Id), wildcard, children or loopback"),
            };
        }
        return new TransportSpec(TransportKind.HyperV, "", 0, 0) { ServiceId = service, VmId = vm };
    }

    private static (string Scheme, string Remainder) SplitScheme(string spec, string forms)
    {
        int colon = spec.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0)
            throw new ArgumentException($"transport '{spec}' has no scheme; expected {forms}");
        return (spec[..colon], spec[(colon + 1)..]);
    }

    private static TransportSpec Unix(string spec, string path, string forms)
    {
        if (path.Length == 0)
            throw Bad(spec, $"unix needs a socket path; expected {forms}");
        return new TransportSpec(TransportKind.Unix, path, 0, 0);
    }

    /// <summary>vm:SOCKET,shm=FILE[,size=BYTES] (paths must not contain commas).</summary>
    private static TransportSpec Vm(string spec, string rest)
    {
        string[] parts = rest.Split(',');
        if (parts[0].Length == 0)
            throw Bad(spec, "vm needs the socket qemu's virtio-serial chardev connects to: vm:SOCKET,shm=FILE[,size=BYTES]");
        string? shm = null;
        long size = 0;
        foreach (string part in parts[1..])
        {
            if (part.StartsWith("shm=", StringComparison.Ordinal) && part.Length > 4)
                shm = part[4..];
            else if (part.StartsWith("size=", StringComparison.Ordinal))
            {
                if (!long.TryParse(part[5..], NumberStyles.None, CultureInfo.InvariantCulture, out size) || size < 2 * 4096 + 2 * UnixRingTransport.MinRingBytes)
                    throw Bad(spec, $"size '{part[5..]}' is not a byte count of at least {2 * 4096 + 2 * UnixRingTransport.MinRingBytes}");
            }
            else
                throw Bad(spec, $"unknown vm option '{part}'; expected shm=FILE or size=BYTES");
        }
        if (shm is null)
            throw Bad(spec, "vm needs the ivshmem backing file: vm:SOCKET,shm=FILE[,size=BYTES]");
        return new TransportSpec(TransportKind.Vm, parts[0], 0, 0) { ShmPath = shm, ShmSize = size };
    }

    private static (string Host, uint Port) HostAndPort(string spec, string rest, bool allowAnyPort)
    {
        string host;
        string port;
        if (rest.StartsWith('['))
        {
            int close = rest.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || close + 1 >= rest.Length || rest[close + 1] != ':')
                throw Bad(spec, "expected tcp:[IPv6]:PORT");
            host = rest[1..close];
            if (!IPAddress.TryParse(host, out IPAddress? v6) || v6.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6)
                throw Bad(spec, $"'{host}' in brackets is not an IPv6 address");
            port = rest[(close + 2)..];
        }
        else
        {
            int colon = rest.LastIndexOf(':');
            if (colon < 0)
                throw Bad(spec, "expected tcp:HOST:PORT");
            host = rest[..colon];
            if (host.Contains(':', StringComparison.Ordinal))
                throw Bad(spec, "IPv6 addresses go in brackets: tcp:[::1]:PORT");
            port = rest[(colon + 1)..];
        }
        if (host.Length == 0)
            throw Bad(spec, "the host is empty");
        uint number = Number(spec, port, "port", 65535);
        if (number == 0 && !allowAnyPort)
            throw Bad(spec, "port 0 is not a port to connect to");
        return (host, number);
    }

    private static uint Number(string spec, string text, string what, uint max)
    {
        if (!uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out uint value) || value > max)
            throw Bad(spec, $"{what} '{text}' is not a number from 0 to {max}");
        return value;
    }

    private static ArgumentException Bad(string spec, string why) => new($"transport '{spec}': {why}");

    private static ArgumentException Unknown(string spec, string scheme, string forms) =>
        new($"transport '{spec}': unknown scheme '{scheme}'; expected {forms}");
}
