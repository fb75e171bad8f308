using System.Runtime.Versioning;
using System.ServiceProcess;
using Microsoft.Extensions.Logging;

namespace GuestIcd.HostSim;

/// <summary>
/// <c>serve --windows-service</c>: hostsim started by the Windows service control manager (sc.exe create,
/// New-Service). The SCM kills a service that has not connected to it within 30 s, so the dispatcher runs
/// on a thread of its own while serve carries on as usual on the main thread; Stop and shutdown cancel
/// serve's token, which is what Ctrl+C does on a console. Logging then goes to the Application event log
/// (source guesticd-hostsim) as well, a service having no console.
/// </summary>
[SupportedOSPlatform("windows")]
internal sealed class WindowsService : ServiceBase
{
    public const string DefaultName = "guesticd-hostsim";
    readonly CancellationTokenSource _stop;

    WindowsService(CancellationTokenSource stop)
    {
        _stop = stop;
        ServiceName = DefaultName;
        CanStop = true;
        CanShutdown = true;
    }

    public static void Start(CancellationTokenSource stop, ILogger log)
    {
        var thread = new Thread(() =>
        {
            try
            {
                Run(new WindowsService(stop));
                log.LogInformation("service control dispatcher returned");
            }
            catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                // Started from a console, not by the SCM: StartServiceCtrlDispatcher fails (ERROR_FAILED_SERVICE_CONTROLLER_CONNECT).
                log.LogError("--windows-service: not started by the service control manager ({Error}); stopping", e.Message);
                stop.Cancel();
            }
        }) { IsBackground = true, Name = "service dispatcher" };
        thread.Start();
    }

    /// <summary>A service's log: the Application event log, source <see cref="DefaultName"/>.</summary>
    public static void AddEventLog(ILoggingBuilder logging) => logging.AddEventLog(s => s.SourceName = DefaultName);

    protected override void OnStart(string[] args) { }

    protected override void OnStop() => _stop.Cancel();

    protected override void OnShutdown() => _stop.Cancel();
}
