using System.Diagnostics;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Wire;
using GuestIcd.Transport;
using GuestIcd.Vulkan;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace GuestIcd.HostSim;

/// <summary>
/// What makes a guest's first commands in a fresh worker as fast as in a process that served guests
/// before, done while the worker waits in the pool. Measured (tests/bench/session_start.sh): without it
/// a first vkCreateInstance took 420 ms in a worker against 15 ms in-process; about 25 ms of that was the
/// host loader and driver, the rest the runtime compiling the decoder, gate and executor on first use.
/// </summary>
/// <remarks>ReadyToRun (the csproj) precompiles most code; what it cannot (generic instantiations across
/// assemblies, marshalling stubs, the generated tables' initialisers) and the driver's own first-use
/// work are done by replaying recorded sessions (tests/fuzz/corpus, embedded) through a real
/// <see cref="Session"/> on the real driver. The replay runs as session 0 with a logger that drops
/// everything and with its own transport, object table and quotas; its teardown destroys all it made,
/// and the guest's status page arrives only later, so nothing of it is attributed to a guest.</remarks>
internal static unsafe class WorkerWarmUp
{
    /// <summary>Keeps the host driver loaded: the loader unloads an ICD (dlclose) when its last instance
    /// goes and loads and initialises it again for the next (about 7 ms per vkCreateInstance on lavapipe).
    /// An instance with no device holds no guest-visible state.</summary>
    static VkInstance s_pinned;

    public static void PinDriver()
    {
        if (s_pinned.Handle != 0) return;
        var create = (delegate* unmanaged<VkInstanceCreateInfo*, void*, VkInstance*, VkResult>)HostVulkan.GetInstanceProcAddr(default, "vkCreateInstance");
        var app = new VkApplicationInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_APPLICATION_INFO, apiVersion = HostVulkan.InstanceVersion() };
        var ci = new VkInstanceCreateInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, pApplicationInfo = &app };
        VkInstance inst;
        if (create(&ci, null, &inst) != VkResult.VK_SUCCESS) return;
        // The driver initialises its physical devices on the first enumeration.
        HostVulkan.PhysicalDevices(inst);
        s_pinned = inst;
    }

    /// <summary>Replays every embedded session, stopping early (the session cut short, its teardown done)
    /// once <paramref name="stop"/> is set: a guest that arrives meanwhile waits for one command and a
    /// teardown, not the whole warm-up. Returns how many ran cleanly (all commands, no errors).</summary>
    public static int ReplaySessions(ILogger log, Func<bool> stop)
    {
        var assembly = typeof(WorkerWarmUp).Assembly;
        var names = HostVulkan.DeviceNames();
        var options = new ServerOptions(names.Count > 0 ? names[0] : "none", Handshake.ProtocolMajor, Handshake.ProtocolMinor);
        int clean = 0;
        // The commonest first: a compute session; vulkaninfo's queries; a render session.
        foreach (var name in new[] { "warmup/compute.gicd", "warmup/vulkaninfo.gicd", "warmup/render.gicd" })
        {
            if (stop()) break;
            var sw = Stopwatch.StartNew();
            using var resource = assembly.GetManifestResourceStream(name);
            if (resource is null) continue;
            var bytes = new byte[resource.Length];
            resource.ReadExactly(bytes);
            try
            {
                var (stream, heapBytes) = CaptureFormat.Parse(bytes);
                using var heap = new ReplayHeap(heapBytes);
                var transport = new StoppableTransport(new ReplayTransport(stream, heap.Base, heap.Bytes), stop);
                var session = new Session(0, transport, options, NullLogger.Instance);
                using (session)
                    if (SupervisorHandshake.Run(0, transport, options, NullLogger.Instance)) session.Run();
                // A recording that no longer replays cleanly (the protocol moved on) warms less; say so.
                if (session.Errors == 0 && session.Commands > 0) clean++;
                else log.LogDebug("worker: warm-up {Name}: {Commands} commands, {Errors} errors ({End})", name, session.Commands, session.Errors, session.End);
                log.LogDebug("worker: warm-up {Name} replayed in {Ms:F0} ms", name, sw.Elapsed.TotalMilliseconds);
            }
            catch (Exception e) when (e is InvalidDataException or IOException or TransportClosedException or ProtocolException)
            {
                log.LogDebug("worker: warm-up {Name} ended early ({Error})", name, e.Message);
            }
        }
        return clean;
    }

    /// <summary>A recorded guest that leaves as soon as a real one arrives.</summary>
    sealed class StoppableTransport(ReplayTransport inner, Func<bool> stop) : ITransport, ISharedHeap
    {
        public byte* HeapBase => inner.HeapBase;
        public long HeapBytes => inner.HeapBytes;
        public string Description => "warm-up replay";
        public bool PeerClosed => stop() || inner.PeerClosed;

        public bool ReadExactly(Span<byte> buffer, int timeoutMs)
        {
            if (stop()) throw new TransportClosedException("a guest arrived");
            return inner.ReadExactly(buffer, timeoutMs);
        }

        public void Write(ReadOnlySpan<byte> data) => inner.Write(data);
        public void Flush() { }
        public void Dispose() => inner.Dispose();
    }
}
