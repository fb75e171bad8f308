using System.Globalization;
using System.Net;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace GuestIcd.HostSim;

/// <summary>
/// <c>serve --metrics ADDR:PORT</c>: the figures of <c>status</c> in the Prometheus text format at
/// http://ADDR:PORT/metrics, through prometheus-net's stand-alone HttpListener server. Nothing is counted
/// twice: every scrape reads <see cref="LiveStatus.Report"/> and sets the collectors from it, so the
/// sessions' hot path knows nothing of Prometheus. A session's labelled series go with the first scrape
/// after its end.
/// </summary>
internal sealed class MetricsEndpoint : IDisposable
{
    static readonly string[] SessionLabels = ["session", "transport"];

    readonly MetricServer _server;
    readonly Counter _sessionsTotal, _refused, _protocolErrors, _ends, _workerCrashes, _workerHangs;
    readonly Gauge _sessionsActive, _uptime;
    readonly Counter _commands, _bytesIn, _bytesOut, _roundTrips, _errors;
    readonly Gauge _liveObjects, _memory, _heap, _sessionUptime, _info;
    /// <summary>Label values exported for each session, so they can be removed when it has gone.</summary>
    readonly Dictionary<int, (string[] Key, string[] Info)> _exported = new();
    readonly object _lock = new();

    public string Url { get; }

    MetricsEndpoint(string host, int port)
    {
        var registry = Metrics.NewCustomRegistry();
        var f = Metrics.WithCustomRegistry(registry);
        _sessionsTotal = f.CreateCounter("guesticd_sessions_total", "Sessions that passed their hello since hostsim started.");
        _sessionsActive = f.CreateGauge("guesticd_sessions_active", "Sessions running now.");
        _uptime = f.CreateGauge("guesticd_uptime_seconds", "Seconds since hostsim started.");
        _refused = f.CreateCounter("guesticd_refused_handshakes_total", "Connections refused before their session started, by reason.", "reason");
        _protocolErrors = f.CreateCounter("guesticd_protocol_errors_total", "Sessions or hellos ended by a protocol error, by kind.", "kind");
        _ends = f.CreateCounter("guesticd_sessions_ended_total", "Sessions ended, by how they ended.", "reason");
        _workerCrashes = f.CreateCounter("guesticd_worker_crashes_total", "Worker processes that died of a signal during a session.");
        _workerHangs = f.CreateCounter("guesticd_worker_hangs_total", "Worker processes killed by the watchdog as hung.");
        _commands = f.CreateCounter("guesticd_session_commands_total", "Commands the session has executed.", SessionLabels);
        _bytesIn = f.CreateCounter("guesticd_session_bytes_in_total", "Bytes the guest has sent.", SessionLabels);
        _bytesOut = f.CreateCounter("guesticd_session_bytes_out_total", "Bytes of replies sent to the guest.", SessionLabels);
        _roundTrips = f.CreateCounter("guesticd_session_round_trips_total", "Replies sent: round trips the guest waited for.", SessionLabels);
        _errors = f.CreateCounter("guesticd_session_errors_total", "Commands answered with a Vulkan error, and the error that ended the session.", SessionLabels);
        _liveObjects = f.CreateGauge("guesticd_session_live_objects", "Guest objects the session holds now.", SessionLabels);
        _memory = f.CreateGauge("guesticd_session_memory_bytes", "Device memory the session holds now (driver allocations and imported shared-heap ranges).", SessionLabels);
        _heap = f.CreateGauge("guesticd_session_heap_bytes", "The guest's shared heap mapped on the host.", SessionLabels);
        _sessionUptime = f.CreateGauge("guesticd_session_uptime_seconds", "Seconds since the session's hello.", SessionLabels);
        _info = f.CreateGauge("guesticd_session_info", "1 for each running session, with its peer, protocol version and worker.", ["session", "transport", "peer", "protocol", "worker_pid"]);
        foreach (var r in LiveStatus.RefusalReasons) _refused.WithLabels(r);
        foreach (var k in ProtocolErrors.All) _protocolErrors.WithLabels(ProtocolErrors.Name(k));
        foreach (var e in LiveStatus.EndReasons) _ends.WithLabels(e);
        registry.AddBeforeCollectCallback(Update);
        _server = new MetricServer(host, port, "metrics/", registry);
        Url = $"http://{(host == "+" ? "*" : host)}:{port}/metrics";
    }

    /// <summary>Starts serving at <paramref name="spec"/> (ADDR:PORT, [v6]:PORT). Throws ArgumentException for a
    /// bad spec, IOException when the address cannot be had.</summary>
    public static MetricsEndpoint Start(string spec)
    {
        int colon = spec.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(spec[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port is < 1 or > 65535)
            throw new ArgumentException($"--metrics wants ADDRESS:PORT (e.g. 127.0.0.1:9464), got '{spec}'");
        var addr = spec[..colon];
        if (!IPAddress.TryParse(addr.Trim('[', ']'), out var ip) && addr != "localhost")
            throw new ArgumentException($"--metrics: '{addr}' is not an IP address");
        // HttpListener's wildcard: every address.
        string host = ip is not null && (ip.Equals(IPAddress.Any) || ip.Equals(IPAddress.IPv6Any)) ? "+" : addr;
        var endpoint = new MetricsEndpoint(host, port);
        try { endpoint._server.Start(); }
        catch (Exception e) when (e is HttpListenerException or InvalidOperationException or System.Net.Sockets.SocketException)
        {
            throw new IOException($"--metrics {spec}: {e.Message}", e);
        }
        return endpoint;
    }

    void Update()
    {
        var report = LiveStatus.Report();
        lock (_lock)
        {
            _sessionsTotal.IncTo(report.SessionsTotal);
            _sessionsActive.Set(report.SessionsActive);
            _uptime.Set(report.UptimeSeconds);
            foreach (var (k, v) in report.Refused) _refused.WithLabels(k).IncTo(v);
            foreach (var (k, v) in report.ProtocolErrors) _protocolErrors.WithLabels(k).IncTo(v);
            foreach (var (k, v) in report.SessionEnds) _ends.WithLabels(k).IncTo(v);
            _workerCrashes.IncTo(report.WorkerCrashes);
            _workerHangs.IncTo(report.WorkerHangs);
            var seen = new HashSet<int>();
            foreach (var s in report.Sessions)
            {
                seen.Add(s.Id);
                string[] key = [s.Id.ToString(CultureInfo.InvariantCulture), s.Transport];
                string[] info = [key[0], s.Transport, s.Peer, s.Protocol, s.WorkerPid?.ToString(CultureInfo.InvariantCulture) ?? ""];
                _exported[s.Id] = (key, info);
                _commands.WithLabels(key).IncTo(s.Commands);
                _bytesIn.WithLabels(key).IncTo(s.BytesIn);
                _bytesOut.WithLabels(key).IncTo(s.BytesOut);
                _roundTrips.WithLabels(key).IncTo(s.RoundTrips);
                _errors.WithLabels(key).IncTo(s.Errors);
                _liveObjects.WithLabels(key).Set(s.LiveObjects);
                _memory.WithLabels(key).Set(s.MemoryBytes);
                _heap.WithLabels(key).Set(s.HeapBytes);
                _sessionUptime.WithLabels(key).Set(s.UptimeSeconds);
                _info.WithLabels(info).Set(1);
            }
            foreach (var (id, (key, info)) in _exported.Where(e => !seen.Contains(e.Key)).ToList())
            {
                foreach (var c in new Collector<Counter.Child>[] { _commands, _bytesIn, _bytesOut, _roundTrips, _errors }) c.RemoveLabelled(key);
                foreach (var g in new Collector<Gauge.Child>[] { _liveObjects, _memory, _heap, _sessionUptime }) g.RemoveLabelled(key);
                _info.RemoveLabelled(info);
                _exported.Remove(id);
            }
        }
    }

    public void Dispose() => _server.Dispose();
}
