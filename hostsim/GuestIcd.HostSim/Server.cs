using GuestIcd.Protocol;
using GuestIcd.Protocol.Wire;
using GuestIcd.Transport;
using Microsoft.Extensions.Logging;

namespace GuestIcd.HostSim;

/// <param name="HandshakeTimeoutMs">From connect to the end of the hello (transport handshake,
/// authentication and hello each get this long): short, so silent peers are dropped quickly.</param>
internal sealed record ServerOptions(string DeviceName, ushort ProtocolMajor, ushort ProtocolMinor,
    int HandshakeTimeoutMs = 2000, int MessageTimeoutMs = 10000, bool Validation = false, bool Strict = false, Quotas? Quotas = null, string? CaptureDir = null);

/// <summary>Accepts guests on every listener, does each one's hello on a thread of its own, and then runs
/// the session in a worker process (<see cref="Supervisor"/>), or with <c>--in-process</c> on that thread,
/// so a guest that misbehaves, hangs or crashes the driver affects no other.</summary>
internal sealed class Server(IReadOnlyList<ITransportListener> listeners, ServerOptions options, ILoggerFactory logs, Supervisor? supervisor)
{
    readonly ILogger _log = logs.CreateLogger("hostsim");
    int _sessions;

    public void Run(CancellationToken stop)
    {
        foreach (var l in listeners)
        {
            // The listeners' own handshakes (ring preamble, TLS, secret) get the same short deadline.
            if (l is UnixRingListener u) u.HandshakeTimeoutMs = options.HandshakeTimeoutMs;
            else if (l is SocketTransportListener t) t.HandshakeTimeoutMs = options.HandshakeTimeoutMs;
        }
        var threads = listeners.Select(l => new Thread(() => AcceptLoop(l, stop)) { IsBackground = true, Name = "accept " + l.Description }).ToList();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
    }

    void AcceptLoop(ITransportListener listener, CancellationToken stop)
    {
        _log.LogInformation("listening on {Listener}", listener.Description);
        while (!stop.IsCancellationRequested)
        {
            ITransport? t;
            try { t = listener.Accept(stop); }
            catch (OperationCanceledException) { break; }
            catch (Exception e)
            {
                LiveStatus.Refused(LiveStatus.RefusalOf(e.Message));
                _log.LogWarning("rejected a connection on {Listener}: {Error}", listener.Description, e.Message);
                continue;
            }
            if (t is null) break;
            int id = Interlocked.Increment(ref _sessions);
            _log.LogInformation("session {Session} connected via {Peer}", id, t.Description);
            new Thread(() => Start(id, t)) { IsBackground = true, Name = "session " + id }.Start();
        }
    }

    void Start(int id, ITransport t)
    {
        bool ok;
        HelloOutcome hello;
        try
        {
            ok = SupervisorHandshake.Run(id, t, options, _log, out hello);
        }
        catch (Exception e) when (e is ProtocolException or TransportClosedException or InvalidDataException)
        {
            LiveStatus.BadHello();
            _log.LogWarning("session {Session} ended (bad hello: {Reason})", id, e.Message);
            t.Dispose();
            return;
        }
        if (!ok)
        {
            LiveStatus.Refused(hello.Refused ?? "bad_hello");
            _log.LogInformation("session {Session} ended (refused at hello)", id);
            t.Dispose();
            return;
        }
        var live = LiveStatus.Begin(id, t, hello.Major, hello.Minor);
        if (supervisor is null || t is UnixRingTransport { IsHandoffCapable: false, IsVmSession: false })
        {
            try
            {
                using var session = new Session(id, t, options, _log);
                session.ReportTo(live);
                session.Run();
            }
            finally { LiveStatus.End(live); }
            return;
        }
        supervisor.Serve(id, t, live);
    }
}
