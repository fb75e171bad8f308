using GuestIcd.Transport;
using GuestIcd.VirtioGpu;
using Microsoft.Extensions.Logging;

namespace GuestIcd.HostSim;

/// <summary><c>--listen vhost-user-gpu:SOCKET</c>: hostsim as the backend of a VM's virtio-gpu device
/// (hostsim/GuestIcd.VirtioGpu). The capset a guest reads before it creates a context carries this host's
/// protocol version and which device it serves.</summary>
internal static class VirtioGpuServe
{
    public const string Scheme = "vhost-user-gpu:";

    public static bool Matches(string spec) => spec.StartsWith(Scheme, StringComparison.Ordinal);

    public static ITransportListener Listen(string spec, string deviceName, ushort major, ushort minor, ILoggerFactory logs)
    {
        string path = spec[Scheme.Length..];
        if (path.Length == 0)
            throw new ArgumentException($"transport '{spec}': vhost-user-gpu needs the socket QEMU's vhost-user chardev connects to");
        var options = new VirtioGpuOptions { Capset = GuestIcdCapset.Encode(major, minor, $"hostsim: {deviceName}") };
        var log = logs.CreateLogger("virtio-gpu");
        var listener = new VhostUserGpuListener(path, options, log);
        // Each context of our capset becomes a session that comes out of the listener's Accept.
        listener.Hosts = _ => new GuestIcdContextHost(listener.Offer, log);
        return listener;
    }
}
