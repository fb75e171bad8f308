using System.Runtime.InteropServices;
using GuestIcd.Protocol.Codec;

namespace GuestIcd.Icd;

/// <summary>What a dispatchable handle points to. The loader overwrites the first word with its dispatch
/// table, so it must start as ICD_LOADER_MAGIC. The object knows its connection, its parent (the object it
/// was created from or found through) and, for families that keep guest-side state, that state: a device's
/// state is reached from the handle itself, never from a process-wide table.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct DispatchableObject
{
    public const nint LoaderMagic = 0x01CDC0DE;
    public nint LoaderData;
    public ulong Id;
    public int Connection;
    public int ObjectType;
    /// <summary>The id of the dispatchable object this one belongs to (physical device → instance, device →
    /// physical device, queue and command buffer → device); 0 when unknown. An id, not a pointer, so that a
    /// parent freed first can never be read through its child.</summary>
    public ulong ParentId;
    /// <summary>A GCHandle to the family's managed state (<see cref="GuestDevice"/>, <see cref="GuestPhysicalDevice"/>); 0 if none.</summary>
    public nint State;
}

/// <summary>The guest's side of handle translation for one connection: ids are chosen here, per
/// connection, never reused. Non-dispatchable handles are their ids (so two connections hand out the same
/// values, and nothing may key guest state by them outside their connection or device); dispatchable ones
/// are native objects that this map owns and frees.</summary>
internal sealed unsafe class GuestHandleMap(int connection) : IHandleMap
{
    // VkObjectType values of the five dispatchable handle types.
    public const int Instance = 1, PhysicalDevice = 2, Device = 3, Queue = 4, CommandBuffer = 6;
    public static bool IsDispatchable(int t) => t is Instance or PhysicalDevice or Device or Queue or CommandBuffer;

    /// <summary>The id of the dispatchable handle of the command this thread is running (its first parameter):
    /// what a dispatchable object created or found by that command belongs to. Set by <see cref="Generic.Call"/>
    /// for the length of the call.</summary>
    [ThreadStatic] static ulong t_parent;

    public static ulong SwapParent(ulong id)
    {
        var was = t_parent;
        t_parent = id;
        return was;
    }

    readonly Dictionary<ulong, nint> _dispatchable = new();
    ulong _next;

    /// <summary>Live dispatchable objects of this connection (physical devices and queues included).</summary>
    public int Count { get { lock (_dispatchable) return _dispatchable.Count; } }

    public ulong ToWire(int objectType, ulong handle)
    {
        if (handle == 0 || !IsDispatchable(objectType)) return handle;
        return ((DispatchableObject*)handle)->Id;
    }

    public ulong FromWire(int objectType, ulong id)
    {
        if (id == 0 || !IsDispatchable(objectType)) return id;
        lock (_dispatchable)
        {
            // Objects the host discovered (physical devices, queues) arrive with host-chosen ids.
            if (!_dispatchable.TryGetValue(id, out var p)) _dispatchable[id] = p = (nint)NewObject(objectType, id);
            return (ulong)p;
        }
    }

    public ulong Create(int objectType, out ulong handle)
    {
        ulong id = Interlocked.Increment(ref _next);
        if (!IsDispatchable(objectType)) { handle = id; return id; }
        var p = NewObject(objectType, id);
        lock (_dispatchable) _dispatchable[id] = (nint)p;
        handle = (ulong)p;
        return id;
    }

    public void ExpectCreate(int objectType, ulong id, ulong* slot) => throw new InvalidOperationException("host-only");

    /// <summary>An id for an object whose handle is made elsewhere (command buffers: CommandBuffer.cs).</summary>
    public ulong NewId() => Interlocked.Increment(ref _next);

    DispatchableObject* NewObject(int objectType, ulong id)
    {
        var p = (DispatchableObject*)NativeMemory.AllocZeroed((nuint)sizeof(DispatchableObject));
        p->LoaderData = DispatchableObject.LoaderMagic;
        p->Id = id;
        p->Connection = connection;
        p->ObjectType = objectType;
        p->ParentId = t_parent;
        return p;
    }

    /// <summary>The live dispatchable object with this id, 0 if none (a child's parent, found by its id).</summary>
    public nint HandleOf(ulong id)
    {
        if (id == 0) return 0;
        lock (_dispatchable) return _dispatchable.TryGetValue(id, out var p) ? p : 0;
    }

    /// <summary>The parent of a dispatchable object, if it is still live.</summary>
    public nint ParentOf(nint handle) => handle == 0 ? 0 : HandleOf(((DispatchableObject*)handle)->ParentId);

    /// <summary>Attaches a family's state to a dispatchable object; it lives until the object is freed.</summary>
    public static void Attach(nint handle, object state)
    {
        var o = (DispatchableObject*)handle;
        var h = GCHandle.ToIntPtr(GCHandle.Alloc(state));
        // Two threads may race to attach lazily created state: the first one wins, the loser's is dropped.
        if (Interlocked.CompareExchange(ref o->State, h, 0) != 0) GCHandle.FromIntPtr(h).Free();
    }

    /// <summary>The state attached to a dispatchable object, or null. Allocates nothing.</summary>
    public static T? StateOf<T>(nint handle) where T : class
    {
        nint h = handle == 0 ? 0 : Volatile.Read(ref ((DispatchableObject*)handle)->State);
        return h == 0 ? null : GCHandle.FromIntPtr(h).Target as T;
    }

    static void Free(nint p)
    {
        var o = (DispatchableObject*)p;
        if (o->State != 0)
        {
            var h = GCHandle.FromIntPtr(o->State);
            if (h.Target is IDisposable d) d.Dispose();
            h.Free();
        }
        NativeMemory.Free(o);
    }

    /// <summary>Nothing but instances and their physical devices is live: the application destroyed every device
    /// (and with them their memory, pools and command buffers), as it must before vkDestroyInstance.</summary>
    public bool OnlyInstancesLeft
    {
        get
        {
            lock (_dispatchable)
                foreach (var p in _dispatchable.Values)
                    if (((DispatchableObject*)p)->ObjectType is not (Instance or PhysicalDevice)) return false;
            return true;
        }
    }

    /// <summary>Frees every dispatchable object of this connection (instance destroyed or connection lost).</summary>
    public void FreeAll()
    {
        lock (_dispatchable)
        {
            foreach (var p in _dispatchable.Values) Free(p);
            _dispatchable.Clear();
        }
    }

    /// <summary>Frees one object (a command buffer freed on its own).</summary>
    public void Forget(ulong handle)
    {
        if (handle == 0) return;
        lock (_dispatchable)
        {
            var id = ((DispatchableObject*)handle)->Id;
            if (_dispatchable.Remove(id)) Free((nint)handle);
        }
    }

    /// <summary>Frees an object and everything that belongs to it (a device: its queues and any command buffers
    /// the application left). Returns how many objects under it were still live. Not a hot path.</summary>
    public int ForgetTree(ulong handle)
    {
        if (handle == 0) return 0;
        lock (_dispatchable)
        {
            var root = ((DispatchableObject*)handle)->Id;
            var doomed = new List<ulong>();
            foreach (var (id, p) in _dispatchable)
            {
                // Ownership is at most four deep (instance → physical device → device → queue/command buffer).
                ulong up = ((DispatchableObject*)p)->ParentId;
                for (int hops = 0; up != 0 && up != root && hops < 8; hops++)
                    up = _dispatchable.TryGetValue(up, out var q) ? ((DispatchableObject*)q)->ParentId : 0;
                if (up == root && id != root) doomed.Add(id);
            }
            foreach (var id in doomed) Free(_dispatchable[id]);
            foreach (var id in doomed) _dispatchable.Remove(id);
            if (_dispatchable.Remove(root)) Free((nint)handle);
            return doomed.Count;
        }
    }
}
