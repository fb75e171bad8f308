using System.Buffers;
using System.Diagnostics;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Wire;

namespace GuestIcd.Icd;

/// <summary>Replies and their waiters. Several threads may wait at once (one in vkWaitForFences, others
/// submitting); the host may answer them in any order (a wait is answered when it completes), and every reply
/// names the sequence number of its request. One waiting thread at a time reads from the transport: it keeps
/// reading until its own reply comes, handing the others' replies to their waiters; the others sleep until
/// their reply was handed over or the reader left (then one of them reads). Nothing here holds
/// <see cref="_send"/>, so sending goes on while anyone waits.</summary>
internal sealed partial class Connection
{
    /// <summary>Guards everything below; waiters sleep on it.</summary>
    readonly object _replyGate = new();
    /// <summary>Requests sent whose reply nobody has read yet: sequence → the command the reply must name.</summary>
    readonly Dictionary<ulong, uint> _expected = new();
    /// <summary>Replies read by another thread than their waiter, waiting to be taken (pooled buffers).</summary>
    readonly Dictionary<ulong, (byte[] Buffer, int Length)> _arrived = new();
    /// <summary>Replies to waits whose timeout passed here before the host answered (a slow or stopped host):
    /// they still arrive, and are recognised by their sequence number and dropped.</summary>
    readonly HashSet<ulong> _abandoned = new();
    /// <summary>True while a thread reads from the transport.</summary>
    bool _reading;

    /// <summary>A reply taken by its waiter; disposing returns its buffer to the pool.</summary>
    public readonly struct Reply(byte[]? buffer, int length) : IDisposable
    {
        public bool Arrived => buffer is not null;
        public ReadOnlySpan<byte> Span => buffer.AsSpan(0, length);
        public void Dispose() { if (buffer is not null) ArrayPool<byte>.Shared.Return(buffer); }
    }

    void ExpectReply(ulong sequence, uint command)
    {
        lock (_replyGate) _expected[sequence] = command;
    }

    void ForgetReply(ulong sequence)
    {
        lock (_replyGate) _expected.Remove(sequence);
    }

    /// <summary>Waits for the reply to message <paramref name="sequence"/> until <paramref name="deadline"/>
    /// (Stopwatch ticks; long.MaxValue: as long as the connection lives). Past the deadline the reply is
    /// abandoned (dropped when it comes) and the result has <see cref="Reply.Arrived"/> false.</summary>
    Reply AwaitReply(ulong sequence, long deadline)
    {
        if (Stats is null) return AwaitReplyUntimed(sequence, deadline);
        long start = Stopwatch.GetTimestamp();
        try { return AwaitReplyUntimed(sequence, deadline); }
        finally { Stats.Waited(Stopwatch.GetTimestamp() - start); }
    }

    Reply AwaitReplyUntimed(ulong sequence, long deadline)
    {
        while (true)
        {
            lock (_replyGate)
            {
                while (true)
                {
                    if (_arrived.Remove(sequence, out var got)) return new Reply(got.Buffer, got.Length);
                    if (_lost) throw new DeviceLostException(_lostReason);
                    if (!_reading) { _reading = true; break; }
                    int ms = RemainingMs(deadline);
                    if (ms == 0) { Abandon(sequence); return default; }
                    Monitor.Wait(_replyGate, ms);
                }
            }
            // This thread is the reader now.
            bool mine = false;
            try
            {
                var reply = ReadUntil(sequence, deadline, out mine);
                if (!mine) lock (_replyGate) Abandon(sequence);
                return reply;
            }
            finally
            {
                lock (_replyGate)
                {
                    _reading = false;
                    // Another waiter takes over the reading (or finds its reply handed over).
                    Monitor.PulseAll(_replyGate);
                }
            }
        }
    }

    /// <summary>Caller holds <see cref="_replyGate"/>. A reply that arrived meanwhile is simply dropped.</summary>
    void Abandon(ulong sequence)
    {
        _expected.Remove(sequence);
        if (_arrived.Remove(sequence, out var late)) ArrayPool<byte>.Shared.Return(late.Buffer);
        else _abandoned.Add(sequence);
    }

    /// <summary>The reader's loop: reads replies until the one for <paramref name="sequence"/> (returned,
    /// <paramref name="mine"/> true) or the deadline (nothing consumed of a reply not yet begun). A transport
    /// or protocol failure marks the connection lost for every waiter.</summary>
    Reply ReadUntil(ulong sequence, long deadline, out bool mine)
    {
        Span<byte> header = stackalloc byte[ReplyHeader.Size];
        mine = false;
        while (true)
        {
            // Another reader may have handed ours over just before this thread took the reading.
            lock (_replyGate)
                if (_arrived.Remove(sequence, out var early)) { mine = true; return new Reply(early.Buffer, early.Length); }
            if (!_transport.ReadExactly(header, RemainingMs(deadline))) return default;
            var h = ReplyHeader.Read(header);
            if (h.ByteLength > MessageHeader.MaxPayload) throw new ProtocolException($"a reply of {h.ByteLength} bytes");
            int padded = MessageHeader.Padded((int)h.ByteLength);
            var buffer = ArrayPool<byte>.Shared.Rent(Math.Max(padded, 1));
            bool kept = false;
            try
            {
                // The host sends a reply whole; one that stops halfway leaves the stream out of step for good.
                int rest = deadline == long.MaxValue ? -1 : Math.Max(RemainingMs(deadline), 1000);
                if (!_transport.ReadExactly(buffer.AsSpan(0, padded), rest)) throw new ProtocolException("reply cut short");
                Stats?.Received(ReplyHeader.Size + padded);
                NoteReply(h.Sequence);
                lock (_replyGate)
                {
                    if (_abandoned.Remove(h.Sequence)) continue;
                    if (!_expected.Remove(h.Sequence, out uint command))
                        throw new ProtocolException($"reply numbered {h.Sequence}, which no request waits for");
                    if (h.Command != command) throw new ProtocolException($"reply for command 0x{h.Command:X8} to message {h.Sequence}, which waits for 0x{command:X8}");
                    kept = true;
                    if (h.Sequence == sequence) { mine = true; return new Reply(buffer, (int)h.ByteLength); }
                    _arrived[h.Sequence] = (buffer, (int)h.ByteLength);
                    Monitor.PulseAll(_replyGate);
                }
            }
            finally
            {
                if (!kept) ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }
}
