using System.CommandLine;
using Microsoft.Extensions.Logging;

namespace GuestIcd.HostSim;

/// <summary>What <c>serve</c> runs beside its listeners for operators: the control socket <c>status</c>
/// asks, and the <c>--metrics</c> endpoint. Program.cs wires these options and the <c>status</c> command.</summary>
internal sealed class Operations : IDisposable
{
    public static readonly Option<string?> Control = new("--control")
    {
        Description = $"control socket that `status` asks (owner-only; default {ControlSocket.DefaultPath()}; `none`: no control socket)",
    };

    public static readonly Option<string?> Metrics = new("--metrics")
    {
        Description = "serve Prometheus metrics at http://ADDRESS:PORT/metrics (e.g. 127.0.0.1:9464)",
    };

    ControlSocket? _control;
    MetricsEndpoint? _metrics;

    /// <summary>Null (logged) when an endpoint the operator asked for cannot be had; the default control
    /// socket taken by another running hostsim is only a warning.</summary>
    public static Operations? Start(ParseResult parse, string device, ILogger log)
    {
        LiveStatus.Device = device;
        var ops = new Operations();
        var control = parse.GetValue(Control);
        // The control socket checks its callers with SO_PEERCRED and owner-only modes: Linux only.
        if (control != "none" && !OperatingSystem.IsLinux())
        {
            if (control is not null)
            {
                log.LogError("cannot serve: --control needs Linux (a unix socket checked with SO_PEERCRED); --metrics serves the same figures here");
                return null;
            }
            log.LogInformation("no control socket on this OS; --metrics serves the same figures");
        }
        else if (control != "none")
        {
            var path = control ?? ControlSocket.DefaultPath();
            try
            {
                ops._control = ControlSocket.Listen(path, log);
                log.LogInformation("control socket {Path} (guesticd-hostsim status{Arg})", path, control is null ? "" : " --socket " + path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                if (control is not null)
                {
                    log.LogError("cannot serve: {Error}", e.Message);
                    return null;
                }
                log.LogWarning("no control socket ({Error}); `serve --control PATH` chooses another", e.Message);
            }
        }
        if (parse.GetValue(Metrics) is { } spec)
        {
            try
            {
                ops._metrics = MetricsEndpoint.Start(spec);
                log.LogInformation("metrics at {Url}", ops._metrics.Url);
            }
            catch (Exception e) when (e is IOException or ArgumentException)
            {
                log.LogError("cannot serve: {Error}", e.Message);
                ops.Dispose();
                return null;
            }
        }
        return ops;
    }

    /// <summary><c>guesticd-hostsim status</c>.</summary>
    public static Command StatusCommand()
    {
        var socket = new Option<string?>("--socket") { Description = $"the hostsim's control socket (default {ControlSocket.DefaultPath()})" };
        var watch = new Option<bool>("--watch") { Description = "refresh until interrupted" };
        var json = new Option<bool>("--json") { Description = "print JSON (with --watch: one document a line)" };
        var interval = new Option<int>("--interval-ms") { Description = "refresh interval of --watch", DefaultValueFactory = _ => 1000 };
        var cmd = new Command("status", "show a running hostsim's sessions: peer, protocol, commands, bytes, round trips, errors, objects, memory") { socket, watch, json, interval };
        cmd.SetAction(p => HostSim.StatusCommand.Run(p.GetValue(socket), p.GetValue(watch), p.GetValue(json), Math.Max(100, p.GetValue(interval))));
        return cmd;
    }

    public void Dispose()
    {
        _metrics?.Dispose();
        _control?.Dispose();
    }
}
