using FsCheck;
using FsCheck.Fluent;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;
using GuestIcd.Vulkan;

namespace GuestIcd.Tests;

/// <summary>In-process checks of the codec and the version check: no sockets, no driver.</summary>
public unsafe class ProtocolTests
{
    /// <summary>A host-style map: ids the "session" knows translate, anything else is a protocol error.</summary>
    sealed class TestMap : IHandleMap
    {
        public readonly Dictionary<ulong, (int Type, ulong Host)> Known = new();
        ulong _next;
        public ulong ToWire(int t, ulong h) => h == 0 ? 0 : Known.First(kv => kv.Value.Host == h).Key;
        public ulong FromWire(int t, ulong id)
        {
            if (id == 0) return 0;
            if (!Known.TryGetValue(id, out var e) || e.Type != t) throw new ProtocolException($"unknown object id {id}");
            return e.Host;
        }
        public ulong Create(int t, out ulong handle) { var id = ++_next; handle = 0x1000 + id; Known[id] = (t, handle); return id; }
        public void ExpectCreate(int t, ulong id, ulong* slot) { if (id == 0) throw new ProtocolException("id 0"); }
    }

    [FsCheck.Xunit.Property(MaxTest = 500)]
    public bool AnyTwoVersionsAgreeOnTheCommonOneOrRefuse(ushort gMajor, ushort gMinor, ushort hMajor, ushort hMinor)
    {
        var (ok, major, minor) = Handshake.Negotiate(gMajor, gMinor, hMajor, hMinor);
        if (gMajor != hMajor) return !ok;
        return ok && major == gMajor && minor == Math.Min(gMinor, hMinor)
               && Handshake.Negotiate(hMajor, hMinor, gMajor, gMinor) == (ok, major, minor);
    }

    [Fact]
    public void HandshakeMessagesRoundTrip()
    {
        using var w = new WireWriter();
        var hello = new Hello(1, 3, 239, "build", [1, 2, 0xFFFFFFFF], ["VK_KHR_a", "VK_EXT_b"]);
        Handshake.Write(hello, w);
        var back = Handshake.ReadHello(w.Written[MessageHeader.Size..][..(int)MessageHeader.Read(w.Written).ByteLength]);
        Assert.Equal(hello.BuildId, back.BuildId);
        Assert.Equal(hello.Commands, back.Commands);
        Assert.Equal(hello.Extensions, back.Extensions);
        Assert.Equal((hello.Major, hello.Minor, hello.RegistryVersion), (back.Major, back.Minor, back.RegistryVersion));
    }

    [Fact]
    public void InstanceCreateInfoRoundTripsWithStringsAndAChain()
    {
        var names = new[] { "VK_KHR_get_physical_device_properties2", "VK_KHR_external_memory_capabilities" };
        var app = new VkApplicationInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_APPLICATION_INFO, applicationVersion = 7, apiVersion = (1u << 22) | (3u << 12) };
        var appName = "round trip\0"u8.ToArray();
        var validation = new VkValidationFeaturesEXT { sType = VkStructureType.VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT };
        fixed (byte* pApp = appName)
        {
            app.pApplicationName = pApp;
            var strs = names.Select(n => System.Runtime.InteropServices.Marshal.StringToHGlobalAnsi(n)).ToArray();
            fixed (nint* pStrs = strs)
            {
                var ci = new VkInstanceCreateInfo
                {
                    sType = VkStructureType.VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, pNext = &validation, pApplicationInfo = &app,
                    enabledExtensionCount = 2, ppEnabledExtensionNames = (byte**)pStrs,
                };
                var map = new TestMap();
                using var w = new WireWriter();
                ulong* args = stackalloc ulong[CommandCodec.MaxParams];
                ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
                VkInstance instance;
                args[0] = (ulong)&ci; args[1] = 0; args[2] = (ulong)&instance;
                CommandCodec.EncodeRequest(Tables.vkCreateInstance, args, w, map, caps);
                var h = MessageHeader.Read(w.Written);
                Assert.Equal(Tables.Commands[Tables.vkCreateInstance].Id, h.Command);
                Assert.Equal(0, w.Written.Length % 8);

                using var arena = new Arena();
                ulong* hostArgs = stackalloc ulong[CommandCodec.MaxParams];
                CommandCodec.DecodeRequest(Tables.vkCreateInstance, w.Written.Slice(MessageHeader.Size, (int)h.ByteLength), hostArgs, caps, map, arena);
                var got = (VkInstanceCreateInfo*)hostArgs[0];
                Assert.Equal(2u, got->enabledExtensionCount);
                for (int i = 0; i < 2; i++)
                    Assert.Equal(names[i], System.Runtime.InteropServices.Marshal.PtrToStringAnsi((nint)got->ppEnabledExtensionNames[i]));
                Assert.Equal("round trip", System.Runtime.InteropServices.Marshal.PtrToStringAnsi((nint)got->pApplicationInfo->pApplicationName));
                Assert.Equal(app.apiVersion, got->pApplicationInfo->apiVersion);
                Assert.Equal(7u, got->pApplicationInfo->applicationVersion);
                Assert.True(got->pNext != null);
                Assert.Equal(VkStructureType.VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT, ((VkValidationFeaturesEXT*)got->pNext)->sType);
                Assert.True(hostArgs[1] == 0, "allocation callbacks never cross");
                foreach (var s in strs) System.Runtime.InteropServices.Marshal.FreeHGlobal(s);
            }
        }
    }

    [Fact]
    public void OutputsFillTheCallersChainWithoutTouchingItsLinks()
    {
        // Guest: vkGetPhysicalDeviceFeatures2 with a chain of two feature structs.
        var map = new TestMap();
        map.Known[5] = (2, 0x5000);
        var f13 = new VkPhysicalDeviceVulkan13Features { sType = VkStructureType.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES };
        var f12 = new VkPhysicalDeviceVulkan12Features { sType = VkStructureType.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES, pNext = &f13 };
        var f2 = new VkPhysicalDeviceFeatures2 { sType = VkStructureType.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, pNext = &f12 };
        ulong* args = stackalloc ulong[CommandCodec.MaxParams];
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        args[0] = 0x5000; args[1] = (ulong)&f2;
        using var w = new WireWriter();
        CommandCodec.EncodeRequest(Tables.vkGetPhysicalDeviceFeatures2, args, w, map, caps);

        // Host: the shape becomes a real chain in arena memory; "the driver" fills it.
        var h = MessageHeader.Read(w.Written);
        using var arena = new Arena();
        ulong* hostArgs = stackalloc ulong[CommandCodec.MaxParams];
        ulong* hostCaps = stackalloc ulong[CommandCodec.MaxParams];
        CommandCodec.DecodeRequest(Tables.vkGetPhysicalDeviceFeatures2, w.Written.Slice(MessageHeader.Size, (int)h.ByteLength), hostArgs, hostCaps, map, arena);
        var hf2 = (VkPhysicalDeviceFeatures2*)hostArgs[1];
        Assert.Equal(0x5000ul, hostArgs[0]);
        hf2->features.robustBufferAccess = 1;
        var hf12 = (VkPhysicalDeviceVulkan12Features*)hf2->pNext;
        Assert.Equal(VkStructureType.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES, hf12->sType);
        hf12->timelineSemaphore = 1;
        var hf13 = (VkPhysicalDeviceVulkan13Features*)hf12->pNext;
        Assert.Equal(VkStructureType.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES, hf13->sType);
        hf13->synchronization2 = 1;
        hf13->maintenance4 = 1;

        using var rw = new WireWriter();
        CommandCodec.EncodeReply(Tables.vkGetPhysicalDeviceFeatures2, 0, hostArgs, hostCaps, 9, rw, map);
        var rh = ReplyHeader.Read(rw.Written);
        Assert.Equal(9ul, rh.Sequence);
        CommandCodec.DecodeReply(Tables.vkGetPhysicalDeviceFeatures2, rw.Written.Slice(ReplyHeader.Size, (int)rh.ByteLength), args, caps, map);

        Assert.Equal(1u, f2.features.robustBufferAccess);
        Assert.Equal(1u, f12.timelineSemaphore);
        Assert.Equal(1u, f13.synchronization2);
        Assert.Equal(1u, f13.maintenance4);
        Assert.True(f2.pNext == &f12 && f12.pNext == &f13 && f13.pNext == null, "the caller's links are its own");
    }

    /// <summary>vkCmdDrawMultiIndexedEXT reads its draws <c>stride</c> bytes apart: the guest encodes them from
    /// there, the wire carries them packed, and the host's stride is the packed element size, so the guest's
    /// stride never describes memory the host did not lay out.</summary>
    [Theory]
    [InlineData(12u)]
    [InlineData(16u)]
    [InlineData(40u)]
    public void AStridedArrayTravelsPackedAndTheHostStrideIsTheElementSize(uint stride)
    {
        var map = new TestMap();
        map.Known[3] = (Tables.Params[Tables.Commands[Tables.vkCmdDrawMultiIndexedEXT].Params].Type, 0x3000);
        const int draws = 4;
        byte* app = stackalloc byte[(int)stride * draws];
        new Span<byte>(app, (int)stride * draws).Fill(0xEE); // padding the host must never see
        for (int i = 0; i < draws; i++)
            *(VkMultiDrawIndexedInfoEXT*)(app + i * stride) = new VkMultiDrawIndexedInfoEXT { firstIndex = (uint)(10 * i), indexCount = 3, vertexOffset = -i };
        int vertexOffset = 5;
        ulong* args = stackalloc ulong[CommandCodec.MaxParams];
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        args[0] = 0x3000; args[1] = draws; args[2] = (ulong)app; args[3] = 1; args[4] = 0; args[5] = stride; args[6] = (ulong)&vertexOffset;
        using var w = new WireWriter();
        CommandCodec.EncodeRequest(Tables.vkCmdDrawMultiIndexedEXT, args, w, map, caps);

        var h = MessageHeader.Read(w.Written);
        using var arena = new Arena();
        ulong* hostArgs = stackalloc ulong[CommandCodec.MaxParams];
        CommandCodec.DecodeRequest(Tables.vkCmdDrawMultiIndexedEXT, w.Written.Slice(MessageHeader.Size, (int)h.ByteLength), hostArgs, caps, map, arena);
        Assert.Equal((ulong)sizeof(VkMultiDrawIndexedInfoEXT), hostArgs[5]);
        var got = (VkMultiDrawIndexedInfoEXT*)hostArgs[2];
        for (int i = 0; i < draws; i++)
            Assert.Equal(((uint)(10 * i), 3u, -i), (got[i].firstIndex, got[i].indexCount, got[i].vertexOffset));
        Assert.Equal(5, *(int*)hostArgs[6]);
    }

    /// <summary>A struct chained where the registry's structextends does not put it is dropped by the guest's
    /// encoder (drivers ignore it too) and refused by the host's decoder, whose driver would read it by its
    /// sType in code written for another owner.</summary>
    [Fact]
    public void AChainedStructThatDoesNotExtendItsOwnerIsDroppedByTheGuestAndRefusedByTheHost()
    {
        var map = new TestMap();
        int bufferInfo = Tables.TypeOfSType((int)VkStructureType.VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO);
        int allocInfo = Tables.TypeOfSType((int)VkStructureType.VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO);
        int priority = Tables.TypeOfSType((int)VkStructureType.VK_STRUCTURE_TYPE_MEMORY_PRIORITY_ALLOCATE_INFO_EXT);
        Assert.True(StructCodec.Extends(priority, allocInfo));
        Assert.False(StructCodec.Extends(priority, bufferInfo));
        var prio = new VkMemoryPriorityAllocateInfoEXT { sType = VkStructureType.VK_STRUCTURE_TYPE_MEMORY_PRIORITY_ALLOCATE_INFO_EXT, priority = 0.5f };

        // Where it belongs it travels.
        var mai = new VkMemoryAllocateInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, pNext = &prio, allocationSize = 4096 };
        using var wa = new WireWriter();
        StructCodec.EncodeStruct(allocInfo, (byte*)&mai, wa, map);
        using var arena = new Arena();
        var r = new WireReader(wa.Written);
        var hostMai = (VkMemoryAllocateInfo*)arena.Alloc((nuint)sizeof(VkMemoryAllocateInfo));
        StructCodec.DecodeStruct(allocInfo, (byte*)hostMai, ref r, map, arena);
        Assert.True(hostMai->pNext != null && ((VkMemoryPriorityAllocateInfoEXT*)hostMai->pNext)->priority == 0.5f);

        // Chained into VkBufferCreateInfo, the guest's encoder leaves it out: the same bytes as no chain.
        var bci = new VkBufferCreateInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, pNext = &prio, size = 64, usage = VkBufferUsageFlags.VK_BUFFER_USAGE_TRANSFER_DST_BIT };
        using var withChain = new WireWriter();
        StructCodec.EncodeStruct(bufferInfo, (byte*)&bci, withChain, map);
        bci.pNext = null;
        using var plain = new WireWriter();
        StructCodec.EncodeStruct(bufferInfo, (byte*)&bci, plain, map);
        Assert.True(withChain.Written.SequenceEqual(plain.Written));

        // A hostile guest writes it anyway: sType, then the chain's {sType, struct} where the terminator was.
        using var forged = new WireWriter();
        forged.Bytes(plain.Written[..4]);
        forged.U32((uint)VkStructureType.VK_STRUCTURE_TYPE_MEMORY_PRIORITY_ALLOCATE_INFO_EXT);
        StructCodec.EncodeStruct(priority, (byte*)&prio, forged, map, chained: true);
        forged.Bytes(plain.Written[4..]);
        var fr = new WireReader(forged.Written);
        var hostBci = (byte*)arena.Alloc((nuint)sizeof(VkBufferCreateInfo));
        ProtocolException? refused = null;
        try { StructCodec.DecodeStruct(bufferInfo, hostBci, ref fr, map, arena); }
        catch (ProtocolException e) { refused = e; }
        Assert.NotNull(refused);
        Assert.Contains("pNext of VkBufferCreateInfo holds a VkMemoryPriorityAllocateInfoEXT, which does not extend it", refused.Message);
    }

    /// <summary>The decoder fed random bytes for any command answers with a value or a ProtocolException:
    /// never another exception, never a read outside the message (the reader is span-bounded).</summary>
    [FsCheck.Xunit.Property(MaxTest = 3000)]
    public void RandomBytesNeverBreakTheDecoder(PositiveInt pick, byte[] bytes)
    {
        var generic = Enumerable.Range(0, Tables.Commands.Length).Where(i => Tables.Commands[i].OnWire).ToArray();
        int cmd = generic[pick.Get % generic.Length];
        var map = new TestMap();
        map.Known[1] = (1, 0x100); map.Known[2] = (2, 0x200); map.Known[3] = (3, 0x300);
        using var arena = new Arena(1 << 12, 1 << 20);
        ulong* args = stackalloc ulong[CommandCodec.MaxParams];
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        try { CommandCodec.DecodeRequest(cmd, bytes, args, caps, map, arena); }
        catch (ProtocolException) { }
    }

    /// <summary>Mutations of a valid request (the likelier attack than pure noise) are just as safe.</summary>
    [FsCheck.Xunit.Property(MaxTest = 3000)]
    public void MutatedRequestsNeverBreakTheDecoder(NonNegativeInt at, byte value, NonNegativeInt cut)
    {
        var map = new TestMap();
        var f13 = new VkPhysicalDeviceVulkan13Features { sType = VkStructureType.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES };
        float prio = 1;
        var q = new VkDeviceQueueCreateInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, queueCount = 1, pQueuePriorities = &prio };
        var ci = new VkDeviceCreateInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, pNext = &f13, queueCreateInfoCount = 1, pQueueCreateInfos = &q };
        map.Known[2] = (2, 0x200);
        ulong* args = stackalloc ulong[CommandCodec.MaxParams];
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        VkDevice dev;
        args[0] = 0x200; args[1] = (ulong)&ci; args[2] = 0; args[3] = (ulong)&dev;
        using var w = new WireWriter();
        CommandCodec.EncodeRequest(Tables.vkCreateDevice, args, w, map, caps);
        var msg = w.Written.Slice(MessageHeader.Size, (int)MessageHeader.Read(w.Written).ByteLength).ToArray();
        msg[at.Get % msg.Length] = value;
        var input = msg.AsSpan(0, msg.Length - cut.Get % 4).ToArray();
        using var arena = new Arena(1 << 12, 1 << 20);
        try { CommandCodec.DecodeRequest(Tables.vkCreateDevice, input, args, caps, map, arena); }
        catch (ProtocolException) { }
    }
}

public unsafe class HotPathAllocationTests
{
    /// <summary>The hot path (encode, decode, reply) allocates nothing per call once buffers have grown.</summary>
    [Fact]
    public void ARoundTripAllocatesNothingOnceWarm()
    {
        var map = new NoAllocMap();
        var f13 = stackalloc VkPhysicalDeviceVulkan13Features[1];
        f13->sType = VkStructureType.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES;
        var f2 = stackalloc VkPhysicalDeviceFeatures2[1];
        f2->sType = VkStructureType.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
        f2->pNext = f13;
        ulong* args = stackalloc ulong[CommandCodec.MaxParams];
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        ulong* hostArgs = stackalloc ulong[CommandCodec.MaxParams];
        ulong* hostCaps = stackalloc ulong[CommandCodec.MaxParams];
        using var w = new WireWriter();
        using var rw = new WireWriter();
        using var arena = new Arena();
        void Once()
        {
            args[0] = 7; args[1] = (ulong)f2;
            w.Reset();
            CommandCodec.EncodeRequest(Tables.vkGetPhysicalDeviceFeatures2, args, w, map, caps);
            var h = MessageHeader.Read(w.Written);
            arena.Reset();
            CommandCodec.DecodeRequest(Tables.vkGetPhysicalDeviceFeatures2, w.Written.Slice(MessageHeader.Size, (int)h.ByteLength), hostArgs, hostCaps, map, arena);
            rw.Reset();
            CommandCodec.EncodeReply(Tables.vkGetPhysicalDeviceFeatures2, 0, hostArgs, hostCaps, 1, rw, map);
            var rh = ReplyHeader.Read(rw.Written);
            CommandCodec.DecodeReply(Tables.vkGetPhysicalDeviceFeatures2, rw.Written.Slice(ReplyHeader.Size, (int)rh.ByteLength), args, caps, map);
        }
        for (int i = 0; i < 10; i++) Once();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++) Once();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    sealed class NoAllocMap : IHandleMap
    {
        public ulong ToWire(int t, ulong h) => h;
        public ulong FromWire(int t, ulong id) => id;
        public ulong Create(int t, out ulong handle) => handle = 1;
        public void ExpectCreate(int t, ulong id, ulong* slot) { }
    }
}

public unsafe class EnumCheckTests
{
    /// <summary>A value outside an enum reaching the host driver is undefined behaviour in the host process.</summary>
    [Fact]
    public void TheHostRefusesAnOutOfRangeEnumAndAcceptsEveryRegistryValue()
    {
        var map = new IdentityMap();
        var ci = new VkSamplerCreateInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_SAMPLER_CREATE_INFO, magFilter = VkFilter.VK_FILTER_LINEAR };
        ulong* args = stackalloc ulong[CommandCodec.MaxParams];
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        VkSampler sampler;
        args[0] = 3; args[1] = (ulong)&ci; args[2] = 0; args[3] = (ulong)&sampler;
        string? Decode()
        {
            using var w = new WireWriter();
            CommandCodec.EncodeRequest(Tables.vkCreateSampler, args, w, map, caps);
            using var arena = new Arena();
            ulong* hostArgs = stackalloc ulong[CommandCodec.MaxParams];
            try
            {
                CommandCodec.DecodeRequest(Tables.vkCreateSampler, w.Written.Slice(MessageHeader.Size, (int)MessageHeader.Read(w.Written).ByteLength), hostArgs, caps, map, arena);
                return null;
            }
            catch (ProtocolException e) { return e.Message; }
        }
        Assert.Null(Decode());
        ci.magFilter = (VkFilter)1000015000; // VK_FILTER_CUBIC_EXT: an extension's value is a value of the enum
        Assert.Null(Decode());
        ci.magFilter = (VkFilter)77;
        Assert.Equal("magFilter: 77 is not a value of VkFilter", Decode());
        ci.magFilter = VkFilter.VK_FILTER_NEAREST;
        ci.addressModeU = (VkSamplerAddressMode)(-5);
        Assert.Equal("addressModeU: -5 is not a value of VkSamplerAddressMode", Decode());
    }

    sealed class IdentityMap : IHandleMap
    {
        public ulong ToWire(int t, ulong h) => h;
        public ulong FromWire(int t, ulong id) => id;
        public ulong Create(int t, out ulong handle) => handle = 9;
        public void ExpectCreate(int t, ulong id, ulong* slot) { }
    }
}
