using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Spectre.Console;

namespace GuestIcd.HostSim;

/// <summary><c>guesticd-hostsim status [--socket PATH] [--watch] [--json]</c>: asks a running hostsim's
/// <see cref="ControlSocket"/> for its sessions and shows them as a table (Spectre.Console on a terminal,
/// aligned plain text otherwise) or as JSON for scripts; <c>--watch</c> asks again every interval.</summary>
internal static class StatusCommand
{
    public static int Run(string? socket, bool watch, bool json, int intervalMs)
    {
        var path = socket ?? ControlSocket.DefaultPath();
        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
        bool terminal = !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
        if (!Fetch(path, out var report, out var error))
        {
            Console.Error.WriteLine(error);
            return 1;
        }
        if (json)
        {
            if (!watch)
            {
                Console.WriteLine(JsonSerializer.Serialize(report, StatusJson.Default.StatusReport));
                return 0;
            }
            // One compact document a line: what `jq` and line-oriented scripts read.
            var compact = new StatusJson(new JsonSerializerOptions(StatusJson.Default.Options) { WriteIndented = false });
            while (true)
            {
                Console.WriteLine(JsonSerializer.Serialize(report, compact.StatusReport));
                if (!Next(path, intervalMs, stop.Token, ref report, out error)) return error is null ? 0 : Fail(error);
            }
        }
        if (!watch)
        {
            if (terminal) AnsiConsole.Write(Table(report, path));
            else Console.Write(Plain(report, path));
            return 0;
        }
        if (!terminal)
        {
            while (true)
            {
                Console.Write(Plain(report, path));
                Console.WriteLine();
                if (!Next(path, intervalMs, stop.Token, ref report, out error)) return error is null ? 0 : Fail(error);
            }
        }
        int rc = 0;
        AnsiConsole.Live(Table(report, path)).AutoClear(false).Start(ctx =>
        {
            while (Next(path, intervalMs, stop.Token, ref report, out error))
            {
                ctx.UpdateTarget(Table(report, path));
                ctx.Refresh();
            }
            if (error is not null) rc = Fail(error);
        });
        return rc;
    }

    static int Fail(string error)
    {
        Console.Error.WriteLine(error);
        return 1;
    }

    /// <summary>Waits one interval and asks again; false when stopped (error null) or when hostsim is gone.</summary>
    static bool Next(string path, int intervalMs, CancellationToken stop, ref StatusReport report, out string? error)
    {
        error = null;
        if (stop.WaitHandle.WaitOne(intervalMs)) return false;
        if (!Fetch(path, out var next, out error)) return false;
        report = next;
        return true;
    }

    static bool Fetch(string path, out StatusReport report, out string? error)
    {
        report = null!;
        error = null;
        byte[] answer;
        try { answer = ControlSocket.Ask(path, "status"); }
        catch (SocketException e)
        {
            error = e.SocketErrorCode switch
            {
                SocketError.AddressNotAvailable or SocketError.ConnectionRefused =>
                    $"status: no hostsim answers at {path} (is it running? `serve --control PATH` chooses the socket, `status --socket PATH` asks it)",
                SocketError.AccessDenied => $"status: {path}: permission denied (the control socket is its owner's and root's)",
                _ => $"status: {path}: {e.Message}",
            };
            return false;
        }
        try { report = JsonSerializer.Deserialize(answer, StatusJson.Default.StatusReport) ?? throw new JsonException("empty answer"); }
        catch (JsonException e)
        {
            error = $"status: {path} answered something that is not a hostsim status ({e.Message})";
            return false;
        }
        return true;
    }

    static readonly string[] Headers = ["session", "transport", "peer", "worker", "protocol", "uptime", "commands", "bytes in", "bytes out", "round trips", "errors", "objects", "memory"];

    static string[] Cells(SessionRow s) =>
    [
        s.Id.ToString(CultureInfo.InvariantCulture), s.Transport, s.Peer, s.WorkerPid?.ToString(CultureInfo.InvariantCulture) ?? "in-process",
        s.Protocol, Duration(s.UptimeSeconds), Count(s.Commands), Bytes(s.BytesIn), Bytes(s.BytesOut), Count(s.RoundTrips),
        Count(s.Errors), Count(s.LiveObjects), Bytes(s.MemoryBytes) + (s.HeapBytes > 0 ? $" (+{Bytes(s.HeapBytes)} heap)" : ""),
    ];

    static string Summary(StatusReport r, string path) => Heading(r, path) + ": " + Totals(r);

    static string Heading(StatusReport r, string path) =>
        $"hostsim pid {r.Pid}, protocol {r.Protocol}, serving {r.Device}, up {Duration(r.UptimeSeconds)} ({path})";

    static string Totals(StatusReport r) =>
        $"{r.SessionsActive} sessions now, {r.SessionsTotal} since start; refused {r.Refused.Values.Sum()}{Breakdown(r.Refused)}; " +
        $"protocol errors {r.ProtocolErrors.Values.Sum()}{Breakdown(r.ProtocolErrors)}; worker crashes {r.WorkerCrashes}, hangs {r.WorkerHangs}";

    static string Breakdown(Dictionary<string, long> d) =>
        d.Where(e => e.Value > 0).ToList() is { Count: > 0 } l ? " (" + string.Join(", ", l.Select(e => $"{e.Key} {e.Value}")) + ")" : "";

    static Table Table(StatusReport r, string path)
    {
        var t = new Table { Border = TableBorder.Rounded, Title = new TableTitle(Markup.Escape(Heading(r, path))), Caption = new TableTitle(Markup.Escape(Totals(r))) };
        for (int i = 0; i < Headers.Length; i++)
        {
            var c = new TableColumn(Headers[i]);
            if (i >= 5) c.RightAligned();
            t.AddColumn(c);
        }
        foreach (var s in r.Sessions) t.AddRow(Cells(s).Select(Markup.Escape).ToArray());
        if (r.Sessions.Count == 0) t.AddRow(["[grey]no sessions[/]", .. Enumerable.Repeat("", Headers.Length - 1)]);
        return t;
    }

    /// <summary>The table as aligned plain text: for logs, pipes and `watch`.</summary>
    static string Plain(StatusReport r, string path)
    {
        var rows = new List<string[]> { Headers };
        rows.AddRange(r.Sessions.Select(Cells));
        var widths = Enumerable.Range(0, Headers.Length).Select(i => rows.Max(row => row[i].Length)).ToArray();
        var sb = new StringBuilder();
        sb.AppendLine(Summary(r, path));
        foreach (var row in rows)
            sb.AppendLine(string.Join("  ", row.Select((c, i) => i >= 5 ? c.PadLeft(widths[i]) : c.PadRight(widths[i]))).TrimEnd());
        if (r.Sessions.Count == 0) sb.AppendLine("(no sessions)");
        return sb.ToString();
    }

    static string Count(long n) => n.ToString("N0", CultureInfo.InvariantCulture);

    static string Bytes(long n) => n switch
    {
        < 1024 => $"{n} B",
        < 1 << 20 => $"{n / 1024.0:F1} KiB",
        < 1 << 30 => $"{n / 1048576.0:F1} MiB",
        _ => $"{n / 1073741824.0:F2} GiB",
    };

    static string Duration(double seconds)
    {
        var t = TimeSpan.FromSeconds(seconds);
        return t.TotalHours >= 1 ? $"{(int)t.TotalHours}h{t.Minutes:D2}m" : t.TotalMinutes >= 1 ? $"{t.Minutes}m{t.Seconds:D2}s" : $"{seconds:F1}s";
    }
}
