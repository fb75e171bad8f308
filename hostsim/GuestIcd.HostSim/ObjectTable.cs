using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;

namespace GuestIcd.HostSim;

/// <summary>One session's objects: guest id → host handle, and who owns whom. The single source of truth for
/// what a guest owns; an unknown, foreign or wrong-type id is a protocol error that ends only this session.
/// Ownership is a tree (instance → physical device → device → its objects; pool → its sets or command
/// buffers) so that teardown can destroy children before parents whatever order the guest left them in,
/// and so that forgetting a parent forgets everything under it.</summary>
internal sealed unsafe class ObjectTable : IHandleMap
{
    /// <param name="Order">Creation order (children are always created after what they refer to).</param>
    /// <param name="Owner">The guest id of the object this one was created from (0 for instances).</param>
    public readonly record struct Entry(ulong Host, int Type, ulong Order, ulong Owner = 0);

    /// <summary>Ids of objects the host found (physical devices, queues) carry the top bit; the guest's own never do.</summary>
    public const ulong HostChosen = 1UL << 63;

    readonly Dictionary<ulong, Entry> _byId = new();
    readonly Dictionary<(int, ulong), ulong> _byHost = new();
    readonly Dictionary<ulong, HashSet<ulong>> _children = new();
    readonly List<(int Type, ulong Id, nint Slot)> _pending = new();
    ulong _nextHostId = HostChosen, _order, _maxGuestId;
    int _guestCount;

    public int Count => _byId.Count;
    /// <summary>Objects the guest created and still owns (what a disconnect must release; what the object quota counts).</summary>
    public int GuestCount => _guestCount;
    public IEnumerable<KeyValuePair<ulong, Entry>> All => _byId;

    /// <summary>Most objects the guest may own at once (the session's object quota).</summary>
    public int Limit = int.MaxValue;

    /// <summary>The message being executed would take the guest past <see cref="Limit"/>.</summary>
    public bool PendingOverLimit => _pending.Count > 0 && (long)_guestCount + _pending.Count > Limit;

    /// <summary>Called for every entry the table forgets (destroyed, freed with its pool or parent, or released),
    /// so per-object state kept elsewhere can go with it.</summary>
    public event Action<ulong, Entry>? Forgotten;

    public ulong FromWire(int objectType, ulong id)
    {
        if (id == 0) return 0;
        if (!_byId.TryGetValue(id, out var e))
        {
            // Guest ids are never reused: one at or below the highest seen was an object, now destroyed.
            var message = $"unknown object id 0x{id:X} (type {objectType})";
            throw (id & HostChosen) == 0 && id <= _maxGuestId ? new StaleObjectException(message) : new ProtocolException(message);
        }
        if (e.Type != objectType) throw new ProtocolException($"object id 0x{id:X} is of type {e.Type}, used as type {objectType}");
        return e.Host;
    }

    public ulong ToWire(int objectType, ulong handle)
    {
        if (handle == 0) return 0;
        if (_byHost.TryGetValue((objectType, handle), out var id)) return id;
        id = ++_nextHostId;
        Add(objectType, id, handle, PendingOwner);
        return id;
    }

    public ulong Create(int objectType, out ulong handle) => throw new InvalidOperationException("guest-only");

    public void ExpectCreate(int objectType, ulong id, ulong* slot)
    {
        if (id == 0 || (id & HostChosen) != 0) throw new ProtocolException($"0x{id:X} is not an id a guest may choose");
        if (_byId.ContainsKey(id)) throw new ProtocolException($"object id 0x{id:X} is already in use");
        foreach (var p in _pending) if (p.Id == id) throw new ProtocolException($"object id 0x{id:X} named twice");
        _pending.Add((objectType, id, (nint)slot));
    }

    /// <summary>Set before a command runs: the guest id of the object that owns what it creates or finds (the
    /// pool for an allocate-from-pool command, otherwise its dispatchable handle).</summary>
    public ulong PendingOwner;

    /// <summary>After a successful create/allocate: the driver's handles now belong to the guest's ids.</summary>
    public void CommitCreates()
    {
        foreach (var (type, id, slot) in _pending)
        {
            ulong host = *(ulong*)slot;
            if (host != 0) Add(type, id, host, PendingOwner);
        }
        _pending.Clear();
    }

    public void DiscardCreates() => _pending.Clear();

    public bool TryGet(ulong id, out Entry entry) => _byId.TryGetValue(id, out entry);

    /// <summary>The guest id of a host handle this session knows (0 if none).</summary>
    public ulong IdOf(int type, ulong host) => host != 0 && _byHost.TryGetValue((type, host), out var id) ? id : 0;

    /// <summary>The nearest owner of <paramref name="id"/> (itself included) of type <paramref name="type"/>; 0 if none.</summary>
    public ulong AncestorOfType(ulong id, int type)
    {
        for (int hops = 0; id != 0 && hops < 8 && _byId.TryGetValue(id, out var e); hops++, id = e.Owner)
            if (e.Type == type) return id;
        return 0;
    }

    /// <summary>The ids directly owned by <paramref name="owner"/>.</summary>
    public IReadOnlyCollection<ulong> ChildrenOf(ulong owner) => _children.TryGetValue(owner, out var c) ? c : [];

    /// <summary>A destroyed or reset pool takes its descriptor sets or command buffers with it.</summary>
    public void ForgetChildren(ulong owner)
    {
        if (!_children.TryGetValue(owner, out var c)) return;
        foreach (var child in c.ToArray()) Forget(child);
    }

    void Add(int type, ulong id, ulong host, ulong owner)
    {
        if (owner != 0 && !_byId.ContainsKey(owner)) owner = 0;
        _byId[id] = new Entry(host, type, ++_order, owner);
        _byHost[(type, host)] = id;
        if (owner != 0)
        {
            if (!_children.TryGetValue(owner, out var c)) _children[owner] = c = new();
            c.Add(id);
        }
        if ((id & HostChosen) == 0) { _guestCount++; _maxGuestId = Math.Max(_maxGuestId, id); }
    }

    /// <summary>The driver destroyed this object: forget it and everything it owned.</summary>
    public void RemoveHost(int type, ulong host)
    {
        if (host != 0 && _byHost.TryGetValue((type, host), out var id)) Forget(id);
    }

    /// <summary>Forgets <paramref name="id"/> and, first, everything under it.</summary>
    public void Forget(ulong id)
    {
        if (!_byId.TryGetValue(id, out var e)) return;
        if (_children.Remove(id, out var kids)) foreach (var k in kids) Forget(k);
        _byId.Remove(id);
        // Two ids never share a host handle of one type, but a driver may reuse a freed handle: only drop ours.
        if (_byHost.TryGetValue((e.Type, e.Host), out var mapped) && mapped == id) _byHost.Remove((e.Type, e.Host));
        if (e.Owner != 0 && _children.TryGetValue(e.Owner, out var siblings)) siblings.Remove(id);
        if ((id & HostChosen) == 0) _guestCount--;
        Forgotten?.Invoke(id, e);
    }
}
