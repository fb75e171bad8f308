namespace GuestIcd.Transport;

/// <summary>The transports a spec string can name.</summary>
public enum TransportKind
{
    /// <summary>Shared-memory rings set up over a unix socket (same machine).</summary>
    Unix,

    /// <summary>TCP to a remote host, with shared-secret authentication and optional TLS.</summary>
    Tcp,

    /// <summary>AF_VSOCK between a VM and its host, authenticated like TCP.</summary>
    Vsock,

    /// <summary>A QEMU guest: rings in an ivshmem BAR, doorbells over a virtio-serial port.</summary>
    Vm,

    /// <summary>A guest's virtio-gpu device (kernel DRM UAPI) whose backend is hostsim.</summary>
    VirtioGpu,

    /// <summary>A Linux guest under Hyper-V: AF_VSOCK to the host over hv_sock (HvSockTransport.cs).</summary>
    HvSock,

    /// <summary>A Windows host serving Hyper-V guests on an AF_HYPERV service GUID (HyperVListener.cs).</summary>
    HyperV,
}
