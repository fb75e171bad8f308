namespace GuestIcd.Transport;

/// <summary>Opens a transport from a spec string (see <see cref="TransportSpec"/>): the one place that
/// maps configuration to a backend, for the guest (<see cref="Connect"/>) and the host (<see cref="Listen"/>).</summary>
public static class Transports
{
    /// <summary>
    /// Connects a guest to the host named by <paramref name="spec"/> within <paramref name="timeoutMs"/>.
    /// TCP and vsock need a shared secret: <paramref name="security"/>, or else the environment
    /// (<see cref="TransportSecurity.FromEnvironment()"/>).
    /// </summary>
    /// <param name="defaultUnixPath">What <c>auto</c> means; Transport does not know the protocol's default.</param>
    /// <param name="heapBytes">Shared heap for HOST_VISIBLE memory, on transports that have one (unix).</param>
    /// <param name="debug">Debug-level lines (which path a transport took), or null.</param>
    /// <exception cref="ArgumentException">Malformed spec, unknown scheme, or missing/unusable secret.</exception>
    /// <exception cref="TransportClosedException">The host is unreachable, refused us, or timed out.</exception>
    public static ITransport Connect(string spec, int timeoutMs, string? defaultUnixPath = null,
        TransportSecurity? security = null, long heapBytes = 0, Action<string>? info = null, Action<string>? debug = null)
    {
        // A Hyper-V guest has neither virtio device; hv_sock is its way out, so it goes first.
        if ((string.IsNullOrEmpty(spec) || spec == "auto") && HvSockTransport.TryAuto(timeoutMs, security, info) is { } hv)
            return hv;
        if ((string.IsNullOrEmpty(spec) || spec == "auto") && VirtioGpuTransport.Present())
        {
            // A virtio-gpu device whose backend is ours: the VM transport every hypervisor offers.
            try
            {
                return VirtioGpuTransport.Connect(null, timeoutMs, heapBytes, debug);
            }
            catch (TransportClosedException e)
            {
                info?.Invoke($"transport auto: virtio-gpu unusable ({e.Message}); trying the others");
            }
        }
        if ((string.IsNullOrEmpty(spec) || spec == "auto") && VmTransport.PortPresent())
        {
            // Inside a QEMU guest with our virtio-serial port: prefer it, fall back to the unix default.
            try
            {
                return VmTransport.Connect(timeoutMs, heapBytes);
            }
            catch (TransportClosedException e)
            {
                info?.Invoke($"transport auto: vm unusable ({e.Message}); falling back to unix:{defaultUnixPath}");
            }
        }
        TransportSpec parsed = TransportSpec.ParseGuest(spec, defaultUnixPath);
        switch (parsed.Kind)
        {
            case TransportKind.Vm:
                return VmTransport.Connect(timeoutMs, heapBytes);
            case TransportKind.VirtioGpu:
                return VirtioGpuTransport.Connect(parsed.Address, timeoutMs, heapBytes, debug);
            case TransportKind.Unix:
                return UnixRingTransport.Connect(parsed.Address, timeoutMs, heapBytes: heapBytes);
            case TransportKind.Tcp:
                return TcpTransport.Connect(parsed.Address, (int)parsed.Port, GuestSecurity(parsed, security), timeoutMs);
            case TransportKind.HvSock:
                return HvSockTransport.Connect(parsed.Port, GuestSecurity(parsed, security), timeoutMs);
            default:
                return VsockTransport.Connect(parsed.Cid, parsed.Port, GuestSecurity(parsed, security), timeoutMs);
        }
    }

    /// <summary>
    /// Starts a host listener at <paramref name="spec"/>. TCP and vsock refuse to start without a shared
    /// secret in <paramref name="security"/>; unix ignores it (the socket file's permissions guard it).
    /// </summary>
    /// <exception cref="ArgumentException">Malformed spec, unknown scheme, missing secret, or an unloadable
    /// TLS certificate.</exception>
    /// <exception cref="IOException">The address cannot be bound.</exception>
    public static ITransportListener Listen(string spec, TransportSecurity? security)
    {
        TransportSpec parsed = TransportSpec.ParseHost(spec);
        switch (parsed.Kind)
        {
            case TransportKind.Unix:
                return new UnixRingListener(parsed.Address);
            case TransportKind.Vm:
                return new VmTransportListener(parsed.Address, parsed.ShmPath!, parsed.ShmSize);
            case TransportKind.Tcp:
                return new TcpTransportListener(parsed.TcpEndPoint(), HostSecurity(parsed, security));
            case TransportKind.HyperV:
                return new HyperVListener(parsed.ServiceId, parsed.VmId, HostSecurity(parsed, security));
            default:
                return new VsockTransportListener(parsed.Port, HostSecurity(parsed, security));
        }
    }

    private static TransportSecurity GuestSecurity(TransportSpec spec, TransportSecurity? security) =>
        security ?? TransportSecurity.FromEnvironment()
        ?? throw new ArgumentException($"{spec} needs a shared secret: set GUESTICD_SECRET_FILE (or GUESTICD_SECRET) to the host's secret");

    private static TransportSecurity HostSecurity(TransportSpec spec, TransportSecurity? security) =>
        security ?? throw new ArgumentException($"{spec}: refusing to listen without a shared secret (--secret-file); remote guests must authenticate");
}
