using GuestIcd.Transport.Native;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;
using GuestIcd.Transport;
using Xunit;

namespace GuestIcd.VirtioGpu.Tests;

/// <summary>
/// A real hostsim serving <c>vhost-user-gpu:</c> with the test as QEMU (the frontend: guest RAM in a memfd, the
/// control queue) and as the guest (its kernel driver's virtqueue requests, and two guest processes' rings in
/// their contexts' resources). Each context's session runs in a worker process of its own: one worker that
/// faults ends only its context's session, which the guest sees at its control page; the other context goes on.
/// </summary>
public sealed unsafe class WorkerIsolationTests : IDisposable
{
    private const int Ring = 4096;
    private static readonly int Total = 4096 + (int)UnixRingTransport.SharedSize(Ring);
    private readonly string _dir = Directory.CreateTempSubdirectory("guesticd-vgpu-iso").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    /// <summary>The guest kernel's side of the control queue: requests on free descriptors, answers matched by
    /// head, and the relay that turns a guest transport's doorbell into a SUBMIT_3D DOORBELL and an answered
    /// WAIT into a wake-up byte (what the ICD's VirtioGpuTransport does through the DRM UAPI).</summary>
    private sealed class Driver : IDisposable
    {
        private readonly SyntheticGuest _g;
        private readonly int _kick, _call;
        private readonly object _lock = new();
        private readonly bool[] _busy;
        private readonly Dictionary<ushort, (ushort Second, ulong Response, Action<uint> Done)> _pending = new();
        private readonly List<(uint Ctx, int Relay, nint Control)> _relays = [];
        private readonly Thread _thread;
        private volatile bool _stop;

        public Driver(SyntheticGuest g, int kick, int call)
        {
            _g = g;
            _kick = kick;
            _call = call;
            _busy = new bool[g.QueueSize];
            _thread = new Thread(Pump) { IsBackground = true, Name = "test driver" };
            _thread.Start();
        }

        public void Submit(byte[] request, Action<uint> done)
        {
            lock (_lock)
            {
                ushort a = Free(), b = Free();
                ulong req = _g.Put(request), resp = _g.Alloc(64);
                _g.WriteDesc(a, req, (uint)request.Length, SplitVirtqueue.DescFlagNext, b);
                _g.WriteDesc(b, resp, 64, SplitVirtqueue.DescFlagWrite, 0);
                _pending[a] = (b, resp, done);
                _g.MakeAvailable(a);
            }
            Native.Signal(_kick);
        }

        private ushort Free()
        {
            for (ushort i = 0; i < _busy.Length; i++)
                if (!_busy[i])
                {
                    _busy[i] = true;
                    return i;
                }
            throw new InvalidOperationException("no free descriptor");
        }

        /// <summary>Sends a request and waits for its answer's type.</summary>
        public uint Call(byte[] request, int timeoutMs = 10_000)
        {
            var answer = new TaskCompletionSource<uint>(TaskCreationOptions.RunContinuationsAsynchronously);
            Submit(request, t => answer.TrySetResult(t));
            Assert.True(answer.Task.Wait(timeoutMs), $"no answer to request 0x{BinaryPrimitives.ReadUInt32LittleEndian(request):x} within {timeoutMs} ms");
            return answer.Task.Result;
        }

        /// <summary>Relays a guest transport's socket for context <paramref name="ctx"/> and keeps a WAIT held.</summary>
        public void Relay(uint ctx, int socket, uint* control)
        {
            lock (_lock)
                _relays.Add((ctx, socket, (nint)control));
            ArmWait(ctx, socket, control);
        }

        private static ulong s_fence;

        private void ArmWait(uint ctx, int socket, uint* control)
        {
            var wait = Req.Submit(ctx, Op(GuestIcdContext.OpWait));
            BinaryPrimitives.WriteUInt32LittleEndian(wait.AsSpan(4), Gpu.FlagFence);
            BinaryPrimitives.WriteUInt64LittleEndian(wait.AsSpan(8), Interlocked.Increment(ref s_fence));
            Submit(wait, _ =>
            {
                byte one = 1;
                Libc.send(socket, &one, 1, Libc.MSG_DONTWAIT | Libc.MSG_NOSIGNAL);
                // A session that ended answers every WAIT at once: the guest stops waiting (as the ICD does).
                if (Volatile.Read(ref *control) == GuestIcdContext.ControlRunning && !_stop)
                    ArmWait(ctx, socket, control);
            });
        }

        private void Pump()
        {
            var pfd = stackalloc Libc.PollFd[8];
            var buffer = stackalloc byte[64];
            while (!_stop)
            {
                (uint Ctx, int Relay, nint Control)[] relays;
                lock (_lock)
                    relays = [.. _relays];
                pfd[0] = new Libc.PollFd { fd = _call, events = Libc.POLLIN };
                for (int i = 0; i < relays.Length; i++)
                    pfd[1 + i] = new Libc.PollFd { fd = relays[i].Relay, events = Libc.POLLIN };
                Libc.poll(pfd, (nuint)(1 + relays.Length), 20);
                Native.Drain(_call);
                for (int i = 0; i < relays.Length; i++)
                    if (pfd[1 + i].revents != 0 && Libc.recv(relays[i].Relay, buffer, 64, Libc.MSG_DONTWAIT) > 0
                        && Volatile.Read(ref *(uint*)relays[i].Control) == GuestIcdContext.ControlRunning)
                        Submit(Req.Submit(relays[i].Ctx, Op(GuestIcdContext.OpDoorbell)), _ => { });
                var done = new List<(Action<uint>, uint)>();
                lock (_lock)
                {
                    foreach (var (id, _) in _g.TakeUsed())
                    {
                        if (!_pending.Remove((ushort)id, out var p))
                            continue;
                        _busy[id] = false;
                        _busy[p.Second] = false;
                        done.Add((p.Done, _g.ResponseType(p.Response)));
                    }
                }
                foreach (var (action, type) in done)
                    action(type);
            }
        }

        public void Dispose()
        {
            _stop = true;
            _thread.Join(5000);
        }
    }

    private static byte[] Op(uint op, uint resource = 0, uint ring = 0)
    {
        var c = new byte[op == GuestIcdContext.OpInit ? 24 : 4];
        BinaryPrimitives.WriteUInt32LittleEndian(c, op);
        if (op == GuestIcdContext.OpInit)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(4), resource);
            BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(8), ring);
        }
        return c;
    }

    /// <summary>One guest process: its context, its shared resource, and the protocol spoken with the project's codec.</summary>
    private sealed class GuestProcess : IHandleMap, IDisposable
    {
        private readonly WireWriter _w = new();
        private readonly UnixRingTransport _t;
        private readonly int _relay;
        private ulong _next;

        /// <param name="blob">The ring is a guest-memory blob (RESOURCE_CREATE_BLOB, what a kernel with
        /// VIRTIO_GPU_F_RESOURCE_BLOB makes for the ICD) rather than a 3D buffer with attached backing.</param>
        public GuestProcess(Driver d, SyntheticGuest g, uint ctx, uint resource, bool contextInit = true, bool blob = false)
        {
            Ctx = ctx;
            Assert.Equal(Gpu.RespOkNodata, d.Call(Req.CtxCreate(ctx, contextInit ? GuestIcdCapset.Id : 0, $"app{ctx}")));
            ulong gpa = g.Alloc(Total, pageAligned: true);
            g.Alloc(4096, pageAligned: true);
            if (blob)
            {
                Assert.Equal(Gpu.RespOkNodata, d.Call(Req.CreateBlob(resource, Gpu.BlobMemGuest, Gpu.BlobFlagUseMappable, (ulong)Total, [(gpa, (uint)Total)])));
            }
            else
            {
                Assert.Equal(Gpu.RespOkNodata, d.Call(Req.CreateBuffer(resource, (uint)Total)));
                Assert.Equal(Gpu.RespOkNodata, d.Call(Req.AttachBacking(resource, (gpa, (uint)Total))));
            }
            Assert.Equal(Gpu.RespOkNodata, d.Call(Req.With(Gpu.CmdCtxAttachResource, ctx, resource, 0)));
            byte* view = g.Host + (gpa - SyntheticGuest.Base);
            Control = (uint*)view;
            SharedRing.Initialize(view + 4096);
            SharedRing.Initialize(view + 4096 + SharedRing.RegionSize(Ring));
            Assert.Equal(Gpu.RespOkNodata, d.Call(Req.Submit(ctx, Op(GuestIcdContext.OpInit, resource, Ring))));
            Assert.Equal(GuestIcdContext.ControlRunning, *Control);
            int* sv = stackalloc int[2];
            Assert.Equal(0, Libc.socketpair(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC, 0, sv));
            _relay = sv[1];
            _t = new UnixRingTransport(sv[0], view + 4096, (nuint)(Total - 4096), Ring, isHost: false, $"guest {ctx}");
            d.Relay(ctx, _relay, Control);
            Handshake.Write(new Hello(Handshake.ProtocolMajor, Handshake.ProtocolMinor, Tables.RegistryVersion, "virtio-gpu test", [], []), _w);
            Send();
            Assert.True(Handshake.ReadReply(Read()).Accepted);
        }

        public uint Ctx { get; }
        public uint* Control { get; }

        private void Send()
        {
            _t.Write(_w.Written);
            _t.Flush();
            _w.Reset();
        }

        private ReadOnlySpan<byte> Read()
        {
            Span<byte> hdr = stackalloc byte[ReplyHeader.Size];
            if (!_t.ReadExactly(hdr, 20_000)) throw new TimeoutException($"guest {Ctx}: no reply within 20 s");
            var h = ReplyHeader.Read(hdr);
            var payload = new byte[MessageHeader.Padded((int)h.ByteLength)];
            if (!_t.ReadExactly(payload, 20_000)) throw new TimeoutException($"guest {Ctx}: reply cut short");
            return payload.AsSpan(0, (int)h.ByteLength);
        }

        public ulong Call(int command, ulong* args)
        {
            ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
            CommandCodec.EncodeRequest(command, args, _w, this, caps);
            Send();
            return Tables.Commands[command].WantsReply ? CommandCodec.DecodeReply(command, Read(), args, caps, this) : 0;
        }

        /// <summary>vkCreateInstance, then vkEnumeratePhysicalDevices: a host driver's answer, from the worker.</summary>
        public ulong Instance()
        {
            ulong* a = stackalloc ulong[3];
            var app = new GuestIcd.Vulkan.VkApplicationInfo { sType = GuestIcd.Vulkan.VkStructureType.VK_STRUCTURE_TYPE_APPLICATION_INFO, apiVersion = (1u << 22) | (3u << 12) };
            var ici = new GuestIcd.Vulkan.VkInstanceCreateInfo { sType = GuestIcd.Vulkan.VkStructureType.VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, pApplicationInfo = &app };
            ulong instance;
            a[0] = (ulong)&ici; a[1] = 0; a[2] = (ulong)&instance;
            Assert.Equal(0ul, Call(Tables.vkCreateInstance, a));
            return instance;
        }

        public uint PhysicalDevices(ulong instance)
        {
            ulong* a = stackalloc ulong[3];
            uint count = 0;
            a[0] = instance; a[1] = (ulong)&count; a[2] = 0;
            Assert.Equal(0ul, Call(Tables.vkEnumeratePhysicalDevices, a));
            return count;
        }

        public ulong ToWire(int objectType, ulong handle) => handle;
        public ulong FromWire(int objectType, ulong id) => id;
        public ulong Create(int objectType, out ulong handle) => handle = ++_next;
        public void ExpectCreate(int objectType, ulong id, ulong* slot) => throw new InvalidOperationException("host-only");

        public void Dispose()
        {
            _t.Dispose();
            _w.Dispose();
            Libc.close(_relay);
        }
    }

    /// <summary>hostsim's vhost-user-gpu backend, a synthetic guest's memory and queues set up on it through a
    /// vhost-user frontend, and that guest's virtio-gpu driver: what each test starts from.</summary>
    private sealed class Backend : IDisposable
    {
        public Host Host { get; }
        public SyntheticGuest Guest { get; }
        public Driver Driver { get; }
        private readonly VhostUserSocketTests.Frontend _frontend;

        public Backend(string socket)
        {
            Host = new Host(socket);
            Guest = new SyntheticGuest();
            try
            {
                _frontend = new VhostUserSocketTests.Frontend(socket);
                var (kick, call) = VhostUserSocketTests.Start(_frontend, Guest);
                Driver = new Driver(Guest, kick, call);
            }
            catch
            {
                _frontend?.Dispose();
                Guest.Dispose();
                Host.Dispose();
                throw;
            }
        }

        public void Dispose()
        {
            Driver.Dispose();
            _frontend.Dispose();
            Guest.Dispose();
            Host.Dispose();
        }
    }

    /// <summary>hostsim serving the device, its sessions in workers that fault on SIGUSR2.</summary>
    private sealed class Host : IDisposable
    {
        private readonly Process _p;
        private readonly StringBuilder _log = new();

        public Host(string socket)
        {
            string exe = Path.Combine(RepoRoot(), "out/hostsim/guesticd-hostsim");
            Assert.True(File.Exists(exe), $"{exe} is missing: build hostsim first (dotnet publish hostsim/GuestIcd.HostSim -c Release -o out/hostsim)");
            var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in new[] { "serve", "--listen", "vhost-user-gpu:" + socket, "--debug-crash-on-sigusr2", "--warm-workers", "2" })
                psi.ArgumentList.Add(a);
            psi.Environment["GUESTICD_WORKER_NO_REPLAY"] = "1";
            _p = Process.Start(psi)!;
            _p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); };
            _p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); };
            _p.BeginOutputReadLine();
            _p.BeginErrorReadLine();
            WaitForLog("listening on", 30_000);
        }

        public string Log { get { lock (_log) return _log.ToString(); } }
        public bool HasExited => _p.HasExited;

        public void WaitForLog(string pattern, int timeoutMs)
        {
            var sw = Stopwatch.StartNew();
            while (!Regex.IsMatch(Log, pattern))
            {
                Assert.False(_p.HasExited, $"hostsim exited:\n{Log}");
                if (sw.ElapsedMilliseconds > timeoutMs) throw new TimeoutException($"hostsim never logged '{pattern}':\n{Log}");
                Thread.Sleep(20);
            }
        }

        private static string RepoRoot()
        {
            var d = new DirectoryInfo(AppContext.BaseDirectory);
            while (d is not null && !File.Exists(Path.Combine(d.FullName, "GuestIcd.sln"))) d = d.Parent;
            return d?.FullName ?? throw new DirectoryNotFoundException("repository root (GuestIcd.sln) not found");
        }

        public void Dispose()
        {
            if (!_p.HasExited)
            {
                _p.Kill(entireProcessTree: true);
                _p.WaitForExit();
            }
            _p.Dispose();
        }
    }

    [Fact]
    public void AWorkerThatFaultsEndsOnlyItsContextsSession()
    {
        using var backend = new Backend(Path.Combine(_dir, "gpu.sock"));
        var (host, g, d) = (backend.Host, backend.Guest, backend.Driver);

        // Two guest processes; the second's driver has no CONTEXT_INIT (capset 0: the implicit context).
        using var a = new GuestProcess(d, g, 1, 10);
        using var b = new GuestProcess(d, g, 2, 20, contextInit: false);
        ulong ia = a.Instance(), ib = b.Instance();
        Assert.True(a.PhysicalDevices(ia) >= 1);
        Assert.True(b.PhysicalDevices(ib) >= 1);

        // Each session is in a worker of its own, handed over by the backend.
        host.WaitForLog(@"session 2: worker pid \d+", 10_000);
        var workers = Regex.Matches(host.Log, @"session (\d+): worker pid (\d+)").ToDictionary(m => int.Parse(m.Groups[1].Value), m => int.Parse(m.Groups[2].Value));
        Assert.Equal(2, workers.Count);
        Assert.NotEqual(workers[1], workers[2]);
        int sessionA = Regex.Match(host.Log, @"session (\d+) connected via virtio-gpu context 1 ").Groups[1].Value is { Length: > 0 } sa ? int.Parse(sa) : 1;
        int sessionB = 3 - sessionA;
        Assert.Equal(0, kill(workers[sessionA], 12 /* SIGUSR2: a real fault in native code */));

        // Only A's session ends: its control page says so (the ICD answers VK_ERROR_DEVICE_LOST from then on).
        long deadline = Environment.TickCount64 + 10_000;
        while (Volatile.Read(ref *a.Control) != GuestIcdContext.ControlEnded && Environment.TickCount64 < deadline) Thread.Sleep(20);
        Assert.True(*a.Control == GuestIcdContext.ControlEnded, "context 1's guest never learnt its session ended:\n" + host.Log);
        host.WaitForLog($@"session {sessionA}: worker pid {workers[sessionA]} died of SIGSEGV", 10_000);
        Assert.Equal(GuestIcdContext.ControlRunning, *b.Control);

        // B goes on, in its worker: the host driver still answers, and a new instance works too.
        Assert.True(b.PhysicalDevices(ib) >= 1);
        Assert.True(b.PhysicalDevices(b.Instance()) >= 1);
        // The device itself is unharmed: the dead context is destroyed as any other.
        Assert.Equal(Gpu.RespOkNodata, d.Call(Req.With(Gpu.CmdCtxDestroy, 1)));
        Assert.False(host.HasExited);
        Assert.DoesNotMatch($@"session {sessionB} ended", host.Log);

        // B's process goes: its context is destroyed while its worker runs. The worker lets go of the guest's
        // pages when asked (it is not killed for it), and its session ends as the guest's leaving.
        Assert.Equal(Gpu.RespOkNodata, d.Call(Req.Submit(2, Op(GuestIcdContext.OpNop))));
        Assert.Equal(Gpu.RespOkNodata, d.Call(Req.With(Gpu.CmdCtxDestroy, 2)));
        host.WaitForLog($@"session {sessionB} ended", 20_000);
        Assert.DoesNotMatch("did not let go", host.Log);
        Assert.DoesNotMatch($@"worker pid {workers[sessionB]} (died|hung|exited with)", host.Log);
    }

    /// <summary>A guest process whose ring and heap are a guest-memory blob runs its session in a worker as a
    /// classic one does; hostile blob commands through the real device are refused with their response type,
    /// and neither process notices; the blob's pages are let go when its context goes.</summary>
    [Fact]
    public void ABlobBackedContextRunsInAWorkerAndHostileBlobsHarmNoOne()
    {
        using var backend = new Backend(Path.Combine(_dir, "gpu.sock"));
        var (host, g, d) = (backend.Host, backend.Guest, backend.Driver);

        using var a = new GuestProcess(d, g, 1, 10, blob: true);
        using var b = new GuestProcess(d, g, 2, 20);
        ulong ia = a.Instance(), ib = b.Instance();
        Assert.True(a.PhysicalDevices(ia) >= 1);
        host.WaitForLog(@"session \d+ connected via virtio-gpu context 1 ", 10_000);
        host.WaitForLog(@"session \d+: worker pid \d+", 10_000);

        ulong page = g.Alloc(4096, pageAligned: true);
        ulong end = SyntheticGuest.Base + SyntheticGuest.Bytes;
        Assert.Equal(Gpu.RespErrInvalidParameter, d.Call(Req.CreateBlob(30, Gpu.BlobMemGuest, 0, 4096, [(end, 4096)])));
        Assert.Equal(Gpu.RespErrInvalidParameter, d.Call(Req.CreateBlob(30, Gpu.BlobMemGuest, 0, 4096, [(page, 4096)], claimedEntries: 3)));
        Assert.Equal(Gpu.RespErrInvalidParameter, d.Call(Req.CreateBlob(30, Gpu.BlobMemGuest, 0, 1 << 20, [(page, 4096)])));
        Assert.Equal(Gpu.RespErrInvalidParameter, d.Call(Req.CreateBlob(30, Gpu.BlobMemHost3D, Gpu.BlobFlagUseMappable, 4096, [], blobId: 10, ctx: 2)));
        Assert.Equal(Gpu.RespErrInvalidResourceId, d.Call(Req.CreateBlob(10, Gpu.BlobMemGuest, 0, 4096, [(page, 4096)])));
        Assert.Equal(Gpu.RespErrInvalidParameter, d.Call(Req.With(Gpu.CmdResourceMapBlob, 2, 10, 0, 0, 0)));
        host.WaitForLog("refused RESOURCE_MAP_BLOB", 5000);

        Assert.True(a.PhysicalDevices(a.Instance()) >= 1);
        Assert.True(b.PhysicalDevices(ib) >= 1);
        Assert.Equal(GuestIcdContext.ControlRunning, *a.Control);
        Assert.Equal(GuestIcdContext.ControlRunning, *b.Control);

        // A's process goes while its worker runs: the worker lets go of the blob's pages, the session ends.
        Assert.Equal(Gpu.RespOkNodata, d.Call(Req.With(Gpu.CmdCtxDestroy, 1)));
        int sessionA = int.Parse(Regex.Match(host.Log, @"session (\d+) connected via virtio-gpu context 1 ").Groups[1].Value);
        host.WaitForLog($@"session {sessionA} ended", 20_000);
        Assert.Equal(Gpu.RespOkNodata, d.Call(Req.With(Gpu.CmdResourceUnref, 0, 10, 0)));
        Assert.DoesNotMatch("did not let go", host.Log);
        Assert.True(b.PhysicalDevices(ib) >= 1);
        Assert.False(host.HasExited);
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);
}
