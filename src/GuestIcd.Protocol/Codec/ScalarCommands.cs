using System.Runtime.InteropServices;
using GuestIcd.Protocol.Wire;

namespace GuestIcd.Protocol.Codec;

/// <summary>The guest's fast path for commands whose parameters are all scalars and handles (vkCmdDispatch,
/// vkCmdDraw, vkCmdBindPipeline, vkCmdSet* …): one reservation and straight stores instead of the field-by-field
/// interpreter. The bytes are exactly <see cref="CommandCodec.EncodeRequest"/>'s (a test compares every such
/// command), so the host's one audited decoder is unchanged (DESIGN.md §3).</summary>
public static unsafe class ScalarCommands
{
    /// <summary>Payload bytes of each command that qualifies; -1 for the others.</summary>
    static readonly int[] s_payload = Build();

    static int[] Build()
    {
        var sizes = new int[Tables.Commands.Length];
        for (int c = 0; c < sizes.Length; c++)
        {
            ref readonly var cd = ref Tables.Commands[c];
            int size = 0;
            bool ok = cd.OnWire && !cd.WantsReply;
            foreach (ref readonly var f in CommandCodec.ParamsOf(c))
            {
                if (f.Kind == FieldKind.Handle && f.Count == 1) size += 8;
                else if (f.Kind == FieldKind.Pod && f.Size is 4 or 8 && f.Count == 1) size += f.Size;
                else { ok = false; break; }
            }
            sizes[c] = ok ? size : -1;
        }
        return sizes;
    }

    public static bool Applies(int command) => s_payload[command] >= 0;

    /// <summary>Appends the request of <paramref name="command"/> (which <see cref="Applies"/>) with no reply wanted.</summary>
    public static void Encode(int command, ulong* args, WireWriter w, IHandleMap m)
    {
        int size = s_payload[command];
        int padded = MessageHeader.Padded(MessageHeader.Size + size);
        var ps = CommandCodec.ParamsOf(command);
        fixed (byte* d = &MemoryMarshal.GetReference(w.Reserve(padded)))
        {
            *(uint*)d = Tables.Commands[command].Id;
            *(uint*)(d + 4) = (uint)MessageFlags.None;
            *(uint*)(d + 8) = (uint)size;
            byte* o = d + MessageHeader.Size;
            for (int i = 0; i < ps.Length; i++)
            {
                ref readonly var f = ref ps[i];
                ulong v = args[f.Offset / 8];
                if (f.Kind == FieldKind.Handle) { *(ulong*)o = m.ToWire(f.Type, v); o += 8; }
                else if (f.Size == 8) { *(ulong*)o = v; o += 8; }
                else { *(uint*)o = (uint)v; o += 4; }
            }
            for (byte* end = d + padded; o < end; o++) *o = 0;
        }
    }
}
