using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace GuestIcd.Transport;

/// <summary>
/// A single-producer/single-consumer byte ring in memory shared by two processes that need not trust
/// each other. Each process builds its own <see cref="SharedRing"/> over its own mapping and uses it in
/// one role only: the producer calls <see cref="Write"/>/<see cref="Publish"/>, the consumer
/// <see cref="Read"/>.
/// </summary>
/// <remarks>
/// Region layout (<see cref="HeaderSize"/> bytes of header, then <c>capacity</c> data bytes, capacity a
/// power of two):
/// <code>
///   0   u64 head              bytes ever published by the producer (written by producer only)
///   64  u64 tail              bytes ever consumed by the consumer  (written by consumer only)
///   128 u32 consumerSleeping  consumer is about to block; the producer rings the doorbell after publishing
///   192 u32 producerWaiting   producer is about to block on a full ring; the consumer rings after consuming
///   256 u32 producerFutex     the producer wakes a sleeping consumer with FUTEX_WAKE on consumerSleeping
///   320 u32 consumerFutex     the consumer wakes a waiting producer with FUTEX_WAKE on producerWaiting
/// </code>
/// A sleeper's flag says how to wake it: 1, a doorbell byte on the transport's channel (poll()); 2, a futex wake
/// on the flag word itself, which it sets only when the waker announced (producerFutex/consumerFutex) that it
/// does that. Peers of one kernel use futexes; across a VM boundary, or with a peer that predates them, doorbells.
/// Counters are free-running u64 byte counts; positions are <c>counter &amp; (capacity-1)</c>, with the
/// capacity taken from this process's own arguments, never from shared memory — so whatever the peer
/// writes into the header, no access leaves the data area. The peer's counter is only trusted to move
/// forward by at most a ring's worth; anything else is reported as a corrupt ring.
/// Each side keeps its own counter privately and only ever stores it to shared memory, so a peer that
/// scribbles over our counter cannot confuse us either.
/// The flags implement the sleep/wake handshake (Dekker-style): the sleeper sets its flag with a full
/// fence and then re-checks the counter; the waker stores its counter with a full fence and then checks
/// the flag. At least one of them sees the other, so no wake-up is lost.
/// </remarks>
public sealed unsafe class SharedRing
{
    /// <summary>One page, so the data area is page aligned.</summary>
    public const int HeaderSize = 4096;
    public const int MinCapacity = 64;

    private const int HeadOffset = 0;
    private const int TailOffset = 64;
    private const int ConsumerSleepingOffset = 128;
    private const int ProducerWaitingOffset = 192;
    private const int ProducerFutexOffset = 256;
    private const int ConsumerFutexOffset = 320;

    /// <summary>A flag's value: the sleeper polls the channel for a doorbell byte.</summary>
    public const int SleepsOnDoorbell = 1;
    /// <summary>A flag's value: the sleeper waits in FUTEX_WAIT on the flag word.</summary>
    public const int SleepsOnFutex = 2;

    private readonly byte* _header;
    private readonly byte* _data;
    private readonly int _capacity;
    private readonly ulong _mask;

    // Producer-role state: our head (written, maybe unpublished), what we last published, the last tail we accepted.
    private ulong _head;
    private ulong _publishedHead;
    private ulong _lastTail;

    // Consumer-role state: our tail, and the last head we accepted.
    private ulong _tail;
    private ulong _lastHead;

    /// <param name="region">The ring's region (<see cref="RegionSize"/> bytes), already initialised by
    /// whoever created it (<see cref="Initialize"/>); both counters are assumed to start at zero.</param>
    /// <param name="capacity">Data bytes, a power of two ≥ <see cref="MinCapacity"/>; the caller's own,
    /// validated value.</param>
    public SharedRing(byte* region, int capacity)
    {
        if (region == null)
            throw new ArgumentNullException(nameof(region));
        if (!IsValidCapacity(capacity))
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "ring capacity must be a power of two >= 64");
        _header = region;
        _data = region + HeaderSize;
        _capacity = capacity;
        _mask = (ulong)capacity - 1;
    }

    public int Capacity => _capacity;

    /// <summary>This side's private counters (see <see cref="Resume"/>). Taken from our own fields, never
    /// from shared memory, so handing a ring to another process does not make it trust the peer more.</summary>
    public readonly record struct State(ulong Head, ulong PublishedHead, ulong LastTail, ulong Tail, ulong LastHead);

    /// <summary>The private counters, for handing this ring to another process.</summary>
    public State Save() => new(_head, _publishedHead, _lastTail, _tail, _lastHead);

    /// <summary>Continues where <paramref name="state"/> (from <see cref="Save"/> of the same ring in
    /// another process) left off: the counters are private state, so a ring that changes hands mid-stream
    /// must carry them along rather than start from zero.</summary>
    public void Resume(State state)
    {
        // Consistent counters are the invariant every check above relies on; a hand-off cannot break them.
        if (state.PublishedHead > state.Head || state.Head - state.LastTail > (ulong)_capacity
            || state.LastHead < state.Tail || state.LastHead - state.Tail > (ulong)_capacity)
            throw new ArgumentException($"inconsistent ring state {state}", nameof(state));
        (_head, _publishedHead, _lastTail, _tail, _lastHead) = (state.Head, state.PublishedHead, state.LastTail, state.Tail, state.LastHead);
    }

    public static bool IsValidCapacity(int capacity) =>
        capacity >= MinCapacity && (capacity & (capacity - 1)) == 0;

    /// <summary>Bytes of shared memory one ring of <paramref name="capacity"/> occupies.</summary>
    public static long RegionSize(int capacity) => (long)HeaderSize + capacity;

    /// <summary>Zeroes the header; the creator calls it once before the peer maps the region.</summary>
    public static void Initialize(byte* region) => new Span<byte>(region, HeaderSize).Clear();

    private ref ulong SharedHead => ref Unsafe.AsRef<ulong>(_header + HeadOffset);
    private ref ulong SharedTail => ref Unsafe.AsRef<ulong>(_header + TailOffset);
    private ref int ConsumerSleeping => ref Unsafe.AsRef<int>(_header + ConsumerSleepingOffset);
    private ref int ProducerWaiting => ref Unsafe.AsRef<int>(_header + ProducerWaitingOffset);

    // ---------------------------------------------------------------- producer

    /// <summary>Room for <see cref="Write"/> right now (producer role).</summary>
    public int FreeSpace
    {
        get
        {
            ulong tail = Volatile.Read(ref SharedTail);
            ulong used = _head - tail;
            // Tail beyond our head, or moving backwards, can only come from a broken or hostile peer.
            if (used > (ulong)_capacity || used > _head - _lastTail)
                ThrowCorrupt("tail", tail);
            _lastTail = tail;
            return _capacity - (int)used;
        }
    }

    /// <summary>Copies as much of <paramref name="data"/> as fits (wrapping) and returns how much; the
    /// bytes become visible to the consumer at the next <see cref="Publish"/>.</summary>
    public int Write(ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
            return 0;
        int count = Math.Min(data.Length, FreeSpace);
        if (count == 0)
            return 0;
        int start = (int)(_head & _mask);
        int first = Math.Min(count, _capacity - start);
        data[..first].CopyTo(new Span<byte>(_data + start, first));
        if (count > first)
            data[first..count].CopyTo(new Span<byte>(_data, count - first));
        _head += (ulong)count;
        return count;
    }

    /// <summary>Makes everything written so far visible. Returns true when the consumer said it is going
    /// to sleep, in which case the caller must ring its doorbell (the flag is consumed here, so a burst of
    /// publishes costs one doorbell).</summary>
    public bool Publish() => PublishAndTakeSleeper() != 0;

    /// <summary><see cref="Publish"/>, returning the consumer's sleeping flag as it was (0: awake;
    /// <see cref="SleepsOnFutex"/>: wake it with a futex; anything else: a doorbell byte).</summary>
    public int PublishAndTakeSleeper()
    {
        if (_head == _publishedHead)
            return 0;
        _publishedHead = _head;
        // Exchange = release store + full fence: the flag load below cannot pass the head store.
        Interlocked.Exchange(ref SharedHead, _head);
        return TakeFlag(ref ConsumerSleeping);
    }

    /// <summary>Producer announces it is about to block for room (full fence). Re-check
    /// <see cref="FreeSpace"/> afterwards, then block only if it is still zero.</summary>
    public void BeginProducerWait(int how = SleepsOnDoorbell) => Interlocked.Exchange(ref ProducerWaiting, how);

    public void EndProducerWait() => Volatile.Write(ref ProducerWaiting, 0);

    // ---------------------------------------------------------------- consumer

    /// <summary>Published bytes not yet read (consumer role).</summary>
    public int Available
    {
        get
        {
            ulong head = Volatile.Read(ref SharedHead);
            ulong available = head - _tail;
            // More than a ring's worth, or a head that went backwards, can only come from a broken or hostile peer.
            if (available > (ulong)_capacity || available < _lastHead - _tail)
                ThrowCorrupt("head", head);
            _lastHead = head;
            return (int)available;
        }
    }

    /// <summary>Copies up to <paramref name="destination"/>.Length available bytes, releases their room
    /// to the producer and returns how many were copied.</summary>
    public int Read(Span<byte> destination)
    {
        if (destination.IsEmpty)
            return 0;
        // Reuse the head seen last time if it already covers the request: saves a shared-line load.
        int known = (int)(_lastHead - _tail);
        int count = Math.Min(destination.Length, known >= destination.Length ? known : Available);
        if (count == 0)
            return 0;
        int start = (int)(_tail & _mask);
        int first = Math.Min(count, _capacity - start);
        new ReadOnlySpan<byte>(_data + start, first).CopyTo(destination);
        if (count > first)
            new ReadOnlySpan<byte>(_data, count - first).CopyTo(destination[first..]);
        _tail += (ulong)count;
        // Full fence, so the caller's TakeProducerWaiting cannot read the flag before the tail is out.
        Interlocked.Exchange(ref SharedTail, _tail);
        return count;
    }

    /// <summary>After a <see cref="Read"/>: true when the producer said it waits for room, in which case
    /// the caller must ring its doorbell.</summary>
    public bool TakeProducerWaiting() => TakeFlag(ref ProducerWaiting) != 0;

    /// <summary><see cref="TakeProducerWaiting"/>, returning the flag as it was (see <see cref="PublishAndTakeSleeper"/>).</summary>
    public int TakeProducerWaiter() => TakeFlag(ref ProducerWaiting);

    /// <summary>Consumer announces it is about to block for data (full fence). Re-check
    /// <see cref="Available"/> afterwards, then block only if it is still short.</summary>
    public void BeginConsumerSleep(int how = SleepsOnDoorbell) => Interlocked.Exchange(ref ConsumerSleeping, how);

    public void EndConsumerSleep() => Volatile.Write(ref ConsumerSleeping, 0);

    // ---------------------------------------------------------------- futex wake-ups

    /// <summary>The words a futex sleeper waits on and its waker wakes.</summary>
    public int* ConsumerSleepingWord => (int*)(_header + ConsumerSleepingOffset);
    public int* ProducerWaitingWord => (int*)(_header + ProducerWaitingOffset);

    /// <summary>This side, as the ring's producer, wakes a consumer that sleeps on a futex.</summary>
    public void AnnounceProducerFutex() => Volatile.Write(ref Unsafe.AsRef<int>(_header + ProducerFutexOffset), 1);

    /// <summary>This side, as the ring's consumer, wakes a producer that waits on a futex.</summary>
    public void AnnounceConsumerFutex() => Volatile.Write(ref Unsafe.AsRef<int>(_header + ConsumerFutexOffset), 1);

    /// <summary>Consumer role: the producer said it wakes futex sleepers.</summary>
    public bool ProducerWakesFutex => Volatile.Read(ref Unsafe.AsRef<int>(_header + ProducerFutexOffset)) == 1;

    /// <summary>Producer role: the consumer said it wakes futex waiters.</summary>
    public bool ConsumerWakesFutex => Volatile.Read(ref Unsafe.AsRef<int>(_header + ConsumerFutexOffset)) == 1;

    /// <summary>Clears both flags (for waking this process's own sleepers at shutdown).</summary>
    public void ClearFlags()
    {
        Interlocked.Exchange(ref ConsumerSleeping, 0);
        Interlocked.Exchange(ref ProducerWaiting, 0);
    }

    // ---------------------------------------------------------------- helpers

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int TakeFlag(ref int flag) =>
        Volatile.Read(ref flag) == 0 ? 0 : Interlocked.Exchange(ref flag, 0);

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowCorrupt(string counter, ulong value) =>
        throw new TransportClosedException(
            $"corrupt ring: peer's {counter} counter is {value} (our head {_head}, tail {_tail}, capacity {_capacity})");
}
