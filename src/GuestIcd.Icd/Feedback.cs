using GuestIcd.Protocol;
using GuestIcd.Protocol.Wire;
using GuestIcd.Transport;

namespace GuestIcd.Icd;

/// <summary>Fence and timeline-semaphore state of one connection (issue 8 points 1 and 4). The guest keeps
/// what it knows of each fence (a signaled fence stays signaled until reset; an unsignaled one that no submit
/// names cannot become signaled). Where the connection has shared memory and the host speaks protocol 1.1,
/// each fence and timeline semaphore also gets a feedback slot: 8 bytes of the shared heap that the host
/// writes when it observes the fence signal or the counter move (Venus's vn_feedback), so
/// vkGetFenceStatus on a pending fence and vkGetSemaphoreCounterValue read memory instead of asking.
/// A slot may lag behind the driver by the host's polling interval (about a millisecond), never run ahead:
/// the host writes only what the driver told it.</summary>
internal sealed unsafe class SyncObjects(Connection connection)
{
    public enum FenceState : byte { Unsignaled, Pending, Signaled }

    /// <summary>Per fence: what the guest knows, and its slot (heap offset + 1; 0 without one).</summary>
    readonly Dictionary<ulong, (FenceState State, ulong Slot)> _fences = new();
    /// <summary>Timeline semaphores with a slot: id → heap offset + 1.</summary>
    readonly Dictionary<ulong, ulong> _timelines = new();
    /// <summary>Unused slots (heap offsets), and slots of destroyed objects with the sequence number of the
    /// destroy: the host may write such a slot until it has executed that destroy, which is certain once a
    /// reply to a later message arrived.</summary>
    readonly Stack<ulong> _free = new();
    readonly Queue<(ulong Offset, ulong Until)> _retired = new();

    /// <summary>Set after the hello: the host writes slots (shared heap and protocol ≥ 1.1).</summary>
    public bool Enabled;

    public FenceState Known(ulong fence, out ulong* slot)
    {
        lock (_fences)
        {
            if (!_fences.TryGetValue(fence, out var e)) { slot = null; return FenceState.Pending; }
            slot = e.Slot == 0 ? null : (ulong*)(connection.HeapBase + (e.Slot - 1));
            return e.State;
        }
    }

    public void SetFence(ulong fence, FenceState state)
    {
        if (fence == 0) return;
        lock (_fences)
        {
            ulong slot = _fences.TryGetValue(fence, out var e) ? e.Slot : 0;
            _fences[fence] = (state, slot);
            // A reset the guest did not wait for (protocol 1.2) may not have reached the host when the next
            // submit is read from the slot. The spec lets no queue work of a fence being reset be pending, so
            // the host writes this slot again only for that next submit.
            if (state == FenceState.Unsignaled && slot != 0) Volatile.Write(ref *(ulong*)(connection.HeapBase + (slot - 1)), 0UL);
        }
    }

    /// <summary>A new fence: its state, and a slot the host will write from now on.</summary>
    public void Created(ulong fence, bool signaled)
    {
        ulong slot = Enabled ? TakeSlot(signaled ? 1UL : 0UL) : 0;
        lock (_fences) _fences[fence] = (signaled ? FenceState.Signaled : FenceState.Unsignaled, slot);
        if (slot != 0) connection.QueueFeedback(Connection.FeedbackFence, fence, slot - 1);
    }

    public void DestroyedFence(ulong fence)
    {
        ulong slot;
        lock (_fences) { slot = _fences.Remove(fence, out var e) ? e.Slot : 0; }
        if (slot != 0) Retire(slot);
    }

    public void CreatedTimeline(ulong semaphore, ulong initialValue)
    {
        if (!Enabled) return;
        ulong slot = TakeSlot(initialValue);
        if (slot == 0) return;
        lock (_fences) _timelines[semaphore] = slot;
        connection.QueueFeedback(Connection.FeedbackTimeline, semaphore, slot - 1);
    }

    public ulong* TimelineSlot(ulong semaphore)
    {
        lock (_fences) return _timelines.TryGetValue(semaphore, out var s) ? (ulong*)(connection.HeapBase + (s - 1)) : null;
    }

    public void DestroyedSemaphore(ulong semaphore)
    {
        ulong slot;
        lock (_fences) { slot = _timelines.Remove(semaphore, out var s) ? s : 0; }
        if (slot != 0) Retire(slot);
    }

    /// <summary>Called after the destroy was queued: the host stops writing the slot once it executes it.</summary>
    void Retire(ulong slot)
    {
        ulong until = connection.LastQueuedSequence;
        lock (_free) _retired.Enqueue((slot - 1, until));
    }

    /// <summary>A slot holding <paramref name="initial"/> (heap offset + 1), or 0 when the heap is full.</summary>
    ulong TakeSlot(ulong initial)
    {
        ulong offset;
        lock (_free)
        {
            ulong answered = connection.HighestReply;
            while (_retired.Count > 0 && _retired.Peek().Until < answered) _free.Push(_retired.Dequeue().Offset);
            if (_free.Count == 0)
            {
                if (connection.Heap is null || !connection.Heap.TryAllocate(HeapAllocator.Page, out var page)) return 0;
                for (ulong at = HeapAllocator.Page; at > 0; at -= 8) _free.Push(page + at - 8);
            }
            offset = _free.Pop();
        }
        Volatile.Write(ref *(ulong*)(connection.HeapBase + offset), initial);
        return offset + 1;
    }
}

internal sealed unsafe partial class Connection
{
    /// <summary>Protocol 1.1 (<see cref="PrivateCommands.Features"/>): what this guest asks of the host.</summary>
    const uint WantedFeatures = PrivateCommands.FeatureRepliesOutOfOrder | PrivateCommands.FeatureFeedback;

    public const uint FeedbackFence = 7, FeedbackTimeline = 5; // VkObjectType of the object a slot is for

    public SyncObjects Sync => _sync ??= new SyncObjects(this);
    SyncObjects? _sync;

    /// <summary>Highest sequence number any reply carried: the host has executed every message up to it.</summary>
    public ulong HighestReply => Interlocked.Read(ref _highestReply);
    ulong _highestReply;

    void NoteReply(ulong sequence)
    {
        ulong seen;
        while ((seen = Interlocked.Read(ref _highestReply)) < sequence && Interlocked.CompareExchange(ref _highestReply, sequence, seen) != seen) { }
    }

    /// <summary>The sequence number of the last message queued (the one just encoded).</summary>
    public ulong LastQueuedSequence
    {
        get { lock (_send) return _sent + CountMessages(_writer.Written) - 1; }
    }

    /// <summary>After the hello: a host that speaks 1.1 is told what this guest handles (replies in any order,
    /// feedback slots); an older host hears nothing new and answers in order, without slots.</summary>
    void NegotiateFeatures()
    {
        if (Host.Major != 1 || Host.Minor < 1) return;
        uint features = HeapBase != null ? WantedFeatures : PrivateCommands.FeatureRepliesOutOfOrder;
        lock (_send)
        {
            int at = _writer.BeginMessage(PrivateCommands.Features, MessageFlags.None);
            _writer.U32(features);
            _writer.EndMessage(at);
        }
        Sync.Enabled = (features & PrivateCommands.FeatureFeedback) != 0;
    }

    /// <summary>Tells the host where the slot of a fence or timeline semaphore lives (queued, no reply).</summary>
    public void QueueFeedback(uint objectType, ulong id, ulong heapOffset)
    {
        lock (_send)
        {
            int at = _writer.BeginMessage(PrivateCommands.Feedback, MessageFlags.None);
            _writer.U32(objectType);
            _writer.U32(0);
            _writer.U64(id);
            _writer.U64(heapOffset);
            _writer.EndMessage(at);
        }
    }

    /// <summary>Before answering from a slot: messages still queued here (a submit that did not wait for its
    /// reply, a destroy) go out, so a loop that polls a slot never waits on work the host has not seen.</summary>
    public void FlushQueued()
    {
        if (_writer.Position == 0 || _lost) return;
        try { lock (_send) SendQueued(); }
        catch (Exception e) when (e is TransportClosedException or ProtocolException) { throw Lost("a status read", e); }
    }

    /// <summary>A guest that answers from slots must still notice a dead host: every so many answers it
    /// checks the connection (one non-blocking poll).</summary>
    public bool StillConnected()
    {
        if (_lost) return false;
        if ((Interlocked.Increment(ref _slotReads) & 255) != 0) return true;
        if (!_transport.PeerClosed) return true;
        Lost("a status read", new TransportClosedException("hostsim closed the connection"));
        return false;
    }

    int _slotReads;
}
