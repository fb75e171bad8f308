using System.Diagnostics.CodeAnalysis;
using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace GuestIcd.Transport;

/// <summary>
/// The life of a socket stream connection (the guest's <see cref="StreamTransport"/>, the host's
/// <see cref="PipeTransport"/>): broken (the stream is out of sync or the peer went), shut down (by this
/// side, from any thread), disposed; and the exceptions that say which. Kept as a struct field of the
/// transport, so the checks on every call stay inlined field reads.
/// </summary>
internal struct ConnectionState
{
    private volatile bool _broken;
    private volatile bool _shutDown;
    private int _disposed;

    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>Part of a message may be on the wire, or the peer is gone: no later call can succeed.</summary>
    public void MarkBroken() => _broken = true;

    public bool PeerClosed(Socket socket) => _broken || IsDisposed || PeerLiveness.HungUp(socket);

    /// <summary>Ends the connection from any thread: the peer sees EOF, this side's blocked and later calls throw.</summary>
    public void Shutdown(Socket socket)
    {
        if (IsDisposed)
            return;
        _shutDown = true;
        ShutdownQuietly(socket);
    }

    /// <summary>True for the one caller that gets to release the connection.</summary>
    public bool BeginDispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return false;
        _shutDown = true;
        return true;
    }

    /// <summary>shutdown(SHUT_RDWR), for a socket that may already be closed by its peer or disposed.</summary>
    public static void ShutdownQuietly(Socket socket)
    {
        try
        {
            socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly void ThrowIfDisposed(string description)
    {
        if (_disposed != 0)
            ThrowDisposed(description);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void ThrowIfUnusable(string description)
    {
        if (_disposed != 0)
            ThrowDisposed(description);
        if (_broken || _shutDown)
            throw Closed(description, null);
    }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowDisposed(string description) => throw new ObjectDisposedException(description);

    /// <summary>Marks the connection broken and says why: shut down here, the peer closed it, or <paramref name="detail"/>.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public TransportClosedException Closed(string description, string? detail)
    {
        _broken = true;
        if (_shutDown)
            return new($"{description}: transport was shut down");
        return new(detail == null ? $"{description}: peer closed the connection" : $"{description}: connection lost ({detail})");
    }
}
