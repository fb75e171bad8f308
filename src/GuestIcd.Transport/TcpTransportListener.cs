using System.Net;
using System.Net.Sockets;

namespace GuestIcd.Transport;

/// <summary>
/// The host's TCP listener for remote guests (see <see cref="SocketTransportListener"/> for the accept
/// and authentication rules). Refuses to start without a shared secret.
/// </summary>
public sealed class TcpTransportListener : SocketTransportListener
{
    private readonly Socket _listen;

    /// <summary>Binds <paramref name="endPoint"/> (port 0: the kernel picks one, see <see cref="Port"/>) and
    /// starts accepting.</summary>
    /// <exception cref="ArgumentException">No usable secret, or the TLS certificate cannot be loaded.</exception>
    /// <exception cref="IOException">The address cannot be bound (in use, not ours).</exception>
    public TcpTransportListener(IPEndPoint endPoint, TransportSecurity security)
        : base(security, $"tcp:{Format(endPoint ?? throw new ArgumentNullException(nameof(endPoint)))}")
    {
        _listen = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (endPoint.AddressFamily == AddressFamily.InterNetworkV6 && endPoint.Address.Equals(IPAddress.IPv6Any))
                _listen.DualMode = true;
            _listen.Bind(endPoint);
            _listen.Listen(128);
        }
        catch (SocketException e)
        {
            _listen.Dispose();
            throw new IOException($"tcp:{Format(endPoint)}: cannot listen ({e.SocketErrorCode}: {e.Message})");
        }
        LocalEndPoint = (IPEndPoint)_listen.LocalEndPoint!;
        Description = $"tcp:{Format(LocalEndPoint)}";
        StartAccepting();
    }

    public override string Description { get; }

    /// <summary>The address and port actually bound.</summary>
    public IPEndPoint LocalEndPoint { get; }

    /// <summary>The port actually bound (useful after asking for port 0).</summary>
    public int Port => LocalEndPoint.Port;

    internal static string Format(IPEndPoint endPoint) => $"{TcpTransport.FormatHost(endPoint.Address.ToString())}:{endPoint.Port}";

    protected override Socket? AcceptSocket(CancellationToken stop, out string peer)
    {
        Socket socket = _listen.Accept();
        TcpTransport.Configure(socket);
        peer = socket.RemoteEndPoint is IPEndPoint remote ? Format(remote) : "(unknown address)";
        return socket;
    }

    // Closing the socket is what wakes a thread blocked in Accept.
    protected override void CloseListeningSocket() => _listen.Dispose();
}
