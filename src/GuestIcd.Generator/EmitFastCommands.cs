using System.Text;

namespace GuestIcd.Generator;

/// <summary>Per-command encoders for the guest's recording hot path (issue 11): for every vkCmd* whose parameters
/// are scalars, non-dispatchable handles, or arrays of plain values, handles and flat structs, a method that writes
/// the message's bytes straight into the command buffer's writer. They are specialisations of the table-driven
/// encoder, derived from the same descriptor lines, so the bytes are the codec's (a test compares them over random
/// arguments) and the host keeps its one audited decoder.</summary>
sealed partial class EmitCommands
{
    /// <summary>The parameter descriptor lines of every command that travels as itself.</summary>
    readonly Dictionary<string, List<string>> _paramLinesOf = new();

    /// <summary>One descriptor line read back (the generator writes them with <see cref="F"/>).</summary>
    sealed record Fd(string Kind, string Elem, string Len, string Flags, int Off, int Size, int Count, int Type, int LenOff, int LenSize, string Name);

    static Fd Parse(string line)
    {
        var body = line[(line.IndexOf('(') + 1)..line.LastIndexOf(')')];
        var p = body.Split(", ");
        static string After(string s) => s[(s.IndexOf('.') + 1)..];
        return new Fd(After(p[0]), After(p[1]), After(p[2]), p[3], int.Parse(p[4]), int.Parse(p[5]), int.Parse(p[6]), int.Parse(p[7]),
            int.Parse(p[8]), int.Parse(p[9]), p[11].Trim('"'));
    }

    static bool IsDispatchableType(int objectType) => objectType is 1 or 2 or 3 or 4 or 6;

    /// <summary>How one element of a flat struct goes on the wire: copies from its memory, and the pNext terminator.</summary>
    sealed record Op(int MemOff, int WireOff, int Size, bool ChainEnd);

    readonly Dictionary<int, (List<Op> Ops, int Wire, int PNextOff)?> _flat = new();

    /// <summary>A struct whose every member is plain data, a non-dispatchable handle, a nested flat struct, or its own
    /// pNext (which must be NULL at run time for the fast path): its wire form has a fixed size.</summary>
    (List<Op> Ops, int Wire, int PNextOff)? Flat(int type, bool top = true)
    {
        if (top && _flat.TryGetValue(type, out var known)) return known;
        var ops = new List<Op>();
        int wire = 0, pnext = -1;
        bool ok = true;
        foreach (var line in _typeFields.GetValueOrDefault(type) ?? new List<string>())
        {
            var f = Parse(line);
            switch (f.Kind)
            {
                case "Pod": ops.Add(new Op(f.Off, wire, f.Size, false)); wire += f.Size; break;
                case "Handle" when !IsDispatchableType(f.Type):
                    ops.Add(new Op(f.Off, wire, 8 * f.Count, false)); wire += 8 * f.Count; break;
                case "PNext" when top: pnext = f.Off; ops.Add(new Op(0, wire, 4, true)); wire += 4; break;
                case "Struct":
                {
                    var inner = Flat(f.Type, top: false);
                    if (inner is null) { ok = false; break; }
                    for (int i = 0; i < f.Count; i++)
                    {
                        foreach (var op in inner.Value.Ops) ops.Add(op with { MemOff = f.Off + i * f.Size + op.MemOff, WireOff = wire + op.WireOff });
                        wire += inner.Value.Wire;
                    }
                    break;
                }
                default: ok = false; break;
            }
            if (!ok) break;
        }
        // Members that are contiguous in memory and on the wire travel as one copy.
        var merged = new List<Op>();
        foreach (var op in ops)
        {
            if (merged.Count > 0 && merged[^1] is { ChainEnd: false } last && !op.ChainEnd
                && last.MemOff + last.Size == op.MemOff && last.WireOff + last.Size == op.WireOff)
                merged[^1] = last with { Size = last.Size + op.Size };
            else merged.Add(op);
        }
        (List<Op>, int, int)? result = ok ? (merged, wire, pnext) : null;
        if (top) _flat[type] = result;
        return result;
    }

    Dictionary<string, List<Fd>>? _fast;

    /// <summary>The commands that get a fast encoder, with their parameter descriptors.</summary>
    Dictionary<string, List<Fd>> Fast()
    {
        if (_fast is not null) return _fast;
        _fast = new();
        foreach (var (c, _, carry, _, ret, reply, _) in _cmds)
        {
            if (!c.Name.StartsWith("vkCmd") || carry != "Generic" || ret != "Void" || reply) continue;
            // Its secondaries are flushed before it, and its handles are dispatchable: the generic path.
            if (c.Name == "vkCmdExecuteCommands") continue;
            if (!_paramLinesOf.TryGetValue(c.Name, out var lines)) continue;
            var fs = lines.Select(Parse).ToList();
            if (fs.Count != c.Params.Count || fs.Count == 0) continue;
            bool ok = true;
            for (int i = 0; i < fs.Count && ok; i++)
            {
                var f = fs[i];
                ok = f.Kind switch
                {
                    "Handle" => f.Count == 1 && (i == 0 ? f.Type == 6 : !IsDispatchableType(f.Type)),
                    "Pod" => f.Size is 1 or 2 or 4 or 8 && f.Count == 1,
                    "Pointer" => !f.Flags.Contains("Strided") && !f.Flags.Contains("Selected") && !f.Flags.Contains("Out")
                        && !f.Flags.Contains("Create") && !f.Flags.Contains("Destroy")
                        && (f.Len == "None" || f.Len == "Field" && f.LenSize is 4 or 8)
                        && f.Elem switch
                        {
                            "Pod" => true,
                            "Handle" => !IsDispatchableType(f.Type),
                            "Struct" => IsPod(_types[f.Type].Name, 0) || Flat(f.Type) is not null,
                            _ => false,
                        },
                    _ => false,
                };
            }
            if (ok) _fast[c.Name] = fs;
        }
        return _fast;
    }

    string FastCommands()
    {
        var sb = new StringBuilder(CSharpTypes.Header("Fast encoders: every recorded vkCmd* whose parameters have a fixed form, written straight into the writer."));
        sb.AppendLine("using System.Runtime.CompilerServices;").AppendLine("using GuestIcd.Protocol.Codec;").AppendLine("using GuestIcd.Protocol.Wire;").AppendLine("using GuestIcd.Vulkan;").AppendLine();
        sb.AppendLine("namespace GuestIcd.Protocol;").AppendLine();
        sb.AppendLine("/// <summary>Each method appends the command's request exactly as <see cref=\"CommandCodec.EncodeRequest\"/> would, with no");
        sb.AppendLine("/// reply wanted, in one reservation; the command buffer is given as its wire id, other handles are their ids. A method");
        sb.AppendLine("/// returns false, having written nothing, when an argument needs the table-driven codec (a struct with a pNext chain).</summary>");
        sb.AppendLine("public static unsafe class FastCommands").AppendLine("{");
        var fast = Fast();
        foreach (var (c, _, _, _, _, _, _) in _cmds)
        {
            if (!fast.TryGetValue(c.Name, out var fs)) continue;
            EmitFast(sb, c, fs);
        }
        // The generic entry: the same encoders from an argument block (tests compare them with the codec).
        sb.AppendLine("    /// <summary>Whether <paramref name=\"command\"/> has a fast encoder.</summary>");
        sb.AppendLine("    public static bool Covers(int command) => command switch").AppendLine("    {");
        foreach (var (c, _, _, _, _, _, _) in _cmds) if (fast.ContainsKey(c.Name)) sb.AppendLine($"        Tables.{c.Name} => true,");
        sb.AppendLine("        _ => false,").AppendLine("    };").AppendLine();
        sb.AppendLine("    /// <summary>The fast encoder of <paramref name=\"command\"/> on an argument block of 8-byte slots; false when it has none");
        sb.AppendLine("    /// or declines these arguments (nothing written then).</summary>");
        sb.AppendLine("    public static bool Encode(int command, ulong* a, WireWriter w, IHandleMap m)").AppendLine("    {");
        sb.AppendLine("        switch (command)").AppendLine("        {");
        foreach (var (c, _, _, _, _, _, _) in _cmds)
        {
            if (!fast.TryGetValue(c.Name, out var fs)) continue;
            var args = c.Params.Select((p, i) => i == 0 ? $"m.ToWire({fs[0].Type}, a[0])" : FromSlot(p, $"a[{i}]"));
            sb.AppendLine($"            case Tables.{c.Name}: return {c.Name}(w, {string.Join(", ", args)});");
        }
        sb.AppendLine("            default: return false;").AppendLine("        }").AppendLine("    }").AppendLine("}");
        return sb.ToString();
    }

    void EmitFast(StringBuilder sb, CommandDef c, List<Fd> fs)
    {
        string N(int i) => CSharpTypes.Id(c.Params[i].Name);
        string Count(Fd f) => f.Len == "None" ? "1UL" : $"(ulong){CSharpTypes.Id(c.Params[f.LenOff / 8].Name)}";
        var sig = string.Join(", ", c.Params.Select((p, i) => i == 0 ? $"ulong {N(0)}" : $"{ParamType(p)} {N(i)}"));
        sb.AppendLine("    [MethodImpl(MethodImplOptions.AggressiveInlining)]");
        sb.AppendLine($"    public static bool {c.Name}(WireWriter _w, {sig})").AppendLine("    {");
        int fixedBytes = 0;
        var variable = new List<string>();
        for (int i = 0; i < fs.Count; i++)
        {
            var f = fs[i];
            if (f.Kind == "Handle") fixedBytes += 8;
            else if (f.Kind == "Pod") fixedBytes += f.Size;
            else
            {
                fixedBytes += 4;
                int elem = ElemWire(f);
                // The codec's own checked conversions: a count that cannot travel fails the same way.
                if (f.Len != "None") sb.AppendLine($"        ulong _n{i} = {N(i)} == null ? 0 : {Count(f)};");
                else sb.AppendLine($"        ulong _n{i} = {N(i)} == null ? 0UL : 1UL;");
                if (f.Len != "None" && f.LenSize == 8) sb.AppendLine($"        _ = checked((uint)_n{i});");
                variable.Add($"checked((int)(_n{i} * {elem}UL))");
                if (f.Elem == "Struct" && !IsPod(_types[f.Type].Name, 0))
                {
                    var flat = Flat(f.Type)!.Value;
                    int elemSize = f.Size;
                    sb.AppendLine($"        for (ulong _i = 0; _i < _n{i}; _i++) if (*(void**)((byte*){N(i)} + _i * {elemSize} + {flat.PNextOff}) != null) return false;");
                }
            }
        }
        var sizeExpr = string.Join(" + ", new[] { fixedBytes.ToString() }.Concat(variable));
        sb.AppendLine($"        int _size = {(variable.Count > 0 ? $"checked({sizeExpr})" : sizeExpr)};");
        sb.AppendLine("        int _padded = (MessageHeader.Size + _size + 7) & ~7;");
        sb.AppendLine("        fixed (byte* _d = &_w.ReserveFirst(_padded))").AppendLine("        {");
        sb.AppendLine("            // The padding first: the message's bytes overwrite what of it they cover.");
        sb.AppendLine("            Unsafe.WriteUnaligned(_d + _padded - 8, 0UL);");
        sb.AppendLine($"            Unsafe.WriteUnaligned(_d, 0x{Fnv1a(c.Name):X8}UL); // id, flags None");
        sb.AppendLine("            Unsafe.WriteUnaligned(_d + 8, (uint)_size);");
        sb.AppendLine("            byte* _o = _d + MessageHeader.Size;");
        for (int i = 0; i < fs.Count; i++)
        {
            var f = fs[i];
            var p = c.Params[i];
            if (f.Kind == "Handle")
            {
                sb.AppendLine(i == 0 ? $"            Unsafe.WriteUnaligned(_o, {N(i)}); _o += 8;" : $"            Unsafe.WriteUnaligned(_o, {N(i)}.Handle); _o += 8;");
                continue;
            }
            if (f.Kind == "Pod")
            {
                sb.AppendLine($"            Unsafe.WriteUnaligned(_o, {N(i)}); _o += {f.Size};");
                continue;
            }
            string q = $"(byte*){N(i)}";
            sb.AppendLine($"            if ({N(i)} == null) {{ Unsafe.WriteUnaligned(_o, StructCodec.Null); _o += 4; }}");
            sb.AppendLine("            else").AppendLine("            {");
            sb.AppendLine($"                Unsafe.WriteUnaligned(_o, (uint)_n{i}); _o += 4;");
            if (f.Elem == "Struct" && !IsPod(_types[f.Type].Name, 0))
            {
                var flat = Flat(f.Type)!.Value;
                sb.AppendLine($"                for (ulong _i = 0; _i < _n{i}; _i++, _o += {flat.Wire})").AppendLine("                {");
                sb.AppendLine($"                    byte* _e = {q} + _i * {f.Size};");
                foreach (var op in flat.Ops)
                {
                    if (op.ChainEnd) sb.AppendLine($"                    Unsafe.WriteUnaligned(_o + {op.WireOff}, 0u);");
                    else sb.AppendLine(op.Size switch
                    {
                        4 => $"                    Unsafe.WriteUnaligned(_o + {op.WireOff}, Unsafe.ReadUnaligned<uint>(_e + {op.MemOff}));",
                        8 => $"                    Unsafe.WriteUnaligned(_o + {op.WireOff}, Unsafe.ReadUnaligned<ulong>(_e + {op.MemOff}));",
                        _ => $"                    Unsafe.CopyBlockUnaligned(_o + {op.WireOff}, _e + {op.MemOff}, {op.Size});",
                    });
                }
                sb.AppendLine("                }");
            }
            else
            {
                int elem = ElemWire(f);
                sb.AppendLine(f.Len == "None"
                    ? $"                Unsafe.CopyBlockUnaligned(_o, {q}, {elem}); _o += {elem};"
                    : $"                uint _b{i} = (uint)(_n{i} * {elem}UL); WireWriter.CopyArray(_o, {q}, _b{i}); _o += _b{i};");
            }
            sb.AppendLine("            }");
        }
        sb.AppendLine("        }").AppendLine("        return true;").AppendLine("    }").AppendLine();
    }

    /// <summary>Wire bytes of one element of a pointer parameter the fast path takes.</summary>
    int ElemWire(Fd f) => f.Elem switch
    {
        "Handle" => 8,
        "Struct" when !IsPod(_types[f.Type].Name, 0) => Flat(f.Type)!.Value.Wire,
        _ => f.Size,
    };

    /// <summary>The body of a fast-pathed vkCmd* entry point: the fast encoder into the command buffer's recording when
    /// it records guest-side and the encoder takes the arguments, else the generic path (<c>NAME_Generic</c>).</summary>
    bool FastEntry(StringBuilder sb, CommandDef c)
    {
        if (!Fast().ContainsKey(c.Name)) return false;
        var rest = string.Concat(c.Params.Skip(1).Select(p => ", " + CSharpTypes.Id(p.Name)));
        var all = string.Join(", ", c.Params.Select(p => CSharpTypes.Id(p.Name)));
        var cb = CSharpTypes.Id(c.Params[0].Name);
        sb.AppendLine($"            var _rec = CommandBuffers.Recording({cb}.Handle);");
        sb.AppendLine($"            if (_rec is not null && FastCommands.{c.Name}(_rec.Writer, _rec.Id{rest})) CommandBuffers.Recorded(_rec);");
        sb.AppendLine($"            else {c.Name}_Generic({all});");
        return true;
    }

    void FastGeneric(StringBuilder sb, CommandDef c)
    {
        if (!Fast().ContainsKey(c.Name)) return;
        sb.AppendLine("    [MethodImpl(MethodImplOptions.NoInlining)]");
        sb.AppendLine($"    static void {c.Name}_Generic({Sig(c)})").AppendLine("    {");
        sb.AppendLine($"        ulong* a = stackalloc ulong[{c.Params.Count}];");
        for (int i = 0; i < c.Params.Count; i++) sb.AppendLine($"        a[{i}] = {ToSlot(c.Params[i])};");
        sb.AppendLine($"        CommandBuffers.Record(Tables.{c.Name}, a);");
        sb.AppendLine("    }").AppendLine();
    }
}
