using System.Diagnostics.CodeAnalysis;
using System.Net.Security;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Security.Authentication;
using GuestIcd.Transport.Native;

namespace GuestIcd.Transport;

/// <summary>
/// The guest's end of a byte-stream transport (TCP or vsock, optionally TLS): writes collect in a buffer
/// that <see cref="Flush"/> sends, reads come through a receive buffer. Both buffers are allocated once, and
/// without TLS a read is poll() + recv() and a flush is send() on a non-blocking socket: nothing is
/// allocated per call.
/// </summary>
/// <remarks>
/// <para><see cref="ReadExactly"/> is all-or-nothing for reads up to <see cref="BufferBytes"/>: a timeout
/// leaves what arrived in the buffer for the next call, as with the shared-memory ring. Bigger reads go
/// straight into the caller's span; once their first byte is consumed a stall longer than the timeout
/// throws, since the stream can no longer be resynchronised.</para>
/// <para>Threading: one thread may write while another reads; two must not write (or read) at once.
/// <see cref="Shutdown"/> may come from any thread and unblocks both.</para>
/// </remarks>
public sealed class StreamTransport : ITransport
{
    /// <summary>Size of each of the send and receive buffers.</summary>
    public const int BufferBytes = 64 << 10;

    private readonly Socket _socket;
    private readonly SocketStream _raw;
    private readonly SslStream? _tls;
    private readonly byte[] _tx = new byte[BufferBytes];
    private readonly byte[] _rx = new byte[BufferBytes];
    private int _txCount;
    private int _rxStart;
    private int _rxEnd;
    private ConnectionState _state;

    private StreamTransport(Socket socket, SocketStream raw, SslStream? tls, string description)
    {
        _socket = socket;
        _raw = raw;
        _tls = tls;
        Description = description;
    }

    public string Description { get; }

    /// <summary>True when the stream runs through TLS.</summary>
    public bool IsTls => _tls != null;

    /// <summary>How long a send may wait for the peer to make room before the transport gives up with
    /// <see cref="TransportClosedException"/>; -1 (default) waits as long as the peer lives.</summary>
    public int WriteTimeoutMs
    {
        get => _raw.WriteTimeout;
        set => _raw.WriteTimeout = value;
    }

    // ================================================================== connect (shared by TCP and vsock)

    /// <summary>
    /// Takes a freshly connected non-blocking socket (see <see cref="SocketStream.Receive"/> for why), runs TLS (when <paramref name="security"/> asks for it) and
    /// the shared-secret authentication within <paramref name="deadline"/>, and returns the transport. The
    /// socket is disposed on failure.
    /// </summary>
    /// <param name="tlsName">The name the host's certificate must carry unless the settings override it.</param>
    /// <param name="hostName">"hostsim at tcp:HOST:PORT"-style name for messages.</param>
    internal static StreamTransport Establish(Socket socket, TransportSecurity security, string tlsName, long deadline, int timeoutMs,
        string description, string hostName)
    {
        var raw = new SocketStream(socket);
        SslStream? tls = null;
        bool done = false;
        try
        {
            Stream stream = raw;
            if (security.GuestWantsTls)
            {
                tls = StartTls(raw, security, tlsName, deadline, timeoutMs, hostName);
                stream = tls;
                description += " (tls)";
            }
            SharedSecretAuth.Authenticate(stream, raw, security.Secret, deadline, timeoutMs, hostName);
            var transport = new StreamTransport(socket, raw, tls, description);
            done = true;
            return transport;
        }
        finally
        {
            if (!done)
            {
                tls?.Dispose();
                raw.Dispose();
            }
        }
    }

    private static SslStream StartTls(SocketStream raw, TransportSecurity security, string tlsName, long deadline, int timeoutMs, string hostName)
    {
        var failure = new StrongBox<string?>();
        SslClientAuthenticationOptions options = TlsSetup.ClientOptions(security, tlsName, failure);
        var tls = new SslStream(raw, leaveInnerStreamOpen: true);
        int remaining = Libc.RemainingMs(deadline);
        raw.ReadTimeout = remaining == 0 ? 1 : remaining;
        raw.WriteTimeout = remaining < 0 ? -1 : Math.Max(1, remaining);
        try
        {
            tls.AuthenticateAsClient(options);
            return tls;
        }
        catch (Exception e) when (e is AuthenticationException or IOException or SocketException or ObjectDisposedException)
        {
            tls.Dispose();
            if (failure.Value != null)
                throw new TransportClosedException($"{hostName}: TLS refused: {failure.Value}");
            if (e is IOException io && SocketStream.IsTimeout(io))
                throw new TransportClosedException($"{hostName}: TLS handshake timed out after {timeoutMs} ms (does the host serve TLS?)");
            throw new TransportClosedException($"{hostName}: TLS handshake failed (does the host serve TLS?): {e.Message}");
        }
        finally
        {
            raw.ReadTimeout = Timeout.Infinite;
            raw.WriteTimeout = Timeout.Infinite;
        }
    }

    // ================================================================== ITransport

    public bool PeerClosed => _state.PeerClosed(_socket);

    public void Write(ReadOnlySpan<byte> data)
    {
        _state.ThrowIfUnusable(Description);
        if (data.Length <= _tx.Length - _txCount)
        {
            data.CopyTo(_tx.AsSpan(_txCount));
            _txCount += data.Length;
            return;
        }
        SendBuffered();
        if (data.Length >= _tx.Length / 2)
        {
            // Copying a big block through the buffer would only add a memcpy.
            Send(data);
            return;
        }
        data.CopyTo(_tx);
        _txCount = data.Length;
    }

    public void Flush()
    {
        _state.ThrowIfUnusable(Description);
        SendBuffered();
    }

    public bool ReadExactly(Span<byte> buffer, int timeoutMs)
    {
        _state.ThrowIfDisposed(Description);
        if (buffer.IsEmpty)
            return true;
        if (buffer.Length > _rx.Length)
            return ReadLarge(buffer, timeoutMs);

        long deadline = Libc.Deadline(timeoutMs);
        while (_rxEnd - _rxStart < buffer.Length)
        {
            if (_rx.Length - _rxStart < buffer.Length)
            {
                _rx.AsSpan(_rxStart, _rxEnd - _rxStart).CopyTo(_rx);
                _rxEnd -= _rxStart;
                _rxStart = 0;
            }
            int n = Receive(_rx.AsSpan(_rxEnd), deadline);
            if (n < 0)
                return false;
            _rxEnd += n;
        }
        _rx.AsSpan(_rxStart, buffer.Length).CopyTo(buffer);
        _rxStart += buffer.Length;
        if (_rxStart == _rxEnd)
            _rxStart = _rxEnd = 0;
        return true;
    }

    /// <summary>A read bigger than the receive buffer consumes as it goes (see the class remarks).</summary>
    private bool ReadLarge(Span<byte> buffer, int timeoutMs)
    {
        int done = Math.Min(_rxEnd - _rxStart, buffer.Length);
        _rx.AsSpan(_rxStart, done).CopyTo(buffer);
        _rxStart = _rxEnd = 0; // buffer.Length > _rx.Length, so everything buffered was taken
        long deadline = Libc.Deadline(timeoutMs);
        while (done < buffer.Length)
        {
            int n = Receive(buffer[done..], deadline);
            if (n < 0)
            {
                if (done == 0)
                    return false;
                _state.MarkBroken();
                throw new TransportClosedException(
                    $"{Description}: peer stalled for {timeoutMs} ms after {done} of {buffer.Length} bytes of one read; the stream is out of sync");
            }
            done += n;
            deadline = Libc.Deadline(timeoutMs);
        }
        return true;
    }

    // ================================================================== socket I/O

    /// <summary>Receives at least one byte into <paramref name="into"/>; -1 when nothing came by
    /// <paramref name="deadline"/>; throws when the peer is gone.</summary>
    private int Receive(Span<byte> into, long deadline)
    {
        if (_tls != null)
            return ReceiveTls(into, deadline);
        int n;
        try
        {
            n = _raw.Receive(into, deadline);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            throw _state.Closed(Description, e.Message);
        }
        if (n == 0)
            throw _state.Closed(Description, null);
        return n;
    }

    private int ReceiveTls(Span<byte> into, long deadline)
    {
        // Even at a spent deadline SslStream may hold decrypted bytes; a 0 ms timeout still returns those.
        _raw.ReadTimeout = Libc.RemainingMs(deadline);
        int n;
        try
        {
            n = _tls!.Read(into);
        }
        catch (IOException e) when (SocketStream.IsTimeout(e))
        {
            // SslStream keeps a half-received record for the next read, so nothing is lost.
            return -1;
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or AuthenticationException)
        {
            throw _state.Closed(Description, e.Message);
        }
        if (n == 0)
            throw _state.Closed(Description, null);
        return n;
    }

    private void SendBuffered()
    {
        if (_txCount == 0)
            return;
        int count = _txCount;
        _txCount = 0;
        Send(_tx.AsSpan(0, count));
    }

    private void Send(ReadOnlySpan<byte> data)
    {
        try
        {
            if (_tls != null)
                _tls.Write(data);
            else
                _raw.Write(data);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            if (e is IOException io && SocketStream.IsTimeout(io))
            {
                _state.MarkBroken();
                throw new TransportClosedException($"{Description}: peer made no room for {WriteTimeoutMs} ms; the stream is out of sync");
            }
            throw _state.Closed(Description, e.Message);
        }
    }

    // ================================================================== lifetime

    /// <summary>Ends the connection without releasing anything: the peer sees EOF, and this side's blocked
    /// or later calls throw <see cref="TransportClosedException"/>. Safe from any thread; call
    /// <see cref="Dispose"/> after the other threads have left.</summary>
    public void Shutdown() => _state.Shutdown(_socket);

    public void Dispose()
    {
        if (!_state.BeginDispose())
            return;
        _tls?.Dispose();
        _raw.Dispose();
    }
}
