using System.Net;
using System.Net.Sockets;
using GuestIcd.Transport.Native;

namespace GuestIcd.Transport;

/// <summary>
/// The guest's TCP transport to a remote GPU host: connect with a timeout, TLS when configured, then the
/// shared-secret handshake (<see cref="SharedSecretAuth"/>); the result is a <see cref="StreamTransport"/>.
/// </summary>
public static class TcpTransport
{
    /// <summary>
    /// Connects to a <see cref="TcpTransportListener"/> at <paramref name="host"/>:<paramref name="port"/>
    /// and authenticates, all within <paramref name="timeoutMs"/> (-1: no limit).
    /// </summary>
    /// <exception cref="TransportClosedException">Unreachable, refused, timed out, TLS rejected, or the
    /// host refused the secret; the message names the host and says which.</exception>
    /// <exception cref="ArgumentException">Bad arguments, or no usable secret.</exception>
    public static ITransport Connect(string host, int port, TransportSecurity security, int timeoutMs) =>
        ConnectStream(host, port, security, timeoutMs);

    /// <summary><see cref="Connect"/> with the concrete type, for callers that want its extras.</summary>
    public static StreamTransport ConnectStream(string host, int port, TransportSecurity security, int timeoutMs)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(security);
        if (port is < 1 or > 65535)
            throw new ArgumentOutOfRangeException(nameof(port), port, "TCP port must be 1..65535");
        string bare = host.StartsWith('[') && host.EndsWith(']') ? host[1..^1] : host;
        if (bare.Length == 0)
            throw new ArgumentException("empty host name");
        string where = $"tcp:{FormatHost(bare)}:{port}";
        security.Validate(where);

        long deadline = Libc.Deadline(timeoutMs);
        IPAddress[] addresses = Resolve(bare, where, deadline, timeoutMs);
        Socket socket = ConnectAny(addresses, port, where, deadline, timeoutMs);
        return StreamTransport.Establish(socket, security, bare, deadline, timeoutMs, where, $"hostsim at {FormatHost(bare)}:{port}");
    }

    /// <summary>IPv6 literals in brackets, everything else as is.</summary>
    internal static string FormatHost(string host) => host.Contains(':', StringComparison.Ordinal) ? $"[{host}]" : host;

    /// <summary>Socket options both ends use: no Nagle delay (requests are small and latency-bound), and
    /// keep-alives so a peer whose machine vanished without a FIN is noticed within about a minute.</summary>
    internal static void Configure(Socket socket)
    {
        socket.NoDelay = true;
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
            socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveTime, 30);
            socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveInterval, 5);
            socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveRetryCount, 4);
        }
        catch (SocketException)
        {
            // Keep-alive tuning is an improvement, not a requirement.
        }
    }

    private static IPAddress[] Resolve(string host, string where, long deadline, int timeoutMs)
    {
        if (IPAddress.TryParse(host, out IPAddress? literal))
            return [literal];
        using var cancel = new CancellationTokenSource();
        int remaining = Libc.RemainingMs(deadline);
        if (remaining >= 0)
            cancel.CancelAfter(remaining);
        try
        {
            IPAddress[] found = Dns.GetHostAddressesAsync(host, cancel.Token).GetAwaiter().GetResult();
            if (found.Length == 0)
                throw new TransportClosedException($"cannot connect to {where}: the name has no addresses");
            return found;
        }
        catch (OperationCanceledException)
        {
            throw new TransportClosedException($"cannot connect to {where}: resolving the name timed out after {timeoutMs} ms");
        }
        catch (SocketException e)
        {
            throw new TransportClosedException($"cannot connect to {where}: the name does not resolve ({e.SocketErrorCode})");
        }
    }

    private static Socket ConnectAny(IPAddress[] addresses, int port, string where, long deadline, int timeoutMs)
    {
        string? lastError = null;
        foreach (IPAddress address in addresses)
        {
            int remaining = Libc.RemainingMs(deadline);
            if (remaining == 0)
                break;
            var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                Configure(socket);
                // Non-blocking connect + poll gives the timeout, and the socket stays non-blocking for good:
                // StreamTransport waits in poll() itself, which allocates nothing (see SocketStream.Receive).
                socket.Blocking = false;
                try
                {
                    socket.Connect(new IPEndPoint(address, port));
                }
                catch (SocketException e) when (e.SocketErrorCode is SocketError.WouldBlock or SocketError.InProgress)
                {
                }
                SocketError error = WaitConnected(socket, deadline);
                if (error == SocketError.Success)
                    return socket;
                lastError = error == SocketError.TimedOut ? null : Describe(error);
                socket.Dispose();
                if (error == SocketError.TimedOut)
                    break;
            }
            catch (SocketException e)
            {
                lastError = Describe(e.SocketErrorCode);
                socket.Dispose();
            }
        }
        throw new TransportClosedException(lastError == null
            ? $"cannot connect to {where}: timed out after {timeoutMs} ms"
            : $"cannot connect to {where}: {lastError}");
    }

    private static SocketError WaitConnected(Socket socket, long deadline)
    {
        while (true)
        {
            int remaining = Libc.RemainingMs(deadline);
            if (remaining == 0)
                return SocketError.TimedOut;
            // SelectError too: a refused connect may report only an error, never writability.
            bool done = socket.Poll((int)Math.Min(remaining * 1000L, int.MaxValue), SelectMode.SelectWrite)
                || socket.Poll(0, SelectMode.SelectError);
            var error = (SocketError)(int)socket.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.Error)!;
            if (error != SocketError.Success)
                return error;
            if (done)
                return SocketError.Success;
        }
    }

    private static string Describe(SocketError error) => error switch
    {
        SocketError.ConnectionRefused => "nothing is listening there (connection refused)",
        SocketError.HostUnreachable or SocketError.NetworkUnreachable => "the host is unreachable",
        SocketError.TimedOut => "timed out",
        _ => $"connect failed ({error})",
    };
}
