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
        // vkCmd* from hand-written entry points join their command buffer's recording like the generated ones.
        if (s_recorded[command]) return CommandBuffers.Record(command, args);
        var c = Connection.Get(obj->Connection);
        if (command is Tables.vkQueueSubmit or Tables.vkQueueSubmit2) CommandBuffers.FlushSubmitted(c, command, args);
        // Dispatchable objects this command creates or finds (devices, queues) belong to its handle.
        var outer = GuestHandleMap.SwapParent(obj->Id);
        try { return c.Call(command, args); }
        finally { GuestHandleMap.SwapParent(outer); }
    }

    static readonly bool[] s_recorded = Tables.Commands.Select(c => c.Name.StartsWith("vkCmd", StringComparison.Ordinal)).ToArray();

    public static Connection ConnectionOf(nint dispatchable) => Connection.Get(((DispatchableObject*)dispatchable)->Connection);
}
