using GuestIcd.Protocol.Wire;

namespace GuestIcd.Protocol.Codec;

/// <summary>A command's request and reply, built from its parameter descriptors. Arguments live in an
/// argument block of 8-byte slots (pointers, handles and scalars alike), so one codec serves all commands.</summary>
public static unsafe class CommandCodec
{
    public const int MaxParams = 32;

    public static ReadOnlySpan<FieldDesc> ParamsOf(int command)
    {
        ref readonly var c = ref Tables.Commands[command];
        return Tables.Params.AsSpan(c.Params, c.ParamCount);
    }

    /// <summary>Guest: appends the request message. <paramref name="capacities"/> (MaxParams slots) remembers the
    /// room of every output, so a reply can never write past what the application provided.</summary>
    public static void EncodeRequest(int command, ulong* args, WireWriter w, IHandleMap m, ulong* capacities)
    {
        ref readonly var c = ref Tables.Commands[command];
        int at = w.BeginMessage(c.Id, c.WantsReply ? MessageFlags.ReplyWanted : MessageFlags.None);
        EncodeParams(command, args, w, m, capacities);
        w.EndMessage(at);
    }

    /// <summary>The request payload alone, for messages that wrap a command (<see cref="PrivateCommands"/>).</summary>
    public static void EncodeParams(int command, ulong* args, WireWriter w, IHandleMap m, ulong* capacities)
    {
        var ps = ParamsOf(command);
        for (int i = 0; i < ps.Length; i++)
        {
            ref readonly var f = ref ps[i];
            if (f.IsOut) StructCodec.EncodeShape(f, (byte*)args, w, m, out capacities[i]);
            else StructCodec.EncodeField(f, (byte*)args, w, m);
        }
    }

    /// <summary>Host: rebuilds the argument block in arena memory; every pointer in it points into the arena.</summary>
    public static void DecodeRequest(int command, ReadOnlySpan<byte> payload, ulong* args, ulong* capacities, IHandleMap m, Arena a)
    {
        var r = new WireReader(payload);
        var ps = ParamsOf(command);
        int strided = -1;
        for (int i = 0; i < ps.Length; i++)
        {
            ref readonly var f = ref ps[i];
            if ((f.Flags & FieldFlags.Strided) != 0) strided = i;
            if (f.IsOut)
            {
                StructCodec.DecodeShape(f, (byte*)args, ref r, m, a);
                capacities[i] = *(byte**)((byte*)args + f.Offset) == null ? 0 : (f.Flags & FieldFlags.InOut) != 0 ? 1 : StructCodec.Count(f, (byte*)args);
            }
            // The dispatchable first parameter: the session refuses NULL there with its own message.
            else if (i == 0 && f.Kind == FieldKind.Handle) args[0] = m.FromWire(f.Type, r.U64());
            else StructCodec.DecodeField(f, (byte*)args, ref r, m, a);
        }
        r.ExpectEnd();
        // The elements arrived packed: the guest's stride describes its memory, not the arena's.
        if (strided >= 0) args[ps[strided].LenMember / 8] = (ulong)ps[strided].Size;
    }

    /// <summary>Host: the reply, result first, then every output in parameter order.</summary>
    public static void EncodeReply(int command, ulong result, ulong* args, ulong* capacities, ulong sequence, WireWriter w, IHandleMap m)
    {
        ref readonly var c = ref Tables.Commands[command];
        int at = w.BeginReply(c.Id, sequence);
        WriteResult(c.Return, result, w);
        var ps = ParamsOf(command);
        for (int i = 0; i < ps.Length; i++)
            if (ps[i].IsOut) StructCodec.EncodeOut(ps[i], (byte*)args, capacities[i], w, m);
        w.EndReply(at);
    }

    public static void WriteResult(ReturnKind kind, ulong result, WireWriter w)
    {
        switch (kind)
        {
            case ReturnKind.VkResult: case ReturnKind.U32: w.U32((uint)result); break;
            case ReturnKind.U64: w.U64(result); break;
        }
    }

    /// <summary>Guest: the result, with outputs written into the application's memory.</summary>
    public static ulong DecodeReply(int command, ReadOnlySpan<byte> payload, ulong* args, ulong* capacities, IHandleMap m)
    {
        ref readonly var c = ref Tables.Commands[command];
        var r = new WireReader(payload);
        ulong result = c.Return switch
        {
            ReturnKind.VkResult => (ulong)(uint)r.I32(),
            ReturnKind.U32 => r.U32(),
            ReturnKind.U64 => r.U64(),
            _ => 0,
        };
        var ps = ParamsOf(command);
        for (int i = 0; i < ps.Length; i++)
            if (ps[i].IsOut) StructCodec.DecodeOut(ps[i], (byte*)args, capacities[i], ref r, m);
        return result;
    }
}
