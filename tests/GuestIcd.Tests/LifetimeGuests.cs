using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;
using GuestIcd.Transport;

namespace GuestIcd.Tests;

/// <summary>What the teardown, quota and zeroing tests share: the lifetime client (native-shim/clients/lifetime.c)
/// through the real loader and ICD on each transport, a hostsim's process-tree memory and threads, and a raw
/// guest that speaks the protocol with the project's own codec (for what a real application cannot do safely).</summary>
public static class LifetimeGuests
{
    static readonly Lazy<string> s_client = new(() =>
    {
        var exe = Path.Combine(Path.GetTempPath(), $"guesticd-lifetime-{Environment.ProcessId}");
        var cc = Repo.Run("cc", $"-std=c11 -O1 -o {exe} native-shim/clients/lifetime.c -lvulkan");
        Assert.True(cc.ExitCode == 0, cc.Stderr);
        return exe;
    });

    public static string Client => s_client.Value;

    public enum Via { UnixHeap, UnixNoHeap, Tcp }

    /// <summary>A hostsim serving unix (and TCP, with a secret, when asked) and the client environment for <paramref name="via"/>.</summary>
    public sealed class Host : IDisposable
    {
        public HostSim Sim { get; }
        readonly int _port;
        readonly string? _secret;
        public Via Via { get; }

        public Host(Via via, IDictionary<string, string>? hostEnv = null, params string[] args)
        {
            Via = via;
            if (via == Via.Tcp)
            {
                _secret = Path.Combine(Directory.CreateTempSubdirectory("guesticd-secret").FullName, "secret");
                File.WriteAllText(_secret, Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)));
                using (var l = new TcpListener(IPAddress.Loopback, 0)) { l.Start(); _port = ((IPEndPoint)l.LocalEndpoint).Port; }
                Sim = new HostSim(hostEnv, args.Concat(["--listen", $"tcp:127.0.0.1:{_port}", "--secret-file", _secret]).ToArray());
                Sim.WaitForLog($"listening on tcp:127.0.0.1:{_port}", 10_000);
            }
            else Sim = new HostSim(hostEnv, args);
        }

        public Dictionary<string, string> Env()
        {
            var env = Sim.ClientEnv();
            if (Via == Via.Tcp)
            {
                env["GUESTICD_TRANSPORT"] = $"tcp:127.0.0.1:{_port}";
                env["GUESTICD_SECRET_FILE"] = _secret!;
            }
            if (Via == Via.UnixNoHeap) env["GUESTICD_HEAP_MB"] = "0";
            return env;
        }

        public Repo.Result Run(string mode, int timeoutMs = 60_000) => Repo.Run(Client, mode, Env(), timeoutMs);

        public void Dispose()
        {
            Sim.Dispose();
            if (_secret is not null) try { Directory.Delete(Path.GetDirectoryName(_secret)!, true); } catch { }
        }
    }

    /// <summary>Resident memory (KiB) and threads of a process and all its descendants (sessions run in
    /// worker processes). Given hostsim's <paramref name="log"/>, only workers that were handed a session count:
    /// the idle ones started ahead for the next guests (--warm-workers) are a fixed cost that comes and goes
    /// with their start-up, not memory any guest left behind.</summary>
    public static (long RssKiB, int Threads) Tree(int pid, string? log = null)
    {
        var parents = new Dictionary<int, int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var p)) continue;
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                parents[p] = int.Parse(fields[1]);
            }
            catch (IOException) { }
        }
        var tree = new HashSet<int> { pid };
        for (bool grew = true; grew;)
        {
            grew = false;
            foreach (var (p, pp) in parents) if (tree.Contains(pp) && tree.Add(p)) grew = true;
        }
        if (log is not null) tree.RemoveWhere(p => p != pid && !log.Contains($"worker pid {p} ("));
        long rss = 0;
        int threads = 0;
        foreach (var p in tree)
        {
            try
            {
                foreach (var line in File.ReadLines($"/proc/{p}/status"))
                {
                    if (line.StartsWith("VmRSS:")) rss += long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
                }
                // The runtime's thread pool grows and shrinks with load (the TCP relays run on it); what a guest
                // could leave behind is a thread of its own, so pool workers do not count.
                foreach (var task in Directory.EnumerateDirectories($"/proc/{p}/task"))
                    try { if (!File.ReadAllText(Path.Combine(task, "comm")).StartsWith(".NET TP Worker", StringComparison.Ordinal)) threads++; }
                    catch (IOException) { }
            }
            catch (IOException) { }
        }
        return (rss, threads);
    }

    /// <summary>Starts lifetime clients in <paramref name="mode"/>, waits until each says "ready", then SIGKILLs them.</summary>
    public static void StartAndKill(Host host, string mode, int count)
    {
        var procs = new List<Process>();
        try
        {
            for (int i = 0; i < count; i++)
            {
                var psi = new ProcessStartInfo(Client, mode)
                {
                    RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
                };
                foreach (var (k, v) in host.Env()) psi.Environment[k] = v;
                var p = Process.Start(psi)!;
                p.ErrorDataReceived += (_, _) => { };
                p.BeginErrorReadLine();
                procs.Add(p);
            }
            foreach (var p in procs)
            {
                var line = p.StandardOutput.ReadLineAsync();
                Assert.True(line.Wait(60_000), "a guest never got ready:\n" + host.Sim.Log);
                Assert.True(line.Result == "ready", $"guest said '{line.Result}':\n{host.Sim.Log}");
            }
        }
        finally
        {
            foreach (var p in procs) { try { p.Kill(); } catch (InvalidOperationException) { } }
            foreach (var p in procs) { p.WaitForExit(10_000); p.Dispose(); }
        }
    }
}

/// <summary>A guest that speaks the wire protocol itself, with the project's encoder, ids as handles: for
/// misuse that would crash a real application's own driver stack before it reached the host.</summary>
public sealed unsafe class RawGuest : IDisposable, IHandleMap
{
    readonly UnixRingTransport _t;
    readonly WireWriter _w = new();
    byte[] _reply = new byte[1 << 16];
    ulong _next;

    public RawGuest(string socketPath)
    {
        _t = UnixRingTransport.Connect(socketPath, 5000);
        Handshake.Write(new Hello(Handshake.ProtocolMajor, Handshake.ProtocolMinor, Tables.RegistryVersion, "raw", [], []), _w);
        Send();
        Assert.True(Handshake.ReadReply(Read(out _)).Accepted);
    }

    void Send()
    {
        _t.Write(_w.Written);
        _t.Flush();
        _w.Reset();
    }

    ReadOnlySpan<byte> Read(out ReplyHeader h)
    {
        Span<byte> hdr = stackalloc byte[ReplyHeader.Size];
        // Generous: the first call waits for a worker that may still be warming up on a loaded machine.
        if (!_t.ReadExactly(hdr, 60_000)) throw new TimeoutException("no reply within 60 s");
        h = ReplyHeader.Read(hdr);
        int n = MessageHeader.Padded((int)h.ByteLength);
        if (_reply.Length < n) _reply = new byte[n];
        if (!_t.ReadExactly(_reply.AsSpan(0, n), 10_000)) throw new TimeoutException("reply cut short");
        return _reply.AsSpan(0, (int)h.ByteLength);
    }

    /// <summary>Sends the command; for one the host answers, returns its result.</summary>
    public ulong Call(int command, ulong* args)
    {
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        CommandCodec.EncodeRequest(command, args, _w, this, caps);
        Send();
        if (!Tables.Commands[command].WantsReply) return 0;
        var payload = Read(out _);
        return CommandCodec.DecodeReply(command, payload, args, caps, this);
    }

    /// <summary>vkCreateInstance, the physical device, and <paramref name="devices"/> devices with one queue each.</summary>
    public (ulong Instance, ulong[] Devices) CreateDevices(int devices)
    {
        ulong* a = stackalloc ulong[4];
        var app = new GuestIcd.Vulkan.VkApplicationInfo { sType = GuestIcd.Vulkan.VkStructureType.VK_STRUCTURE_TYPE_APPLICATION_INFO, apiVersion = (1u << 22) | (3u << 12) };
        var ici = new GuestIcd.Vulkan.VkInstanceCreateInfo { sType = GuestIcd.Vulkan.VkStructureType.VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, pApplicationInfo = &app };
        ulong instance, pd;
        a[0] = (ulong)&ici; a[1] = 0; a[2] = (ulong)&instance;
        Assert.Equal(0ul, Call(Tables.vkCreateInstance, a));
        uint count = 1;
        a[0] = instance; a[1] = (ulong)&count; a[2] = (ulong)&pd;
        Assert.Equal(0ul, Call(Tables.vkEnumeratePhysicalDevices, a));
        float prio = 1;
        var qci = new GuestIcd.Vulkan.VkDeviceQueueCreateInfo { sType = GuestIcd.Vulkan.VkStructureType.VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, queueCount = 1, pQueuePriorities = &prio };
        var dci = new GuestIcd.Vulkan.VkDeviceCreateInfo { sType = GuestIcd.Vulkan.VkStructureType.VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, queueCreateInfoCount = 1, pQueueCreateInfos = &qci };
        var result = new ulong[devices];
        for (int i = 0; i < devices; i++)
        {
            ulong d;
            a[0] = pd; a[1] = (ulong)&dci; a[2] = 0; a[3] = (ulong)&d;
            Call(Tables.vkCreateDevice, a);
            result[i] = d;
        }
        return (instance, result);
    }

    /// <summary>The host ended the session: our end reads as closed.</summary>
    public bool Closed()
    {
        try { var b = new byte[1]; _t.ReadExactly(b, 10_000); return false; }
        catch (TransportClosedException) { return true; }
    }

    public ulong ToWire(int objectType, ulong handle) => handle;
    public ulong FromWire(int objectType, ulong id) => id;
    public ulong Create(int objectType, out ulong handle) => handle = ++_next;
    public void ExpectCreate(int objectType, ulong id, ulong* slot) => throw new InvalidOperationException("host-only");

    public void Dispose()
    {
        _t.Dispose();
        _w.Dispose();
    }
}
