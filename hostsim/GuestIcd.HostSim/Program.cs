using System.CommandLine;
using GuestIcd.HostSim;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Wire;
using GuestIcd.Transport;
using Microsoft.Extensions.Logging;

var listen = new Option<string[]>("--listen")
{
    Description = $"where guests connect: unix:PATH, tcp:ADDRESS:PORT, vsock:PORT, hyperv:SERVICE-GUID[:VMID], vm:SOCKET,shm=FILE or vhost-user-gpu:SOCKET (repeatable; default unix:{Handshake.DefaultSocketPath()})",
    AllowMultipleArgumentsPerToken = true,
};
var device = new Option<string?>("--device") { Description = "serve the host device whose name contains this text (default: the first)" };
var protocol = new Option<string?>("--protocol-version") { Description = "claim this MAJOR.MINOR instead of the built-in one (tests the version check)" };
var secretFile = new Option<string?>("--secret-file") { Description = "file holding the shared secret tcp: and vsock: guests must prove (required for those)" };
var tlsCert = new Option<string?>("--tls-cert") { Description = "serve tcp:/vsock: over TLS with this certificate (PKCS#12 without password, or PEM)" };
var tlsKey = new Option<string?>("--tls-key") { Description = "PEM private key for --tls-cert, when the certificate file does not hold it" };
var validation = new Option<bool>("--validation") { Description = "run the Khronos validation layer on every guest's instance and log what it reports" };
var strict = new Option<bool>("--strict") { Description = "also run the Khronos validation layer in blocking mode: a call it reports as an error is skipped and ends that guest's session (implies --validation)" };
var config = new Option<string?>("--config") { Description = "JSON configuration file: \"listen\", \"device\", \"logLevel\", \"secretFile\", \"inProcess\", \"warmWorkers\" (ServeConfig.cs; the command line wins) and \"quotas\" (Quotas.cs)" };
var quotaMemory = new Option<ulong?>("--quota-memory-mb") { Description = "device memory one session may hold, driver allocations and shared heap together (default 4096)" };
var quotaHeap = new Option<ulong?>("--quota-heap-mb") { Description = "largest shared heap a unix-transport guest may bring (default 16384)" };
var quotaObjects = new Option<int?>("--quota-objects") { Description = "objects one session may own at once (default 100000)" };
var quotaReply = new Option<uint?>("--quota-reply-kb") { Description = "largest reply one command may ask the host to build (default 16384)" };
var quotaMessage = new Option<uint?>("--quota-message-kb") { Description = "largest message the host accepts (default and most 65536)" };
var capture = new Option<string?>("--capture") { Description = "write each session's inbound byte stream to DIR/session-N.gicd (for `replay` and the fuzz corpus)" };
var logLevel = new Option<LogLevel>("--log-level") { Description = "Trace, Debug, Information, Warning, Error", DefaultValueFactory = _ => LogLevel.Information };

var inProcess = new Option<bool>("--in-process") { Description = "run sessions on threads of this process instead of one worker process each (debugging; a driver crash then ends every session)" };
var warmWorkers = new Option<int>("--warm-workers") { Description = "worker processes kept started and waiting for a session (an application opens two: the loader's probe, then its instance)", DefaultValueFactory = _ => 2 };
var handshakeTimeout = new Option<int>("--handshake-timeout-ms") { Description = "how long a new connection has for its transport handshake, authentication and hello", DefaultValueFactory = _ => 2000 };
var crashable = new Option<bool>("--debug-crash-on-sigusr2") { Description = "a worker sent SIGUSR2 faults inside native code like a driver bug would (tests the crash handling)", Hidden = true };
var windowsService = new Option<bool>("--windows-service") { Description = "run as a Windows service (sc.exe create ... binPath= \"guesticd-hostsim.exe serve --windows-service ...\"); logs also go to the Application event log" };
var hangOnFault = new Option<bool>("--debug-hang-on-fault") { Description = "with --debug-crash-on-sigusr2, the fault's handling never returns, as a crash handler deadlocked on a corrupted heap would (tests the watchdog)", Hidden = true };

var serve = new Command("serve", "serve guests on the host's Vulkan driver") { listen, device, protocol, secretFile, tlsCert, tlsKey, validation, strict, logLevel,
    config, quotaMemory, quotaHeap, quotaObjects, quotaReply, quotaMessage, inProcess, warmWorkers, handshakeTimeout, crashable, hangOnFault, capture, Operations.Control, Operations.Metrics, windowsService };
ILoggerFactory Logs(LogLevel level, bool eventLog = false) => LoggerFactory.Create(b =>
{
    (ServeConfig.ToJournal
        ? b.AddSystemdConsole(o => o.IncludeScopes = false)
        : b.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; o.IncludeScopes = false; }))
        .AddFilter(_ => true).SetMinimumLevel(level);
    if (eventLog && OperatingSystem.IsWindows()) WindowsService.AddEventLog(b);
});


serve.SetAction(parse =>
{
    ServeConfig file;
    try { file = ServeConfig.Load(parse.GetValue(config)); }
    catch (ArgumentException e) { Console.Error.WriteLine($"hostsim: cannot serve: {e.Message}"); return 2; }
    using var logs = Logs(ServeConfig.Pick(parse, logLevel, file.LogLevel), parse.GetValue(windowsService));
    var log = logs.CreateLogger("hostsim");
    using var stop = new CancellationTokenSource();
    if (parse.GetValue(windowsService))
    {
        // First, before the device is opened: the SCM waits 30 s for the service to connect.
        if (!OperatingSystem.IsWindows()) { log.LogError("--windows-service is for Windows hosts"); return 2; }
        WindowsService.Start(stop, log);
    }
    var names = HostVulkan.DeviceNames();
    if (names.Count == 0) { log.LogError("the host's Vulkan loader reports no physical device"); return 1; }
    var want = ServeConfig.Pick(parse, device, file.Device);
    var chosen = want is null ? names[0] : names.FirstOrDefault(n => n.Contains(want, StringComparison.OrdinalIgnoreCase));
    if (chosen is null) { log.LogError("no host device matches --device {Want}; the host has: {All}", want, string.Join(", ", names)); return 1; }
    log.LogInformation("host devices: {All}; serving {Chosen}", string.Join(", ", names), chosen);

    ushort major = Handshake.ProtocolMajor, minor = Handshake.ProtocolMinor;
    if (parse.GetValue(protocol) is { } pv)
    {
        var parts = pv.Split('.');
        if (parts.Length != 2 || !ushort.TryParse(parts[0], out major) || !ushort.TryParse(parts[1], out minor))
        { log.LogError("--protocol-version wants MAJOR.MINOR, got {Value}", pv); return 2; }
    }
    Quotas quotas;
    try
    {
        quotas = file.Quotas ?? Quotas.Default;
        if (parse.GetValue(quotaMemory) is { } qm) quotas = quotas with { DeviceMemoryBytes = qm << 20 };
        if (parse.GetValue(quotaHeap) is { } qh) quotas = quotas with { SharedHeapBytes = qh << 20 };
        if (parse.GetValue(quotaObjects) is { } qo) quotas = quotas with { Objects = qo };
        if (parse.GetValue(quotaReply) is { } qr) quotas = quotas with { ReplyBytes = qr << 10 };
        if (parse.GetValue(quotaMessage) is { } qs) quotas = quotas with { MessageBytes = qs << 10 };
        quotas.Check();
    }
    catch (Exception e) when (e is ArgumentException or IOException) { log.LogError("bad quotas: {Error}", e.Message); return 2; }
    log.LogInformation("per-session quotas: {Quotas}", quotas);
    var specs = parse.GetValue(listen) is { Length: > 0 } l ? l : file.Listen is { Length: > 0 } fl ? fl : ["unix:" + Handshake.DefaultSocketPath()];
    // Unix rings (memfd), vsock and vm (ivshmem) and vhost-user-gpu are Linux kernel interfaces.
    if (!OperatingSystem.IsLinux() && specs.FirstOrDefault(s => !s.StartsWith("tcp:", StringComparison.Ordinal) && !s.StartsWith("hyperv:", StringComparison.Ordinal)) is { } linuxOnly)
    {
        log.LogError("cannot serve {Spec}: on this OS hostsim serves --listen hyperv:SERVICE-GUID[:VMID] and tcp:ADDRESS:PORT only (unix, vsock, vm and vhost-user-gpu need Linux)", linuxOnly);
        return 2;
    }
    bool askedInProcess = parse.GetValue(inProcess) || file.InProcess == true;
    var listeners = new List<ITransportListener>();
    try
    {
        string? cert = ServeConfig.Pick(parse, tlsCert, file.TlsCert), key = ServeConfig.Pick(parse, tlsKey, file.TlsKey);
        var security = ServeConfig.Pick(parse, secretFile, file.SecretFile) is { } sf ? TransportSecurity.ForHost(sf, cert, key) : null;
        if (security is null && (cert ?? key) is not null)
            throw new ArgumentException("--tls-cert and --tls-key need --secret-file");
        foreach (var spec in specs)
            listeners.Add(VirtioGpuServe.Matches(spec) ? VirtioGpuServe.Listen(spec, chosen, major, minor, logs) : Transports.Listen(spec, security));
        foreach (var li in listeners)
            if (li is UnixRingListener u) u.MaxHeapBytes = (long)quotas.SharedHeapBytes;
    }
    catch (Exception e) when (e is ArgumentException or IOException)
    {
        // The message names the spec or file and never the secret.
        log.LogError("cannot serve: {Error}", e.Message);
        foreach (var li in listeners) li.Dispose();
        return 2;
    }
    Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
    using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
    var options = new ServerOptions(chosen, major, minor, HandshakeTimeoutMs: parse.GetValue(handshakeTimeout),
        Validation: parse.GetValue(validation) || parse.GetValue(strict), Strict: parse.GetValue(strict), Quotas: quotas, CaptureDir: parse.GetValue(capture));
    // In-process sessions share this process's loader: keep the driver loaded between them (workers do the same).
    // Worker processes get their session's descriptors over SCM_RIGHTS and set Linux process limits; a
    // Windows host has neither, so it runs every session in-process and says so.
    bool runInProcess = askedInProcess || !OperatingSystem.IsLinux();
    if (!askedInProcess && !OperatingSystem.IsLinux())
        log.LogWarning("sessions run in-process on this OS: worker processes need Linux (descriptor hand-off over SCM_RIGHTS), so a guest that crashes the driver ends every session");
    if (runInProcess) WorkerWarmUp.PinDriver();
    using var operations = Operations.Start(parse, chosen, log);
    if (operations is null) { foreach (var li in listeners) li.Dispose(); return 2; }
    using var supervisor = runInProcess ? null : new Supervisor(options, log, Math.Max(0, ServeConfig.Pick(parse, warmWorkers, file.WarmWorkers)), parse.GetValue(crashable), parse.GetValue(hangOnFault));
    log.LogInformation("sessions run {Where}", supervisor is null ? (askedInProcess ? "in-process (--in-process)" : "in-process (this OS has no worker hand-off)") : "in one worker process each");
    new Server(listeners, options, logs, supervisor).Run(stop.Token);
    foreach (var li in listeners) li.Dispose();
    log.LogInformation("hostsim stopped");
    return 0;
});

var info = new Command("info", "list the host's Vulkan devices and what a guest would be offered");
info.SetAction(_ =>
{
    Console.WriteLine($"protocol {Handshake.ProtocolMajor}.{Handshake.ProtocolMinor}, registry 1.3.{Tables.RegistryVersion}");
    foreach (var n in HostVulkan.DeviceNames()) Console.WriteLine($"device: {n}");
    return 0;
});

// Hidden: what `serve` starts for each session (Supervisor); its settings come from the supervisor.
var worker = new Command("worker", "one guest session in a process of its own (started by serve)") { Hidden = true };
worker.SetAction(_ =>
{
    using var logs = Logs(Enum.TryParse<LogLevel>(Environment.GetEnvironmentVariable("GUESTICD_WORKER_LOG_LEVEL"), out var l) ? l : LogLevel.Information);
    return WorkerMain.Run(logs);
});

var replayFile = new Argument<string>("FILE") { Description = "a capture (session-N.gicd) or a bare guest byte stream" };
var partial = new Option<bool>("--partial") { Description = "replay a capture that lacks its end record (hostsim stopped mid-session) up to its last whole record" };
var dumpMemory = new Option<string?>("--dump-memory") { Description = "write the final contents of every shared-heap range the guest allocated to DIR/heap-OFFSET-SIZE.bin" };
var noProgress = new Option<bool>("--no-progress") { Description = "print no progress on stderr" };
var progressEvery = new Option<int>("--progress-every-ms") { Description = "progress line interval when stderr is not a terminal", DefaultValueFactory = _ => 1000, Hidden = true };
var replay = new Command("replay", "re-execute a captured session on the host driver and print what happened") { replayFile, device, validation, logLevel, partial, dumpMemory, noProgress, progressEvery };
replay.SetAction(parse =>
{
    using var logs = Logs(parse.GetValue(logLevel));
    var names = HostVulkan.DeviceNames();
    var want = parse.GetValue(device);
    var chosen = names.FirstOrDefault(n => want is null || n.Contains(want, StringComparison.OrdinalIgnoreCase));
    if (chosen is null && want is not null) { Console.Error.WriteLine($"replay: no host device matches --device {want}; the host has: {string.Join(", ", names)}"); return 2; }
    var replayOptions = new ReplayOptions(parse.GetValue(partial), parse.GetValue(dumpMemory), Math.Max(1, parse.GetValue(progressEvery)), parse.GetValue(noProgress));
    try { return Replay.Run(parse.GetValue(replayFile)!, new ServerOptions(chosen ?? "none", Handshake.ProtocolMajor, Handshake.ProtocolMinor, Validation: parse.GetValue(validation)), replayOptions, logs.CreateLogger("hostsim")); }
    catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException or ProtocolException or TransportClosedException)
    {
        Console.Error.WriteLine($"replay: {e.Message}");
        return 2;
    }
});

var root = new RootCommand("GuestIcd host: executes guests' Vulkan command streams on the host driver") { serve, replay, info, worker, Operations.StatusCommand() };
return root.Parse(args).Invoke();
