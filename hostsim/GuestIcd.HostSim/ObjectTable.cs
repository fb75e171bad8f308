using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;

namespace GuestIcd.HostSim;

/// <summary>One session's objects: guest id → host handle. The single source of truth for what a guest
/// owns; an unknown, foreign or wrong-type id is a protocol error that ends only this session.</summary>
internal sealed unsafe class ObjectTable : IHandleMap
{
    /// <param name="Parent">The pool a descriptor set or command buffer came from: freed with it.</param>
    public readonly record struct Entry(ulong Host, int Type, ulong Order, ulong Parent = 0);

    /// <summary>Ids of objects the host found (physical devices, queues) carry the top bit; the guest's own never do.</summary>
    public const ulong HostChosen = 1UL << 63;

    readonly Dictionary<ulong, Entry> _byId = new();
    readonly Dictionary<(int, ulong), ulong> _byHost = new();
    readonly List<(int Type, ulong Id, nint Slot)> _pending = new();
    ulong _nextHostId = HostChosen, _order;

    public int Count => _byId.Count;
    /// <summary>Objects the guest created and still owns (what a disconnect must release).</summary>
    public int GuestCount => _byId.Keys.Count(id => (id & HostChosen) == 0);
    public IEnumerable<KeyValuePair<ulong, Entry>> All => _byId;

    public ulong FromWire(int objectType, ulong id)
    {
        if (id == 0) return 0;
        if (!_byId.TryGetValue(id, out var e)) throw new ProtocolException($"unknown object id 0x{id:X} (type {objectType})");
        if (e.Type != objectType) throw new ProtocolException($"object id 0x{id:X} is of type {e.Type}, used as type {objectType}");
        return e.Host;
    }

    public ulong ToWire(int objectType, ulong handle)
    {
        if (handle == 0) return 0;
        if (_byHost.TryGetValue((objectType, handle), out var id)) return id;
        id = ++_nextHostId;
        Add(objectType, id, handle);
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

    /// <summary>Set before an allocate-from-pool command: the pool the new objects belong to.</summary>
    public ulong PendingParent;

    /// <summary>After a successful create/allocate: the driver's handles now belong to the guest's ids.</summary>
    public void CommitCreates()
    {
        foreach (var (type, id, slot) in _pending)
        {
            ulong host = *(ulong*)slot;
            if (host != 0) Add(type, id, host, PendingParent);
        }
        _pending.Clear();
        PendingParent = 0;
    }

    /// <summary>A destroyed or reset pool takes its descriptor sets or command buffers with it.</summary>
    public void RemoveChildren(ulong parentHost)
    {
        if (parentHost == 0) return;
        List<(int, ulong)>? gone = null;
        foreach (var (_, e) in _byId) if (e.Parent == parentHost) (gone ??= new()).Add((e.Type, e.Host));
        if (gone is not null) foreach (var (t, h) in gone) RemoveHost(t, h);
    }

    public void DiscardCreates()
    {
        _pending.Clear();
        PendingParent = 0;
    }

    void Add(int type, ulong id, ulong host, ulong parent = 0)
    {
        _byId[id] = new Entry(host, type, ++_order, parent);
        _byHost[(type, host)] = id;
    }

    public void RemoveHost(int type, ulong host)
    {
        if (host == 0) return;
        if (_byHost.Remove((type, host), out var id)) _byId.Remove(id);
    }
}
