using GuestIcd.Transport;
using Microsoft.Extensions.Logging;

namespace GuestIcd.HostSim;

internal sealed record ServerOptions(string DeviceName, ushort ProtocolMajor, ushort ProtocolMinor,
    int HandshakeTimeoutMs = 5000, int MessageTimeoutMs = 10000, bool Validation = false, bool Strict = false, Quotas? Quotas = null, string? CaptureDir = null);

/// <summary>Accepts guests on every listener and runs each in its own session thread, so a guest that
/// misbehaves or hangs affects no other.</summary>
internal sealed class Server(IReadOnlyList<ITransportListener> listeners, ServerOptions options, ILoggerFactory logs)
{
    readonly ILogger _log = logs.CreateLogger("hostsim");
    int _sessions;

    public void Run(CancellationToken stop)
    {
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
                _log.LogWarning("rejected a connection on {Listener}: {Error}", listener.Description, e.Message);
                continue;
            }
            if (t is null) break;
            int id = Interlocked.Increment(ref _sessions);
            _log.LogInformation("session {Session} connected via {Peer}", id, t.Description);
            var session = new Session(id, t, options, _log);
            new Thread(() => { using (session) session.Run(); }) { IsBackground = true, Name = "session " + id }.Start();
        }
    }
}
