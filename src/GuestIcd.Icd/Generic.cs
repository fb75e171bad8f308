using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;

namespace GuestIcd.Icd;

/// <summary>Runs a command through the generated tables on the connection its dispatchable handle belongs to.</summary>
internal static unsafe class Generic
{
    public static ulong Call(int command, ulong* args)
    {
        var obj = (DispatchableObject*)args[0];
        if (obj == null) throw new InvalidOperationException($"{Tables.Commands[command].Name} called with a NULL dispatchable handle");
        var c = Connection.Get(obj->Connection);
        // Dispatchable objects this command creates or finds (devices, queues, command buffers) belong to its handle.
        var outer = GuestHandleMap.SwapParent(obj->Id);
        try { return c.Call(command, args); }
        finally { GuestHandleMap.SwapParent(outer); }
    }

    public static Connection ConnectionOf(nint dispatchable) => Connection.Get(((DispatchableObject*)dispatchable)->Connection);
}
