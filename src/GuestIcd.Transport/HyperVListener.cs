using System.Net;
using System.Net.Sockets;

namespace GuestIcd.Transport;

/// <summary>A <c>SOCKADDR_HV</c> for .NET's Socket, which takes any address family on Windows as long as
/// the EndPoint serialises it (<see cref="HvSockAddress.Encode"/>).</summary>
public sealed class HyperVEndPoint(Guid vmId, Guid serviceId) : EndPoint
{
    public Guid VmId { get; } = vmId;

    public Guid ServiceId { get; } = serviceId;

    public override AddressFamily AddressFamily => HvSockAddress.AfHyperV;

    public override SocketAddress Serialize()
    {
        var address = new SocketAddress(HvSockAddress.AfHyperV, HvSockAddress.SockAddrSize);
        HvSockAddress.Encode(VmId, ServiceId, address.Buffer.Span);
        return address;
    }

    public override EndPoint Create(SocketAddress socketAddress)
    {
        ArgumentNullException.ThrowIfNull(socketAddress);
        (Guid vm, Guid service) = HvSockAddress.Decode(socketAddress.Buffer.Span[..socketAddress.Size]);
        return new HyperVEndPoint(vm, service);
    }

    public override string ToString() => $"hyperv:{HvSockAddress.VmName(VmId)}:{ServiceId}";

    public override bool Equals(object? obj) => obj is HyperVEndPoint other && other.VmId == VmId && other.ServiceId == ServiceId;

    public override int GetHashCode() => HashCode.Combine(VmId, ServiceId);
}

/// <summary>
/// The Windows host's listener for Linux guests over hv_sock: an AF_VSOCK connection from a guest to the
/// host's port P arrives here as an AF_HYPERV connection to service GUID <c>P-facb-11e6-bd58-64006a7986d3</c>
/// (<see cref="HvSockAddress"/>), which the host must have registered under
/// <c>HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Virtualization\GuestCommunicationServices</c>.
/// Accepted connections take the TCP code path (<see cref="SocketTransportListener"/>: TLS, shared secret,
/// eviction of silent peers), which is what runs on Linux when a test hands this class a TCP socket.
/// </summary>
public sealed class HyperVListener : SocketTransportListener
{
    private readonly Socket _listen;

    /// <summary>Binds <paramref name="serviceId"/> for <paramref name="vmId"/> (<see cref="HvSockAddress.Wildcard"/>:
    /// every VM; <see cref="HvSockAddress.Children"/>; or one VM's id) and starts accepting.</summary>
    /// <exception cref="ArgumentException">No usable secret, or the TLS certificate cannot be loaded.</exception>
    /// <exception cref="IOException">No AF_HYPERV here (not Windows, or Hyper-V is not enabled), or the
    /// service cannot be bound; the message says which.</exception>
    public HyperVListener(Guid serviceId, Guid vmId, TransportSecurity security)
        : this(Open(serviceId, vmId, security), security, Name(serviceId, vmId))
    {
    }

    /// <summary>Serves an already listening socket of any family: what tests on Linux use (TCP), to run
    /// this listener's accept and session code where AF_HYPERV does not exist.</summary>
    internal HyperVListener(Socket listening, TransportSecurity security, string description)
        : base(security, description)
    {
        _listen = listening;
        Description = description;
        StartAccepting();
    }

    public override string Description { get; }

    internal static string Name(Guid serviceId, Guid vmId) =>
        vmId == HvSockAddress.Wildcard ? $"hyperv:{serviceId}" : $"hyperv:{serviceId}:{HvSockAddress.VmName(vmId)}";

    private static Socket Open(Guid serviceId, Guid vmId, TransportSecurity security)
    {
        string what = $"{Name(serviceId, vmId)}: cannot listen";
        // The secret is checked before any socket exists, as the other listeners do.
        if (security is null)
            throw new ArgumentException($"{Name(serviceId, vmId)}: refusing to listen without a shared secret (--secret-file); remote guests must authenticate");
        security.Validate(Name(serviceId, vmId));
        if (!OperatingSystem.IsWindows())
            throw new IOException($"{what}: AF_HYPERV sockets exist only on a Windows host with Hyper-V (a Linux guest reaches it with GUESTICD_TRANSPORT=hvsock:PORT)");
        Socket socket;
        try
        {
            socket = new Socket(HvSockAddress.AfHyperV, SocketType.Stream, HvSockAddress.ProtocolRaw);
        }
        catch (SocketException e)
        {
            throw new IOException($"{what}: this Windows has no AF_HYPERV sockets; enable Hyper-V ({e.SocketErrorCode}: {e.Message})");
        }
        try
        {
            socket.Bind(new HyperVEndPoint(vmId, serviceId));
            socket.Listen(128);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            string why = e.SocketErrorCode switch
            {
                SocketError.AddressAlreadyInUse => "the service is already listened on",
                SocketError.AccessDenied => "binding Hyper-V services needs an administrator (or a service account) on this host",
                SocketError.AddressNotAvailable => "no such VM on this host",
                _ => "bind failed",
            };
            throw new IOException($"{what}: {why} ({e.SocketErrorCode}: {e.Message})");
        }
        return socket;
    }

    protected override Socket? AcceptSocket(CancellationToken stop, out string peer)
    {
        Socket socket = _listen.Accept();
        peer = socket.RemoteEndPoint switch
        {
            HyperVEndPoint hv => $"hyperv:{HvSockAddress.VmName(hv.VmId)}:{hv.ServiceId}",
            IPEndPoint ip => TcpTransportListener.Format(ip),
            _ => "(unknown address)",
        };
        return socket;
    }

    // Closing the socket is what wakes a thread blocked in Accept.
    protected override void CloseListeningSocket() => _listen.Dispose();
}
