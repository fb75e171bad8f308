using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Threading.Channels;

namespace GuestIcd.Transport;

/// <summary>
/// The host's end of the stream transports (TCP, vsock): one accept thread takes connections, each one
/// authenticates on its own (TLS when configured, then the shared secret, all within
/// <see cref="HandshakeTimeoutMs"/>), and <see cref="Accept"/> hands out the guests that passed as
/// <see cref="PipeTransport"/>s. Subclasses only create the listening socket and accept from it.
/// </summary>
/// <remarks>
/// A guest that connects and says nothing, or says the wrong thing, never holds up another: handshakes run
/// concurrently, and a newcomer is always taken: when its peer address already has
/// <see cref="MaxPendingPerPeer"/> unfinished handshakes, or <see cref="MaxPendingHandshakes"/> are
/// running, the oldest unfinished one (of that address, else of anyone) is dropped. A real guest
/// authenticates within milliseconds, so only silent or slow peers are ever old. A guest that fails is disconnected and <see cref="Accept"/> throws a
/// <see cref="TransportClosedException"/> naming the reason (never the secret); the listener stays usable,
/// so call Accept again. One thread calls Accept at a time; <see cref="Dispose"/> may come from any thread
/// and makes a blocked Accept return null.
/// </remarks>
public abstract class SocketTransportListener : ITransportListener
{
    /// <summary>Connections that may be authenticating at once.</summary>
    public const int MaxPendingHandshakes = 256;
    /// <summary>Connections one peer address may have authenticating at once.</summary>
    public const int MaxPendingPerPeer = 16;

    private readonly byte[] _secret;
    private readonly SslStreamCertificateContext? _certificate;
    private readonly Channel<Outcome> _outcomes = Channel.CreateUnbounded<Outcome>(new UnboundedChannelOptions { SingleReader = true });
    /// <summary>Unfinished handshakes in arrival order (oldest first); guarded by itself.</summary>
    private readonly LinkedList<PendingHandshake> _handshakes = new();
    private readonly CancellationTokenSource _stop = new();
    private Thread? _acceptThread;
    private int _pendingHandshakes;
    private int _queuedReports;
    private int _disposed;

    private readonly record struct Outcome(PipeTransport? Transport, string? Error);

    private sealed class PendingHandshake(string peerKey, CancellationTokenSource timeout)
    {
        public readonly string PeerKey = peerKey;
        public readonly CancellationTokenSource Timeout = timeout;
        public volatile string? EvictedBecause;
        public LinkedListNode<PendingHandshake>? Node;
    }

    /// <exception cref="ArgumentException">No usable secret, or the TLS certificate cannot be loaded.</exception>
    protected SocketTransportListener(TransportSecurity security, string what)
    {
        if (security is null)
            throw new ArgumentException($"{what}: refusing to listen without a shared secret (--secret-file); remote guests must authenticate");
        security.Validate(what);
        _secret = security.Secret.ToArray();
        if (security.HostWantsTls)
            _certificate = TlsSetup.LoadServerCertificate(security);
    }

    public abstract string Description { get; }

    /// <summary>True when guests must speak TLS.</summary>
    public bool IsTls => _certificate != null;

    /// <summary>How long a connected guest has for TLS and authentication together.</summary>
    public int HandshakeTimeoutMs { get; set; } = 2000;

    /// <summary>Connections accepted but not yet through authentication (for diagnostics and tests).</summary>
    public int PendingHandshakes => Volatile.Read(ref _pendingHandshakes);

    /// <summary>Subclasses call this at the end of their constructor, once the socket listens.</summary>
    protected void StartAccepting()
    {
        _acceptThread = new Thread(AcceptLoop) { IsBackground = true, Name = "accept " + Description };
        _acceptThread.Start();
    }

    /// <summary>Blocks until a guest connects; returns its socket (blocking mode) and a name for it, or
    /// null once the listener is closed. Only the accept thread calls it.</summary>
    protected abstract Socket? AcceptSocket(CancellationToken stop, out string peer);

    /// <summary>Closes the listening socket; a blocked <see cref="AcceptSocket"/> must return null.</summary>
    protected abstract void CloseListeningSocket();

    ITransport? ITransportListener.Accept(CancellationToken cancellationToken) => Accept(cancellationToken);

    /// <summary>Waits for the next authenticated guest. Returns null when cancelled or disposed.</summary>
    /// <exception cref="TransportClosedException">A guest was dropped (failed or late authentication); the
    /// message says why. The listener stays usable.</exception>
    public PipeTransport? Accept(CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _disposed) != 0)
            return null;
        Outcome outcome;
        try
        {
            ValueTask<Outcome> next = _outcomes.Reader.ReadAsync(cancellationToken);
            outcome = next.IsCompletedSuccessfully ? next.Result : next.AsTask().GetAwaiter().GetResult();
        }
        catch (OperationCanceledException)
        {
            return null;
        }
        catch (ChannelClosedException)
        {
            return null;
        }
        if (outcome.Transport != null)
            return outcome.Transport;
        Interlocked.Decrement(ref _queuedReports);
        throw new TransportClosedException(outcome.Error!);
    }

    private void AcceptLoop()
    {
        CancellationToken stop = _stop.Token;
        while (!stop.IsCancellationRequested)
        {
            Socket? socket;
            string peer;
            try
            {
                socket = AcceptSocket(stop, out peer);
            }
            catch (Exception e) when (e is SocketException or IOException)
            {
                if (stop.IsCancellationRequested)
                    return;
                // Per-connection failures (a guest that vanished before accept) are not worth reporting.
                Thread.Sleep(10);
                continue;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            if (socket == null)
                return;
            Interlocked.Increment(ref _pendingHandshakes);
            var pending = new PendingHandshake(PeerKey(peer), CancellationTokenSource.CreateLinkedTokenSource(_stop.Token));
            lock (_handshakes)
            {
                PendingHandshake? victim = null;
                int ofPeer = 0;
                foreach (PendingHandshake h in _handshakes)
                {
                    if (h.PeerKey == pending.PeerKey && h.EvictedBecause == null && ofPeer++ == 0)
                        victim = h;
                }
                if (ofPeer >= MaxPendingPerPeer)
                    Evict(victim!, $"was evicted: its address has {ofPeer} unfinished handshakes (at most {MaxPendingPerPeer})");
                else if (_handshakes.Count >= MaxPendingHandshakes && _handshakes.First!.Value is { EvictedBecause: null } oldest)
                    Evict(oldest, $"was evicted: {_handshakes.Count} unfinished handshakes (at most {MaxPendingHandshakes}) and it was the oldest");
                pending.Node = _handshakes.AddLast(pending);
            }
            _ = Task.Run(() => HandshakeAsync(socket, peer, pending));
        }
    }

    private static void Evict(PendingHandshake victim, string reason)
    {
        victim.EvictedBecause = reason;
        victim.Timeout.Cancel();
    }

    /// <summary>"127.0.0.1:5555" → "127.0.0.1", "vsock:3:1234" → "vsock:3": the peer without its port.</summary>
    private static string PeerKey(string peer)
    {
        int colon = peer.LastIndexOf(':');
        return colon > 0 ? peer[..colon] : peer;
    }

    private async Task HandshakeAsync(Socket socket, string peer, PendingHandshake pending)
    {
        var raw = new SocketStream(socket);
        Stream stream = raw;
        PipeTransport? transport = null;
        string? error = null;
        int timeoutMs = HandshakeTimeoutMs;
        bool inTls = false;
        using CancellationTokenSource timeout = pending.Timeout;
        timeout.CancelAfter(timeoutMs);
        try
        {
            if (_certificate != null)
            {
                var tls = new SslStream(raw, leaveInnerStreamOpen: false);
                stream = tls;
                inTls = true;
                await tls.AuthenticateAsServerAsync(TlsSetup.ServerOptions(_certificate), timeout.Token).ConfigureAwait(false);
                inTls = false;
            }
            error = await SharedSecretAuth.ServeAsync(stream, _secret, timeout.Token).ConfigureAwait(false);
            if (error == null)
                transport = new PipeTransport(socket, stream, _certificate != null, $"{Description} guest {peer}{(_certificate != null ? " (tls)" : "")}");
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
            error = null; // the listener is closing: nobody to tell
        }
        catch (OperationCanceledException)
        {
            error = pending.EvictedBecause ?? $"did not complete {(_certificate != null ? "TLS and " : "")}authentication within {timeoutMs} ms";
        }
        catch (AuthenticationException e)
        {
            error = $"failed the TLS handshake ({e.Message})";
        }
        catch (Exception e) when (inTls && e is IOException or SocketException or ObjectDisposedException)
        {
            error = $"broke off the TLS handshake (a plain guest, or one that rejected our certificate?): {e.Message}";
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            error = e is EndOfStreamException
                ? "closed the connection during authentication"
                : $"failed during authentication ({e.Message})";
        }
        catch (Exception e)
        {
            // Whatever went wrong, this connection is dropped and reported; the accept thread carries on.
            error = $"failed during authentication ({e.GetType().Name}: {e.Message})";
        }
        finally
        {
            Interlocked.Decrement(ref _pendingHandshakes);
            lock (_handshakes)
                _handshakes.Remove(pending.Node!);
        }

        if (transport != null)
        {
            if (!_outcomes.Writer.TryWrite(new Outcome(transport, null)))
                transport.Dispose();
            return;
        }
        stream.Dispose();
        socket.Dispose();
        // Reports are bounded too: a flood that nobody reads must not grow the queue without end.
        if (error != null && Interlocked.Increment(ref _queuedReports) <= MaxPendingHandshakes)
        {
            if (!_outcomes.Writer.TryWrite(new Outcome(null, $"{Description}: dropped guest {peer}: it {error}")))
                Interlocked.Decrement(ref _queuedReports);
        }
        else if (error != null)
            Interlocked.Decrement(ref _queuedReports);
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        _stop.Cancel();
        CloseListeningSocket();
        _outcomes.Writer.TryComplete();
        // Guests that passed but were never taken: close them, so nothing leaks.
        while (_outcomes.Reader.TryRead(out Outcome outcome))
            outcome.Transport?.Dispose();
        if (_acceptThread != null && _acceptThread != Thread.CurrentThread)
            _acceptThread.Join(TimeSpan.FromSeconds(5));
        // Handshakes still in flight fail on the zeroed key; they are being torn down anyway.
        CryptographicOperations.ZeroMemory(_secret);
        Dispose(disposing: true);
    }

    /// <summary>Subclasses release what else they hold.</summary>
    protected virtual void Dispose(bool disposing)
    {
    }
}
