using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json.Serialization;
using GuestIcd.Transport;

namespace GuestIcd.HostSim;

/// <summary>One session from its accepted hello to its end, as <c>status</c> and <c>--metrics</c> see it.</summary>
internal sealed unsafe class LiveSession
{
    public required int Id { get; init; }
    public required string Transport { get; init; }
    public required string Peer { get; init; }
    public required int? PeerPid { get; init; }
    public required string Description { get; init; }
    public required string Protocol { get; init; }
    public DateTimeOffset Started { get; } = DateTimeOffset.UtcNow;
    readonly long _startTicks = Stopwatch.GetTimestamp();
    SessionCounters* _counters;
    SessionCounters* _own;
    bool _ended;
    public int? WorkerPid { get; private set; }

    /// <summary>Counters in this process, for a session that runs on a thread here.</summary>
    public SessionCounters* OwnCounters()
    {
        lock (this)
        {
            if (_own == null) _own = (SessionCounters*)NativeMemory.AllocZeroed((nuint)sizeof(SessionCounters));
            _counters = _own;
            return _own;
        }
    }

    /// <summary>The worker's status page holds the figures from now on.</summary>
    public void Attach(SessionCounters* counters, int workerPid)
    {
        lock (this)
        {
            _counters = counters;
            WorkerPid = workerPid;
        }
    }

    /// <summary>The figures now; null once the session has ended (its page may be unmapped).</summary>
    public SessionRow? Read()
    {
        lock (this)
        {
            if (_ended) return null;
            var c = _counters == null ? default : SessionCounters.Read(_counters);
            return new SessionRow(Id, Transport, Peer, PeerPid, Description, WorkerPid, Protocol, Started,
                Math.Round(Stopwatch.GetElapsedTime(_startTicks).TotalSeconds, 3),
                c.Commands, c.BytesIn, c.BytesOut, c.RoundTrips, c.Errors, c.LiveObjects, c.MemoryBytes, c.HeapBytes);
        }
    }

    /// <summary>Last read, then never again: called before the page goes.</summary>
    public SessionCounters Close()
    {
        lock (this)
        {
            var c = _counters == null || _ended ? default : SessionCounters.Read(_counters);
            _ended = true;
            _counters = null;
            if (_own != null) NativeMemory.Free(_own);
            _own = null;
            return c;
        }
    }
}

/// <summary>What this hostsim serves now and what it has seen since it started: the one source of
/// <c>status</c> (<see cref="ControlSocket"/>) and <c>--metrics</c> (<see cref="MetricsEndpoint"/>).
/// Updated on connection events only, never per command (the sessions' figures are in their
/// <see cref="SessionCounters"/>).</summary>
internal static class LiveStatus
{
    static readonly ConcurrentDictionary<int, LiveSession> s_sessions = new();
    static readonly object s_lock = new();
    static readonly Dictionary<string, long> s_refused = new();
    static readonly Dictionary<string, long> s_protocolErrors = new();
    static readonly Dictionary<string, long> s_ends = new();
    static long s_sessionsTotal, s_workerCrashes, s_workerHangs;
    static readonly long s_startTicks = Stopwatch.GetTimestamp();
    public static string Device { get; set; } = "";

    /// <summary>Reasons a connection is refused before its session starts (pre-set to 0 so scrapers see them from the start).</summary>
    public static readonly string[] RefusalReasons = ["wrong_secret", "tls", "not_guesticd", "handshake_timeout", "evicted", "transport", "protocol_version", "bad_hello", "no_hello"];
    public static readonly string[] EndReasons = ["disconnected", "transport_closed", "protocol_error", "internal_error", "worker_crash", "worker_hang", "no_worker"];

    static LiveStatus()
    {
        foreach (var r in RefusalReasons) s_refused[r] = 0;
        foreach (var k in ProtocolErrors.All) s_protocolErrors[ProtocolErrors.Name(k)] = 0;
        foreach (var e in EndReasons) s_ends[e] = 0;
    }

    /// <summary>A session passed its hello.</summary>
    public static LiveSession Begin(int id, ITransport transport, ushort major, ushort minor)
    {
        var (kind, peer, pid) = DescribePeer(transport.Description);
        var live = new LiveSession { Id = id, Transport = kind, Peer = peer, PeerPid = pid, Description = transport.Description, Protocol = $"{major}.{minor}" };
        s_sessions[id] = live;
        Interlocked.Increment(ref s_sessionsTotal);
        return live;
    }

    /// <summary>The session is over: its last figures say how, unless the supervisor saw it end (<paramref name="seen"/>: a crash, a hang).</summary>
    public static void End(LiveSession live, string? seen = null)
    {
        var c = live.Close();
        s_sessions.TryRemove(live.Id, out _);
        string reason = seen ?? (SessionEnd)c.End switch
        {
            SessionEnd.ProtocolError => "protocol_error",
            SessionEnd.InternalError => "internal_error",
            SessionEnd.TransportClosed => "transport_closed",
            SessionEnd.Disconnected => "disconnected",
            _ => "worker_crash", // a worker that never recorded its end died without saying so
        };
        lock (s_lock)
        {
            Add(s_ends, reason);
            if ((ProtocolErrorKind)c.ProtocolError is not ProtocolErrorKind.None and var k) Add(s_protocolErrors, ProtocolErrors.Name(k));
        }
    }

    /// <summary>A connection refused before it became a session, by the transport's handshake or at hello.</summary>
    public static void Refused(string reason)
    {
        lock (s_lock) Add(s_refused, reason);
    }

    /// <summary>A hello that broke the protocol (the connection is refused too).</summary>
    public static void BadHello()
    {
        lock (s_lock)
        {
            Add(s_refused, "bad_hello");
            Add(s_protocolErrors, ProtocolErrors.Name(ProtocolErrorKind.Hello));
        }
    }

    public static void WorkerCrashed() => Interlocked.Increment(ref s_workerCrashes);
    public static void WorkerHung() => Interlocked.Increment(ref s_workerHangs);

    /// <summary>The listener's wording of why it dropped a connection (SocketTransportListener, UnixRingListener), as a reason.</summary>
    public static string RefusalOf(string message)
    {
        bool Has(string s) => message.Contains(s, StringComparison.OrdinalIgnoreCase);
        if (Has("wrong shared secret")) return "wrong_secret";
        if (Has("TLS")) return "tls";
        if (Has("evicted")) return "evicted";
        if (Has("within")) return "handshake_timeout";
        if (Has("not a GuestIcd guest") || Has("preamble") || Has("authentication protocol")) return "not_guesticd";
        return "transport";
    }

    static void Add(Dictionary<string, long> d, string key) => d[key] = d.GetValueOrDefault(key) + 1;

    /// <summary>"unix:/run/x.sock guest pid 42 (ring …)" → ("unix", "pid 42", 42); "tcp:127.0.0.1:7000 guest
    /// 127.0.0.1:51234" → ("tcp", "127.0.0.1:51234", null); "vm:… session 3 (…)" → ("vm", "vm session 3", null).
    /// The listeners name their peers this way (from SO_PEERCRED for unix, the socket's peer address for tcp and vsock).</summary>
    public static (string Kind, string Peer, int? Pid) DescribePeer(string description)
    {
        int colon = description.IndexOf(':');
        string kind = colon > 0 ? description[..colon] : description;
        string peer = "";
        int at;
        if ((at = description.IndexOf(" guest ", StringComparison.Ordinal)) >= 0) peer = description[(at + 7)..];
        else if ((at = description.IndexOf(" session ", StringComparison.Ordinal)) >= 0) peer = "vm" + description[at..];
        else if ((at = description.IndexOf(' ')) >= 0) peer = description[(at + 1)..];
        int paren = peer.IndexOf(" (ring", StringComparison.Ordinal);
        if (paren >= 0) peer = peer[..paren];
        peer = peer.Trim();
        int? pid = null;
        if (peer.StartsWith("pid ", StringComparison.Ordinal))
        {
            var digits = peer[4..].TakeWhile(char.IsAsciiDigit).ToArray();
            if (int.TryParse(digits, out int p) && p > 0) pid = p;
        }
        return (kind, peer, pid);
    }

    public static StatusReport Report()
    {
        var rows = s_sessions.Values.Select(s => s.Read()).OfType<SessionRow>().OrderBy(r => r.Id).ToList();
        lock (s_lock)
            return new StatusReport(Environment.ProcessId, typeof(LiveStatus).Assembly.GetName().Version?.ToString() ?? "",
                $"{GuestIcd.Protocol.Handshake.ProtocolMajor}.{GuestIcd.Protocol.Handshake.ProtocolMinor}", Device,
                Math.Round(Stopwatch.GetElapsedTime(s_startTicks).TotalSeconds, 3),
                Interlocked.Read(ref s_sessionsTotal), rows.Count,
                new(s_refused), new(s_protocolErrors), new(s_ends),
                Interlocked.Read(ref s_workerCrashes), Interlocked.Read(ref s_workerHangs), rows);
    }
}

internal sealed record SessionRow(int Id, string Transport, string Peer, int? PeerPid, string Description, int? WorkerPid, string Protocol,
    DateTimeOffset Started, double UptimeSeconds, long Commands, long BytesIn, long BytesOut, long RoundTrips, long Errors,
    long LiveObjects, long MemoryBytes, long HeapBytes);

internal sealed record StatusReport(int Pid, string Version, string Protocol, string Device, double UptimeSeconds,
    long SessionsTotal, int SessionsActive, Dictionary<string, long> Refused, Dictionary<string, long> ProtocolErrors,
    Dictionary<string, long> SessionEnds, long WorkerCrashes, long WorkerHangs, List<SessionRow> Sessions);

/// <summary>The status report's JSON (generated: no reflection; the field names are what scripts use).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true)]
[JsonSerializable(typeof(StatusReport))]
internal sealed partial class StatusJson : JsonSerializerContext;
