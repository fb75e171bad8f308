using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;

namespace GuestIcd.Tests;

/// <summary>The framing of a command buffer's deferred recording (protocol 1.1): what the guest records into a
/// command buffer's own writer and wraps at submit, and what the host's walk of it accepts and refuses.</summary>
public unsafe class RecordedCommandsTests
{
    sealed class IdMap : IHandleMap
    {
        public ulong ToWire(int t, ulong h) => h;
        public ulong FromWire(int t, ulong id) => id;
        public ulong Create(int t, out ulong handle) => handle = 1;
        public void ExpectCreate(int t, ulong id, ulong* slot) { }
    }

    static void Dispatch(WireWriter w, ulong commandBuffer, uint x)
    {
        ulong* a = stackalloc ulong[4];
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        a[0] = commandBuffer; a[1] = x; a[2] = 1; a[3] = 1;
        CommandCodec.EncodeRequest(Tables.vkCmdDispatch, a, w, new IdMap(), caps);
    }

    /// <summary>Recording, wrapping and the host's walk + decode of every nested message allocate nothing once warm.</summary>
    [Fact]
    public void RecordingWrappingAndDecodingAllocateNothingOnceWarm()
    {
        var map = new IdMap();
        using var recording = new WireWriter();
        using var queue = new WireWriter();
        using var arena = new Arena();
        ulong* a = stackalloc ulong[4];
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        ulong* hostArgs = stackalloc ulong[CommandCodec.MaxParams];
        ulong sum = 0;
        void Once()
        {
            recording.Reset();
            for (uint i = 0; i < 100; i++)
            {
                a[0] = 42; a[1] = i; a[2] = 1; a[3] = 1;
                // The ICD's two encoders: the generated fast path and the table-driven codec.
                if (i % 2 == 0) FastCommands.Encode(Tables.vkCmdDispatch, a, recording, map);
                else CommandCodec.EncodeRequest(Tables.vkCmdDispatch, a, recording, map, caps);
            }
            queue.Reset();
            RecordedCommands.Append(queue, 42, recording.Written);
            var h = MessageHeader.Read(queue.Written);
            if (h.Command != PrivateCommands.RecordedCommands) throw new InvalidOperationException("not a recording");
            var r = new RecordedCommands.Reader(queue.Written.Slice(MessageHeader.Size, (int)h.ByteLength));
            while (r.Next(out var nh, out var payload))
            {
                arena.Reset();
                CommandCodec.DecodeRequest(Tables.CommandOfId(nh.Command), payload, hostArgs, caps, map, arena);
                sum += hostArgs[1];
            }
        }
        for (int i = 0; i < 10; i++) Once();
        sum = 0;
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++) Once();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(1000UL * (99 * 100 / 2), sum); // every nested message decoded, in order
    }

    static string? Walk(ReadOnlySpan<byte> payload)
    {
        try
        {
            var r = new RecordedCommands.Reader(payload);
            while (r.Next(out _, out _)) { }
            return null;
        }
        catch (ProtocolException e) { return e.Message; }
    }

    static byte[] Chunk(Action<WireWriter> nested)
    {
        using var rec = new WireWriter();
        nested(rec);
        using var q = new WireWriter();
        RecordedCommands.Append(q, 7, rec.Written);
        var h = MessageHeader.Read(q.Written);
        return q.Written.Slice(MessageHeader.Size, (int)h.ByteLength).ToArray();
    }

    [Fact]
    public void TheHostsWalkRefusesNestingRepliesAndTruncation()
    {
        Assert.Null(Walk(Chunk(w => { Dispatch(w, 7, 1); Dispatch(w, 7, 2); })));
        // A nested private message (a recording inside a recording, or memory traffic) is refused.
        Assert.Contains($"private message {PrivateCommands.RecordedCommands} nested", Walk(Chunk(w => RecordedCommands.Append(w, 7, Chunk(x => Dispatch(x, 7, 1))))));
        Assert.Contains("private message 4 nested", Walk(Chunk(w => { int at = w.BeginMessage(PrivateCommands.WriteMemory, MessageFlags.None); w.U64(1); w.EndMessage(at); })));
        // Nothing nested may want a reply: the guest is not waiting for one.
        Assert.Contains("wants a reply", Walk(Chunk(w => { int at = w.BeginMessage(Tables.Commands[Tables.vkCmdDispatch].Id, MessageFlags.ReplyWanted); w.U64(7); w.EndMessage(at); })));
        // A nested length that runs past the chunk, and stray bytes after the last message.
        var good = Chunk(w => Dispatch(w, 7, 1));
        var longer = (byte[])good.Clone();
        BitConverter.TryWriteBytes(longer.AsSpan(8 + 8), 4096u);
        Assert.Contains("runs past the chunk", Walk(longer));
        Assert.Contains("stray bytes", Walk(good.Concat(new byte[4]).ToArray()));
        Assert.Contains("VK_NULL_HANDLE", Walk(new byte[8]));
        Assert.Contains("truncated", Walk(new byte[4]));
    }
}
