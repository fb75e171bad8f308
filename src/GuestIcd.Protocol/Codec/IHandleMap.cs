namespace GuestIcd.Protocol.Codec;

/// <summary>Translates handles between one side's memory and wire object ids (u64, 0 = VK_NULL_HANDLE).
/// The guest maps its own handles to the ids it chose; the host maps ids to real driver handles through
/// the session's object table, rejecting unknown, foreign or wrong-type ids.</summary>
public unsafe interface IHandleMap
{
    /// <summary>A handle from local memory to its wire id.</summary>
    ulong ToWire(int objectType, ulong handle);

    /// <summary>A wire id to a handle for local memory.</summary>
    ulong FromWire(int objectType, ulong id);

    /// <summary>Guest: a new object of a create/allocate command; returns its id and the handle the application gets.</summary>
    ulong Create(int objectType, out ulong handle);

    /// <summary>Host: the request names a new id; the driver will write the handle into <paramref name="slot"/>.</summary>
    void ExpectCreate(int objectType, ulong id, ulong* slot);
}
