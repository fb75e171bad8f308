using System.Net.Sockets;
using GuestIcd.Transport.Native;

namespace GuestIcd.Transport;

/// <summary>
/// A <see cref="Stream"/> over a connected stream socket of any family. NetworkStream insists on a socket
/// .NET knows to be connected, which an AF_VSOCK descriptor wrapped from libc never is, so TCP and vsock
/// both use this one and share every line above it (TLS, authentication, pipelines).
/// </summary>
/// <remarks>Synchronous reads and writes wait in poll() and honour <see cref="ReadTimeout"/> and
/// <see cref="WriteTimeout"/>, so a timeout never leaves a receive half done; it surfaces as an
/// <see cref="IOException"/> whose inner exception is a <see cref="TimeoutException"/> (see
/// <see cref="IsTimeout"/>), which SslStream passes through unchanged. They work on blocking and
/// non-blocking sockets alike; the asynchronous ones are the socket's own and throw its SocketExceptions. Disposing the stream disposes
/// the socket.</remarks>
internal sealed class SocketStream(Socket socket) : Stream
{
    private int _readTimeout = Timeout.Infinite;
    private int _writeTimeout = Timeout.Infinite;
    private int _disposed;

    public Socket Socket => socket;

    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override bool CanSeek => false;
    public override bool CanTimeout => true;

    public override int ReadTimeout
    {
        get => _readTimeout;
        set => _readTimeout = value < 0 ? Timeout.Infinite : value;
    }

    public override int WriteTimeout
    {
        get => _writeTimeout;
        set => _writeTimeout = value < 0 ? Timeout.Infinite : value;
    }

    /// <summary>True when <paramref name="e"/> is (or wraps) this stream's read or write timeout.</summary>
    public static bool IsTimeout(Exception e) =>
        e.InnerException is TimeoutException
        || e.InnerException is SocketException { SocketErrorCode: SocketError.TimedOut };

    /// <summary>
    /// Waits until the socket is readable or <paramref name="deadline"/> (a Stopwatch timestamp,
    /// long.MaxValue for none) passes, then receives. Returns the byte count, 0 at EOF, -1 on timeout.
    /// </summary>
    /// <remarks>On a non-blocking socket (the guest's) this is poll() + recv() and allocates nothing:
    /// .NET runs a blocking socket's receive through its async engine, which allocates whenever it has to
    /// wait, so the guest keeps its socket non-blocking and does the waiting here.</remarks>
    /// <exception cref="IOException">The socket failed.</exception>
    public int Receive(Span<byte> buffer, long deadline)
    {
        while (true)
        {
            int remaining = Libc.RemainingMs(deadline);
            if (!socket.Poll(Microseconds(remaining), SelectMode.SelectRead))
            {
                if (Libc.RemainingMs(deadline) == 0)
                    return -1;
                continue; // a wait longer than Poll can express, in slices
            }
            int n = socket.Receive(buffer, SocketFlags.None, out SocketError error);
            if (error == SocketError.Success)
                return n;
            if (error != SocketError.WouldBlock)
                throw new IOException($"receive failed ({error})", new SocketException((int)error));
        }
    }

    /// <summary>Sends everything, waiting in poll() while the peer's window is full; throws an
    /// <see cref="IOException"/> wrapping a <see cref="TimeoutException"/> after <see cref="WriteTimeout"/>
    /// without progress.</summary>
    public override void Write(ReadOnlySpan<byte> buffer)
    {
        long deadline = 0;
        while (!buffer.IsEmpty)
        {
            int n = socket.Send(buffer, SocketFlags.None, out SocketError error);
            if (error == SocketError.Success)
            {
                buffer = buffer[n..];
                deadline = 0;
                continue;
            }
            if (error != SocketError.WouldBlock)
                throw new IOException($"send failed ({error})", new SocketException((int)error));
            if (deadline == 0)
                deadline = Libc.Deadline(_writeTimeout);
            if (!socket.Poll(Microseconds(Libc.RemainingMs(deadline)), SelectMode.SelectWrite) && Libc.RemainingMs(deadline) == 0)
                throw new IOException($"the peer made no room within {_writeTimeout} ms", new TimeoutException());
        }
    }

    private static int Microseconds(int milliseconds) =>
        milliseconds < 0 ? -1 : (int)Math.Min(milliseconds * 1000L, int.MaxValue);

    public override int Read(Span<byte> buffer)
    {
        if (buffer.IsEmpty)
            return 0;
        int n = Receive(buffer, Libc.Deadline(_readTimeout));
        if (n < 0)
            throw new IOException($"no data within {_readTimeout} ms", new TimeoutException());
        return n;
    }

    public override int Read(byte[] buffer, int offset, int count)
    {
        ValidateBufferArguments(buffer, offset, count);
        return Read(buffer.AsSpan(offset, count));
    }

    // The socket's own awaitables are cached per socket, so the host's pipe reads allocate nothing here.
    // Failures stay SocketExceptions: every caller of this internal stream handles those.
    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken);

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
    {
        ValidateBufferArguments(buffer, offset, count);
        return ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
    }

    public override void Write(byte[] buffer, int offset, int count)
    {
        ValidateBufferArguments(buffer, offset, count);
        Write(buffer.AsSpan(offset, count));
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ValueTask<int> send = socket.SendAsync(buffer, SocketFlags.None, cancellationToken);
        return send.IsCompletedSuccessfully && send.Result == buffer.Length ? default : WriteRestAsync(send, buffer, cancellationToken);
    }

    private async ValueTask WriteRestAsync(ValueTask<int> pending, ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken)
    {
        buffer = buffer[await pending.ConfigureAwait(false)..];
        while (!buffer.IsEmpty)
            buffer = buffer[await socket.SendAsync(buffer, SocketFlags.None, cancellationToken).ConfigureAwait(false)..];
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
    {
        ValidateBufferArguments(buffer, offset, count);
        return WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
    }

    public override void Flush()
    {
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing && Interlocked.Exchange(ref _disposed, 1) == 0)
            socket.Dispose();
        base.Dispose(disposing);
    }
}
