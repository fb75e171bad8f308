using System.Runtime.InteropServices;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;

namespace GuestIcd.Tests;

/// <summary>The generated fast encoders (FastCommands, issue 11) against the table-driven codec they specialise: the
/// host has one decoder, so every byte must be the codec's.</summary>
public unsafe class FastCommandsTests
{
    /// <summary>Dispatchable handles get ids unlike their handles, as in the ICD, so a fast encoder that sent the
    /// handle instead of the id would differ; other handles are their ids, as in the ICD.</summary>
    sealed class GuestLikeMap : IHandleMap
    {
        static bool Dispatchable(int t) => t is 1 or 2 or 3 or 4 or 6;
        public ulong ToWire(int t, ulong h) => h == 0 || !Dispatchable(t) ? h : h ^ 0x5A5A_0000_0000_0001;
        public ulong FromWire(int t, ulong id) => id;
        public ulong Create(int t, out ulong handle) => handle = 1;
        public void ExpectCreate(int t, ulong id, ulong* slot) { }
    }

    static readonly int[] Covered = Enumerable.Range(0, Tables.Commands.Length).Where(FastCommands.Covers).ToArray();

    /// <summary>Random arguments for <paramref name="command"/>: scalars and handles of any value, arrays of 0-8 random
    /// elements (sometimes NULL; up to 8 takes arrays past the 32 bytes WireWriter.CopyArray moves by words), struct elements whose pNext is NULL unless <paramref name="chain"/>.</summary>
    static void Arguments(int command, Random rng, ulong* a, List<nint> owned, bool chain)
    {
        var ps = CommandCodec.ParamsOf(command);
        for (int i = 0; i < ps.Length; i++) a[i] = (ulong)rng.NextInt64() ^ ((ulong)rng.Next(2) << 63);
        foreach (ref readonly var f in ps)
            if (f.Kind == FieldKind.Pointer && f.Len == LenMode.Field) a[f.LenOffset / 8] = (ulong)rng.Next(9);
        foreach (ref readonly var f in ps)
        {
            if (f.Kind != FieldKind.Pointer) continue;
            if (rng.Next(5) == 0) { a[f.Offset / 8] = 0; continue; }
            ulong n = f.Len == LenMode.None ? 1 : a[f.LenOffset / 8];
            int bytes = (int)n * f.Size;
            byte* p = (byte*)NativeMemory.Alloc((nuint)Math.Max(bytes, 1));
            owned.Add((nint)p);
            rng.NextBytes(new Span<byte>(p, bytes));
            if (f.Elem == ElemKind.Struct && Tables.Types[f.Type].SType >= 0)
                for (ulong e = 0; e < n; e++)
                {
                    void* next = null;
                    if (chain && e == n - 1)
                    {
                        // A chain the codec walks: one node of sType 0, which it skips.
                        next = NativeMemory.AllocZeroed(64);
                        owned.Add((nint)next);
                    }
                    *(void**)(p + e * (ulong)f.Size + 8) = next;
                }
            a[f.Offset / 8] = (ulong)p;
        }
    }

    static void Dirty(WireWriter w)
    {
        // Leftovers in the reused buffer: a fast encoder that skipped its padding would send them.
        w.Reset();
        w.Reserve(8192).Fill(0xA5);
        w.Reset();
    }

    /// <summary>For every fast-pathed command, over random arguments, the fast encoder writes byte for byte what
    /// <see cref="CommandCodec.EncodeRequest"/> writes, after earlier messages in the same writer.</summary>
    [FsCheck.Xunit.Property(MaxTest = 60)]
    public void EveryFastEncoderWritesTheCodecsBytes(int seed)
    {
        var map = new GuestLikeMap();
        var rng = new Random(seed);
        ulong* a = stackalloc ulong[CommandCodec.MaxParams];
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        using var fast = new WireWriter();
        using var slow = new WireWriter();
        var owned = new List<nint>();
        try
        {
            foreach (int c in Covered)
            {
                Dirty(fast); Dirty(slow);
                // A message before it: the fast encoder appends, it does not start at 0.
                for (int m = 0; m < 2; m++)
                {
                    Arguments(c, rng, a, owned, chain: false);
                    Assert.True(FastCommands.Encode(c, a, fast, map), Tables.Commands[c].Name);
                    CommandCodec.EncodeRequest(c, a, slow, map, caps);
                }
                Assert.True(fast.Written.SequenceEqual(slow.Written), $"{Tables.Commands[c].Name}: fast and codec bytes differ");
                var h = MessageHeader.Read(fast.Written);
                Assert.Equal(Tables.Commands[c].Id, h.Command);
                Assert.Equal(MessageFlags.None, h.Flags);
            }
        }
        finally { foreach (var p in owned) NativeMemory.Free((void*)p); }
    }

    /// <summary>A struct with a pNext chain is the codec's to walk: the fast encoder declines and writes nothing.</summary>
    [Fact]
    public void AChainedStructIsLeftToTheCodec()
    {
        var map = new GuestLikeMap();
        var rng = new Random(11);
        ulong* a = stackalloc ulong[CommandCodec.MaxParams];
        using var fast = new WireWriter();
        var owned = new List<nint>();
        int declined = 0;
        try
        {
            foreach (int c in Covered)
            {
                bool chained = false;
                foreach (ref readonly var f in CommandCodec.ParamsOf(c))
                    chained |= f.Kind == FieldKind.Pointer && f.Elem == ElemKind.Struct && Tables.Types[f.Type].SType >= 0;
                if (!chained) continue;
                for (int tries = 0; tries < 20; tries++)
                {
                    Arguments(c, rng, a, owned, chain: true);
                    bool anyChain = false;
                    foreach (ref readonly var f in CommandCodec.ParamsOf(c))
                    {
                        if (f.Kind != FieldKind.Pointer || f.Elem != ElemKind.Struct || Tables.Types[f.Type].SType < 0 || a[f.Offset / 8] == 0) continue;
                        ulong n = f.Len == LenMode.None ? 1 : a[f.LenOffset / 8];
                        anyChain |= n > 0;
                    }
                    if (!anyChain) continue;
                    fast.Reset();
                    Assert.False(FastCommands.Encode(c, a, fast, map), Tables.Commands[c].Name);
                    Assert.Equal(0, fast.Position);
                    declined++;
                    break;
                }
            }
        }
        finally { foreach (var p in owned) NativeMemory.Free((void*)p); }
        Assert.True(declined >= 5, $"{declined} commands declined a chain");
    }

    [Fact]
    public void TheRecordedHotCommandsAreCoveredAndRepliesAreNot()
    {
        foreach (var c in new[] { Tables.vkCmdDispatch, Tables.vkCmdDraw, Tables.vkCmdBindDescriptorSets, Tables.vkCmdPushConstants,
                     Tables.vkCmdPipelineBarrier, Tables.vkCmdBindVertexBuffers, Tables.vkCmdCopyBuffer, Tables.vkCmdSetViewport, Tables.vkCmdBindPipeline })
            Assert.True(FastCommands.Covers(c), Tables.Commands[c].Name);
        Assert.False(FastCommands.Covers(Tables.vkCmdExecuteCommands)); // flushes its secondaries first
        Assert.False(FastCommands.Covers(Tables.vkCmdPushDescriptorSetKHR)); // selected pointers
        Assert.False(FastCommands.Covers(Tables.vkQueueWaitIdle));
        Assert.True(Covered.Length > 120, $"{Covered.Length} commands");
        Assert.All(Covered, c => Assert.StartsWith("vkCmd", Tables.Commands[c].Name));
    }

    /// <summary>The hot path allocates nothing per call once the writer has grown.</summary>
    [Fact]
    public void FastEncodersAllocateNothingOnceWarm()
    {
        using var w = new WireWriter(1 << 20);
        var set = 7UL;
        uint offset = 4;
        var barrier = new GuestIcd.Vulkan.VkMemoryBarrier { sType = GuestIcd.Vulkan.VkStructureType.VK_STRUCTURE_TYPE_MEMORY_BARRIER };
        static void Once(WireWriter w, ulong* set, uint* offset, GuestIcd.Vulkan.VkMemoryBarrier* barrier)
        {
            w.Reset();
            for (int i = 0; i < 1000; i++)
            {
                FastCommands.vkCmdDispatch(w, 1, 1, 1, 1);
                FastCommands.vkCmdBindDescriptorSets(w, 1, GuestIcd.Vulkan.VkPipelineBindPoint.VK_PIPELINE_BIND_POINT_COMPUTE, new GuestIcd.Vulkan.VkPipelineLayout(3), 0, 1,
                    (GuestIcd.Vulkan.VkDescriptorSet*)set, 1, offset);
                FastCommands.vkCmdPipelineBarrier(w, 1, default, default, default, 1, barrier, 0, null, 0, null);
            }
        }
        Once(w, &set, &offset, &barrier);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 20; i++) Once(w, &set, &offset, &barrier);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
