using System.Runtime.InteropServices;
using GuestIcd.Protocol.Codec;

namespace GuestIcd.Icd;

/// <summary>What a dispatchable handle points to. The loader overwrites the first word with its dispatch
/// table, so it must start as ICD_LOADER_MAGIC; nothing managed is reachable from it.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct DispatchableObject
{
    public const nint LoaderMagic = 0x01CDC0DE;
    public nint LoaderData;
    public ulong Id;
    public int Connection;
    public int ObjectType;
}

/// <summary>The guest's side of handle translation for one connection: ids are chosen here, per
/// connection, never reused. Non-dispatchable handles are their ids; dispatchable ones are native objects.</summary>
internal sealed unsafe class GuestHandleMap(int connection) : IHandleMap
{
    // VkObjectType values of the five dispatchable handle types.
    public const int Instance = 1, PhysicalDevice = 2, Device = 3, Queue = 4, CommandBuffer = 6;
    public static bool IsDispatchable(int t) => t is Instance or PhysicalDevice or Device or Queue or CommandBuffer;

    readonly Dictionary<ulong, nint> _dispatchable = new();
    ulong _next;

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
        return p;
    }

    /// <summary>Frees every dispatchable object of this connection (instance destroyed or connection lost).</summary>
    public void FreeAll()
    {
        lock (_dispatchable)
        {
            foreach (var p in _dispatchable.Values) NativeMemory.Free((void*)p);
            _dispatchable.Clear();
        }
    }

    public void Forget(ulong handle)
    {
        if (handle == 0) return;
        lock (_dispatchable)
        {
            var id = ((DispatchableObject*)handle)->Id;
            if (_dispatchable.Remove(id)) NativeMemory.Free((void*)handle);
        }
    }
}
