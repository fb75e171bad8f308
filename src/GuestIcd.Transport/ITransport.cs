namespace GuestIcd.Transport;

/// <summary>
/// One guest↔host connection: an ordered, reliable byte stream in each direction.
/// Every backend implements this and nothing above it knows which one it talks to; one file each:
/// UnixRingTransport (shared-memory rings, also under the vm and virtio-gpu transports), StreamTransport
/// (guest, TCP and vsock) and PipeTransport (host end of a stream), VmTransport (ivshmem + virtio-serial),
/// VirtioGpuTransport (the guest kernel's virtio-gpu DRM driver).
/// </summary>
/// <remarks>
/// The shape follows Venus's vn_renderer ops, cut to what the protocol uses. Submit is
/// <see cref="Write"/> + <see cref="Flush"/>, wait is <see cref="ReadExactly"/> with a timeout (replies come
/// in the same stream). Shared memory is <see cref="ISharedHeap"/>, on the backends that have it: buffer
/// objects are ranges of that heap (PrivateCommands.AllocateSharedMemory) rather than objects of the
/// transport, and sync is the protocol's feedback slots in the heap plus each backend's own doorbell
/// (futex, socket byte, virtio-gpu fence), which the interface never shows. Liveness is <see cref="PeerClosed"/>.
/// </remarks>
public interface ITransport : IDisposable
{
    /// <summary>Appends bytes to the outgoing stream; blocks while the peer has not drained enough
    /// room. Throws <see cref="TransportClosedException"/> when the peer is gone.</summary>
    void Write(ReadOnlySpan<byte> data);

    /// <summary>Publishes what was written and wakes the peer if (and only if) it sleeps.</summary>
    void Flush();

    /// <summary>Fills <paramref name="buffer"/> completely. Returns false when nothing arrived within
    /// <paramref name="timeoutMs"/> (-1 waits forever, but a dead peer still ends the wait with
    /// <see cref="TransportClosedException"/>).</summary>
    bool ReadExactly(Span<byte> buffer, int timeoutMs);

    /// <summary>True once the peer has closed the connection or died. Checks the connection itself now (one
    /// non-blocking poll, nothing consumed), so a thread busy elsewhere, such as a host waiting in the driver
    /// for a guest, can notice the guest leaving; bytes the peer sent before leaving may still be unread.</summary>
    bool PeerClosed { get; }

    /// <summary>Human-readable peer description for log lines (socket path, address).</summary>
    string Description { get; }
}

/// <summary>The host side: accepts guest connections.</summary>
public interface ITransportListener : IDisposable
{
    /// <summary>Waits for the next guest. Returns null when the listener was disposed or cancelled.</summary>
    ITransport? Accept(CancellationToken cancellationToken);

    string Description { get; }
}

/// <summary>The peer closed the connection or died.</summary>
public sealed class TransportClosedException(string message) : Exception(message);
