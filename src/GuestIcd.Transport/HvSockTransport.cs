using GuestIcd.Transport.Native;

namespace GuestIcd.Transport;

/// <summary>
/// A Linux guest under Hyper-V reaching hostsim on the Windows host over hv_sock: an AF_VSOCK stream to
/// the host (CID 2) that the kernel's Hyper-V vsock transport carries over the VMBus to the host's
/// AF_HYPERV listener on service GUID <c>PORT-facb-11e6-bd58-64006a7986d3</c>
/// (<see cref="HvSockAddress.ServiceIdForPort"/>). Once connected it is the vsock transport (TLS and
/// shared secret alike); only the failures are worded for Hyper-V, since what is missing differs: the
/// guest's hv_sock module, or the host's registered service and listener.
/// </summary>
public static class HvSockTransport
{
    /// <summary>The port <c>auto</c> tries on a Hyper-V guest (GUESTICD_HVSOCK_PORT overrides it): "GICD",
    /// service GUID 47494344-facb-11e6-bd58-64006a7986d3.</summary>
    public const uint DefaultPort = 0x47494344;

    /// <summary>Where a spec without a port (or <c>auto</c>) connects: GUESTICD_HVSOCK_PORT, else <see cref="DefaultPort"/>.</summary>
    public static uint PortFromEnvironment() =>
        Environment.GetEnvironmentVariable("GUESTICD_HVSOCK_PORT") is { Length: > 0 } text && HvSockAddress.TryParsePort(text, out uint port) && port != 0 && port != uint.MaxValue
            ? port : DefaultPort;

    /// <summary>How a spec names it: <c>hvsock:PORT</c>.</summary>
    public static string Name(uint port) => $"hvsock:{port}";

    /// <summary>Connects to the host's hostsim listening on <paramref name="port"/>'s service GUID and
    /// authenticates, all within <paramref name="timeoutMs"/> (-1: no limit).</summary>
    /// <exception cref="TransportClosedException">No hv_sock here, no such service on the host, timed out,
    /// or refused; the message says which and what to do.</exception>
    /// <exception cref="ArgumentException">No usable secret.</exception>
    public static ITransport Connect(uint port, TransportSecurity security, int timeoutMs) =>
        Connect(port, security, timeoutMs, Vsock.VMADDR_CID_HOST, "/sys");

    /// <summary>Tests aim at another CID (never the machine's real host) and a fake sysfs.</summary>
    internal static ITransport Connect(uint port, TransportSecurity security, int timeoutMs, uint cid, string sysfsRoot)
    {
        if (port is 0 or uint.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(port), port, "hv_sock needs a concrete port");
        Guid service = HvSockAddress.ServiceIdForPort(port);
        string where = Name(port);
        return VsockTransport.Connect(cid, port, security, timeoutMs, where, errno => Explain(errno, service, sysfsRoot));
    }

    /// <summary>The reason a connect failed, in Hyper-V terms (errno 0: AF_VSOCK sockets cannot be created).</summary>
    internal static string? Explain(int errno, Guid service, string sysfsRoot)
    {
        string modules = HvSockAddress.MissingModules(sysfsRoot) ?? "hv_sock is loaded";
        string host = $"on the host, register service {service} under GuestCommunicationServices and run hostsim --listen hyperv:{service}";
        return errno switch
        {
            0 or Vsock.EAFNOSUPPORT or Vsock.ENODEV or Vsock.EADDRNOTAVAIL =>
                HvSockAddress.IsHyperVGuest(sysfsRoot)
                    ? $"this Hyper-V guest has no usable hv_sock: {modules}"
                    : $"no Hyper-V vsock transport here (no VMBus devices under {sysfsRoot}/bus/vmbus; hv_sock needs a Hyper-V guest with the hv_sock module)",
            Libc.ECONNREFUSED or Libc.ECONNRESET =>
                $"the host refused service {service}: nothing listens on it ({host})",
            Vsock.ETIMEDOUT =>
                $"the host did not answer for service {service}: Hyper-V drops connections to a service that is not registered or not listened on ({host})",
            Vsock.ENETUNREACH or Vsock.EHOSTUNREACH =>
                $"no route to the host ({modules}; another vsock transport, such as virtio-vsock, may have claimed AF_VSOCK)",
            _ => null,
        };
    }

    /// <summary>
    /// <c>auto</c>'s first try on a Hyper-V guest (VMBus devices in sysfs): hv_sock to
    /// <see cref="PortFromEnvironment"/>. Null, with a line to <paramref name="info"/> saying why, when
    /// this is no Hyper-V guest (silently), there is no secret, or the connection fails; the caller then
    /// tries the other transports. <paramref name="cid"/> and <paramref name="sysfsRoot"/> are for tests.
    /// </summary>
    internal static ITransport? TryAuto(int timeoutMs, TransportSecurity? security, Action<string>? info,
        string sysfsRoot = "/sys", uint cid = Vsock.VMADDR_CID_HOST)
    {
        if (!HvSockAddress.IsHyperVGuest(sysfsRoot))
            return null;
        uint port = PortFromEnvironment();
        try
        {
            security ??= TransportSecurity.FromEnvironment();
            if (security is null)
            {
                info?.Invoke($"transport auto: Hyper-V guest, but {Name(port)} needs a shared secret (GUESTICD_SECRET_FILE or GUESTICD_SECRET); trying the others");
                return null;
            }
            return Connect(port, security, timeoutMs, cid, sysfsRoot);
        }
        catch (Exception e) when (e is TransportClosedException or ArgumentException)
        {
            info?.Invoke($"transport auto: Hyper-V guest, {Name(port)} unusable ({e.Message}); trying the others");
            return null;
        }
    }
}
