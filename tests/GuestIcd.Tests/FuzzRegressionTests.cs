using System.Text.RegularExpressions;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;
using GuestIcd.Transport;
using GuestIcd.Vulkan;

namespace GuestIcd.Tests;

/// <summary>
/// Every crash the fuzzer found, as the guest byte stream that triggers it (tests/fuzz/regressions/,
/// README there names each crash site), sent by a raw-protocol guest over the unix socket to a real
/// hostsim on lavapipe. hostsim must survive it: the session ends with a logged reason and the next
/// guest still gets a working instance. Also: capture and replay of a real session.
/// </summary>
public sealed unsafe class FuzzRegressionTests
{
    /// <param name="ended">What the session's end must say, where the fix decides it.</param>
    [Theory]
    [InlineData("decoder-string-length-overflow.bin", "protocol error: pApplicationName: a 2147483648-byte string exceeds the message")]
    [InlineData("abort-AllocateSharedMemory.bin")]
    [InlineData("segv-jump-WriteMemory.bin")]
    [InlineData("segv-loader-vkCreateInstance.bin", "protocol error: vkCreateInstance: apiVersion 0.0.979.0 is neither 0 nor at least 1.0 (VUID-VkApplicationInfo-apiVersion-04010)")]
    [InlineData("segv-null-entry-vkGetImageViewAddressNVX.bin")]
    [InlineData("segv-vkCmdBindDescriptorSets.bin")]
    [InlineData("segv-vkCreateComputePipelines-pipeline.bin")]
    [InlineData("segv-vkCreateComputePipelines-shader.bin", "protocol error: vkCreateShaderModule: invalid SPIR-V for Vulkan 1.3: ")]
    [InlineData("segv-vkCreateSampler-border.bin", "protocol error: vkCreateSampler: anisotropy without the samplerAnisotropy feature")]
    [InlineData("segv-vkCreateSampler.bin", "protocol error: pNext of VkSamplerCreateInfo holds a VkPhysicalDeviceExtendedDynamicStateFeaturesEXT, which does not extend it")] // a feature struct chained into a sampler (refused by the decoder), before its anisotropy
    [InlineData("segv-vkDestroyDevice.bin")]
    [InlineData("segv-vkGetBufferMemoryRequirements-null-buffer.bin")]
    [InlineData("segv-vkGetBufferMemoryRequirements2.bin")]
    [InlineData("segv-vkGetImageMemoryRequirements-null-image.bin")]
    [InlineData("segv-vkResetQueryPool.bin")]
    [InlineData("segv-vkSetEvent-null-event.bin")]
    [InlineData("segv-vkUpdateDescriptorSets.bin")]
    [InlineData("segv-vkWaitForFences.bin")]
    [InlineData("segv-shader-stack-workgroup-size.bin", "protocol error: vkCreateComputePipelines: workgroup size y = 64769 is outside [1, maxComputeWorkGroupSize[1] 1024] (VUID-RuntimeSpirv-y-06430)")]
    [InlineData("hang-vkCreateDescriptorSetLayout-binding.bin", "protocol error: unknown object id 0x7 (type 20)")] // the layout was refused: VK_ERROR_OUT_OF_HOST_MEMORY
    public void HostSimSurvivesARegressionInput(string file, string? ended = null) => Survives(file, ended);

    /// <summary>Sends a raw guest stream to <paramref name="host"/> as one unix-ring guest, draining hostsim's replies,
    /// and holds the connection until hostsim logs <paramref name="ended"/>: the session must end by itself
    /// (protocol error, lost device, or the guest's commands done), and say why, before we hang up.</summary>
    internal static void Send(HostSim host, byte[] stream, string ended, int count = 1)
    {
        var bad = UnixRingTransport.Connect(host.SocketPath, 5000, heapBytes: 1L << 30);
        var drain = new Thread(() =>
        {
            var buf = new byte[4096];
            try { while (bad.ReadExactly(buf.AsSpan(0, 8), 10_000)) { } } catch (Exception) { }
        }) { IsBackground = true };
        drain.Start();
        try
        {
            for (int at = 0; at < stream.Length; at += 4096)
            {
                bad.Write(stream.AsSpan(at, Math.Min(4096, stream.Length - at)));
                bad.Flush();
            }
        }
        catch (TransportClosedException) { } // hostsim ended the session before the stream did
        host.WaitForLog(ended, count, 60_000);
        // The session is over, so hostsim has closed its end and the drain sees it; only then may the ring's
        // mapping go (unmapping it under the drain thread's read would crash this process).
        if (drain.Join(30_000)) bad.Dispose();
    }

    static void Survives(string file, string? ended)
    {
        var stream = File.ReadAllBytes(Repo.PathOf("tests/fuzz/regressions/" + file));
        using var host = new HostSim();
        Send(host, stream, "session 1 ended (");
        Assert.Matches(new Regex(@"session 1 ended \([^)]+\)"), host.Log);
        if (ended is not null) Assert.Contains($"session 1 ended ({ended}", host.Log);
        AssertServes(host, 2);
    }

    /// <summary>A fresh guest gets a host instance: hostsim, and the driver in it, still work.</summary>
    static void AssertServes(HostSim host, int session)
    {
        var app = new VkApplicationInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_APPLICATION_INFO, apiVersion = (1u << 22) | (3u << 12) };
        var ci = new VkInstanceCreateInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, pApplicationInfo = &app };
        Assert.Equal(0, CreateInstance(host, &ci)); // VK_SUCCESS
        host.WaitForLog($"session {session} connected", 5000);
    }

    /// <summary>vkCreateInstance as a hostile guest writes it: the first struct of <c>ci->pNext</c> on the wire
    /// whether or not it extends VkInstanceCreateInfo (the ICD's encoder would leave it out).</summary>
    static void ForgeChainedRequest(VkInstanceCreateInfo* ci, ulong* args, WireWriter w, ulong* caps)
    {
        var ids = new Ids();
        ref readonly var c = ref Tables.Commands[Tables.vkCreateInstance];
        int at = w.BeginMessage(c.Id, MessageFlags.ReplyWanted);
        w.U32(1); // pCreateInfo: one struct
        ref readonly var t = ref Tables.Types[Tables.TypeOfSType((int)VkStructureType.VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO)];
        var fields = Tables.Fields.AsSpan(t.FirstField, t.FieldCount);
        foreach (ref readonly var f in fields)
        {
            if (f.Kind != FieldKind.PNext) { StructCodec.EncodeField(f, (byte*)ci, w, ids); continue; }
            int chained = Tables.TypeOfSType(*(int*)ci->pNext);
            w.U32((uint)*(int*)ci->pNext);
            StructCodec.EncodeStruct(chained, (byte*)ci->pNext, w, ids, chained: true);
            w.U32(0);
        }
        var ps = CommandCodec.ParamsOf(Tables.vkCreateInstance);
        for (int i = 1; i < ps.Length; i++)
        {
            if (ps[i].IsOut) StructCodec.EncodeShape(ps[i], (byte*)args, w, ids, out caps[i]);
            else StructCodec.EncodeField(ps[i], (byte*)args, w, ids);
        }
        w.EndMessage(at);
    }

    /// <summary>One raw guest: the hello, then vkCreateInstance with <paramref name="ci"/>; its VkResult, or null
    /// where hostsim ended the session instead of answering.</summary>
    static int? CreateInstance(HostSim host, VkInstanceCreateInfo* ci)
    {
        using var t = UnixRingTransport.Connect(host.SocketPath, 5000);
        using var w = new WireWriter();
        Handshake.Write(new Hello(Handshake.ProtocolMajor, Handshake.ProtocolMinor, Tables.RegistryVersion, "fuzz-regression", [], []), w);
        ulong instance = 0;
        ulong* args = stackalloc ulong[CommandCodec.MaxParams];
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        args[0] = (ulong)ci;
        args[2] = (ulong)&instance;
        if (ci->pNext == null) CommandCodec.EncodeRequest(Tables.vkCreateInstance, args, w, new Ids(), caps);
        else ForgeChainedRequest(ci, args, w, caps);
        t.Write(w.Written);
        t.Flush();
        Span<byte> hdr = stackalloc byte[ReplyHeader.Size];
        int result = 0;
        for (int reply = 0; reply < 2; reply++)
        {
            bool read;
            try { read = t.ReadExactly(hdr, 20_000); }
            catch (TransportClosedException) { read = false; }
            if (!read && reply == 1) return null;
            Assert.True(read, "no reply from hostsim");
            var h = ReplyHeader.Read(hdr);
            var payload = new byte[MessageHeader.Padded((int)h.ByteLength)];
            Assert.True(t.ReadExactly(payload, 20_000));
            if (reply == 0) Assert.True(Handshake.ReadReply(payload.AsSpan(0, (int)h.ByteLength)).Accepted);
            else result = BitConverter.ToInt32(payload, 0);
        }
        return result;
    }

    /// <summary>The host's loader runs on the guest's VkInstanceCreateInfo before any driver does, and trusts
    /// it (a fuzzed apiVersion of major 0 crashed loader 1.3.239): hostsim checks it first. Spec violations end
    /// the session naming the VUID; what the host lacks gets the spec's VkResult and the session goes on.</summary>
    [Theory]
    [InlineData("api-major-0", null, "protocol error: vkCreateInstance: apiVersion 0.0.979.0 is neither 0 nor at least 1.0 (VUID-VkApplicationInfo-apiVersion-04010)")]
    [InlineData("api-patch-only", null, "(VUID-VkApplicationInfo-apiVersion-04010)")]
    [InlineData("foreign-pnext", null, "protocol error: pNext of VkInstanceCreateInfo holds a VkPhysicalDeviceFeatures2, which does not extend it")]
    [InlineData("unknown-flags", null, "(VUID-VkInstanceCreateInfo-flags-parameter)")]
    [InlineData("unknown-layer", -6, "vkCreateInstance: layer VK_LAYER_GUESTICD_not_a_layer is not on this host")] // VK_ERROR_LAYER_NOT_PRESENT
    [InlineData("unknown-extension", -7, "vkCreateInstance: extension VK_GUESTICD_not_an_extension is not offered by this host")] // VK_ERROR_EXTENSION_NOT_PRESENT
    public void AMalformedInstanceCreateInfoIsRefusedBeforeTheHostLoader(string mode, int? result, string logged)
    {
        using var host = new HostSim();
        var app = new VkApplicationInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_APPLICATION_INFO, apiVersion = (1u << 22) | (3u << 12) };
        var ci = new VkInstanceCreateInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, pApplicationInfo = &app };
        var features = new VkPhysicalDeviceFeatures2 { sType = VkStructureType.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2 };
        byte* layer = stackalloc byte[64], extension = stackalloc byte[64];
        System.Text.Encoding.ASCII.GetBytes("VK_LAYER_GUESTICD_not_a_layer\0", new Span<byte>(layer, 64));
        System.Text.Encoding.ASCII.GetBytes("VK_GUESTICD_not_an_extension\0", new Span<byte>(extension, 64));
        switch (mode)
        {
            case "api-major-0": app.apiVersion = 0x003D3000; break; // the fuzzer's value: 0.979.0
            case "api-patch-only": app.apiVersion = 1; break;
            case "foreign-pnext": ci.pNext = &features; break; // the guest's encoder drops it: CreateInstance forges it onto the wire
            case "unknown-flags": ci.flags = (VkInstanceCreateFlags)0x10; break;
            case "unknown-layer": ci.enabledLayerCount = 1; ci.ppEnabledLayerNames = &layer; break;
            case "unknown-extension": ci.enabledExtensionCount = 1; ci.ppEnabledExtensionNames = &extension; break;
        }
        Assert.Equal(result, CreateInstance(host, &ci));
        host.WaitForLog(logged, 10_000);
        if (result is null) host.WaitForLog("session 1 ended (protocol error: ", 10_000);
        AssertServes(host, 2);
    }

    sealed class Ids : IHandleMap
    {
        ulong _next = 0x100;
        public ulong ToWire(int objectType, ulong handle) => handle;
        public ulong FromWire(int objectType, ulong id) => id;
        public ulong Create(int objectType, out ulong handle) => handle = ++_next;
        public void ExpectCreate(int objectType, ulong id, ulong* slot) => throw new InvalidOperationException();
    }

    [Fact]
    public void ACapturedSessionReplaysToTheSameCommands()
    {
        var dir = Path.Combine(Path.GetTempPath(), "guesticd-capture-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            using (var host = new HostSim("--capture", dir))
            {
                AssertServes(host, 1);
                host.WaitForLog("session 1 ended (", 10_000);
                // The end record is written when the worker disposes the session, after that line.
                var sw = System.Diagnostics.Stopwatch.StartNew();
                while (!CaptureReplayTests.Complete(Path.Combine(dir, "session-1.gicd")) && sw.ElapsedMilliseconds < 10_000) Thread.Sleep(50);
            }
            var file = Path.Combine(dir, "session-1.gicd");
            Assert.True(File.Exists(file), "no capture written");
            Assert.Equal("GICDCAP\0", System.Text.Encoding.ASCII.GetString(File.ReadAllBytes(file), 0, 8));
            var r = Repo.Run(HostSim.Executable, $"replay {file} --log-level Warning", timeoutMs: 60_000);
            Assert.Equal(0, r.ExitCode);
            // The hello, then vkCreateInstance: one command, answered, and the stream's end is the guest leaving.
            Assert.Contains("1 commands, 1 replies", r.Stdout);
            Assert.Contains("ended: guest disconnected", r.Stdout);
        }
        finally { try { Directory.Delete(dir, true); } catch (IOException) { } }
    }

    [Fact]
    public void TheCommittedCorpusReplaysCleanly()
    {
        // The corpus is real sessions (tests/fuzz/capture-corpus.sh): replayed, each runs to its end
        // with no error, so the fuzzer starts from streams hostsim fully accepts.
        foreach (var file in Directory.GetFiles(Repo.PathOf("tests/fuzz/corpus"), "*.gicd"))
        {
            var r = Repo.Run(HostSim.Executable, $"replay {file} --log-level Warning", timeoutMs: 60_000);
            Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
            Assert.Matches(new Regex(@", 0 errors; ended: guest disconnected"), r.Stdout);
        }
    }
}
