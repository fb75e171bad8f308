using System.Runtime.CompilerServices;
using GuestIcd.Protocol.Wire;

namespace GuestIcd.Protocol.Codec;

/// <summary>
/// Encodes and decodes C structs and argument blocks by walking the generated descriptors in
/// <see cref="Tables"/>. One audited, bounds-checked interpreter serves all 790 struct types and every
/// command, in both directions. Requests carry input values plus the shape of outputs (how many
/// elements, which pNext structs); replies carry output contents, written back into the caller's own
/// structs without touching its pNext pointers.
/// </summary>
public static unsafe class StructCodec
{
    /// <summary>Stands for a NULL pointer where a count or length would be.</summary>
    public const uint Null = 0xFFFFFFFF;
    /// <summary>Longest pNext chain accepted; bounds a decoder fed a forged or looping chain.</summary>
    public const int MaxChain = 256;
    const int PNextOffset = 8;

    static ReadOnlySpan<FieldDesc> FieldsOf(int type)
    {
        ref readonly var t = ref Tables.Types[type];
        return Tables.Fields.AsSpan(t.FirstField, t.FieldCount);
    }

    /// <summary>The element count of a pointer field, read from the (already decoded) member or parameter it names.</summary>
    public static ulong Count(in FieldDesc f, byte* p)
    {
        switch (f.Len)
        {
            case LenMode.None: return 1;
            case LenMode.Field: return Read(p + f.LenOffset, f.LenSize);
            case LenMode.SampleMask: return (Read(p + f.LenOffset, 4) + 31) / 32;
            case LenMode.Deref:
            {
                var q = *(byte**)(p + f.LenOffset);
                return q == null ? 0 : Read(q, f.LenSize);
            }
            case LenMode.Member:
            {
                var q = *(byte**)(p + f.LenOffset);
                return q == null ? 0 : Read(q + f.LenMember, f.LenSize);
            }
            default: throw new ProtocolException("bad length mode");
        }
    }

    static ulong Read(byte* p, int size) => size == 8 ? Unsafe.ReadUnaligned<ulong>(p) : Unsafe.ReadUnaligned<uint>(p);

    // ------------------------------------------------------------------ encode values the sender owns

    public static void EncodeStruct(int type, byte* p, WireWriter w, IHandleMap m, bool chained = false)
    {
        ref readonly var t = ref Tables.Types[type];
        if (t.Pod) { w.Raw(p, t.Size); return; }
        foreach (ref readonly var f in FieldsOf(type))
        {
            if (f.Kind == FieldKind.PNext && chained) continue;
            EncodeField(f, p, w, m);
        }
    }

    public static void EncodeField(in FieldDesc f, byte* p, WireWriter w, IHandleMap m)
    {
        byte* at = p + f.Offset;
        switch (f.Kind)
        {
            case FieldKind.Pod: w.Raw(at, f.Size); break;
            case FieldKind.Skip: break;
            case FieldKind.PNext: EncodeChain(*(byte**)at, f.Type, w, m); break;
            case FieldKind.Handle:
                for (int i = 0; i < f.Count; i++) w.U64(m.ToWire(f.Type, ((ulong*)at)[i]));
                break;
            case FieldKind.Struct:
                for (int i = 0; i < f.Count; i++) EncodeStruct(f.Type, at + i * f.Size, w, m);
                break;
            case FieldKind.Pointer:
            {
                byte* q = *(byte**)at;
                if (q == null || (f.Flags & FieldFlags.Selected) != 0 && !Selectors.Applies(f, p)) { w.U32(Null); break; }
                ulong n = Count(f, p);
                w.U32(checked((uint)n));
                if ((f.Flags & FieldFlags.Strided) != 0) EncodeStrided(f, q, n, (uint)Read(p + f.LenMember, 4), w, m);
                else EncodeElements(f, q, n, w, m);
                break;
            }
            case FieldKind.String: EncodeString(*(byte**)at, w); break;
            case FieldKind.StringArray:
            {
                byte** q = *(byte***)at;
                if (q == null) { w.U32(Null); break; }
                ulong n = Count(f, p);
                w.U32(checked((uint)n));
                for (ulong i = 0; i < n; i++) EncodeString(q[i], w);
                break;
            }
        }
    }

    static void EncodeElements(in FieldDesc f, byte* q, ulong n, WireWriter w, IHandleMap m)
    {
        switch (f.Elem)
        {
            case ElemKind.Pod: w.Raw(q, checked((int)(n * (ulong)f.Size))); break;
            case ElemKind.Handle: for (ulong i = 0; i < n; i++) w.U64(m.ToWire(f.Type, ((ulong*)q)[i])); break;
            case ElemKind.Struct:
                if (Tables.Types[f.Type].Pod) w.Raw(q, checked((int)(n * (ulong)f.Size)));
                else for (ulong i = 0; i < n; i++) EncodeStruct(f.Type, q + i * (ulong)f.Size, w, m);
                break;
        }
    }

    /// <summary>Elements <paramref name="stride"/> bytes apart in the caller's memory travel packed.</summary>
    static void EncodeStrided(in FieldDesc f, byte* q, ulong n, uint stride, WireWriter w, IHandleMap m)
    {
        if (stride == (uint)f.Size || n <= 1) { EncodeElements(f, q, n, w, m); return; }
        for (ulong i = 0; i < n; i++) EncodeElements(f, q + i * stride, 1, w, m);
    }

    static void EncodeString(byte* s, WireWriter w)
    {
        if (s == null) { w.U32(Null); return; }
        var span = System.Runtime.InteropServices.MemoryMarshal.CreateReadOnlySpanFromNullTerminated(s);
        w.U32((uint)span.Length);
        w.Bytes(span);
    }

    /// <summary>Writes the structs of a pNext chain that the codec knows, each as {u32 sType, struct}, then 0.
    /// A struct the codec cannot carry is not sent: the ICD never advertises what would need one. Nor is one
    /// that does not extend the chain's owner (an application bug the host would refuse; drivers ignore it).</summary>
    static void EncodeChain(byte* node, int owner, WireWriter w, IHandleMap m)
    {
        for (int hops = 0; node != null && hops < MaxChain; hops++, node = *(byte**)(node + PNextOffset))
        {
            int sType = *(int*)node;
            int ti = Tables.TypeOfSType(sType);
            // sType 0 (VkApplicationInfo) never extends a chain, and on the wire it would end it.
            if (sType == 0 || ti < 0 || !Tables.Types[ti].CanIn || !Extends(ti, owner)) continue;
            w.U32((uint)sType);
            EncodeStruct(ti, node, w, m, chained: true);
        }
        w.U32(0);
    }

    // ------------------------------------------------------------------ decode into arena memory (host)

    public static void DecodeStruct(int type, byte* dst, ref WireReader r, IHandleMap m, Arena a, bool chained = false)
    {
        ref readonly var t = ref Tables.Types[type];
        if (t.Pod)
        {
            r.Take(t.Size).CopyTo(new Span<byte>(dst, t.Size));
            if (s_checksEnums[type]) CheckEnums(type, dst);
            return;
        }
        foreach (ref readonly var f in FieldsOf(type))
        {
            if (f.Kind == FieldKind.PNext && chained) continue;
            DecodeField(f, dst, ref r, m, a);
        }
    }

    public static void DecodeField(in FieldDesc f, byte* p, ref WireReader r, IHandleMap m, Arena a)
    {
        byte* at = p + f.Offset;
        switch (f.Kind)
        {
            case FieldKind.Pod:
                r.Take(f.Size).CopyTo(new Span<byte>(at, f.Size));
                if (f.Type >= 0) CheckPod(f, at);
                break;
            case FieldKind.Skip: *(void**)at = null; break;
            case FieldKind.PNext: *(void**)at = DecodeChain(ref r, m, a, f.Type); break;
            case FieldKind.Handle:
                for (int i = 0; i < f.Count; i++) ((ulong*)at)[i] = DecodeHandle(f, ref r, m, (f.Flags & FieldFlags.Optional) != 0);
                break;
            case FieldKind.Struct:
                for (int i = 0; i < f.Count; i++) DecodeStruct(f.Type, at + i * f.Size, ref r, m, a);
                break;
            case FieldKind.Pointer:
            {
                uint n = r.U32();
                if (n == Null) { RequireOptional(f, p); *(void**)at = null; break; }
                ulong expected = Count(f, p);
                if (n != expected) throw new ProtocolException($"{f.Name}: {n} elements sent but its length says {expected}");
                int minWire = f.Elem switch { ElemKind.Handle => 8, ElemKind.Pod => f.Size, _ => Tables.Types[f.Type].Pod ? f.Size : 1 };
                if ((ulong)n * (ulong)minWire > (ulong)r.Remaining) throw new ProtocolException($"{f.Name}: {n} elements exceed the message");
                byte* q = (byte*)a.Alloc((nuint)n * (nuint)f.Size);
                *(byte**)at = q;
                DecodeElements(f, q, n, ref r, m, a);
                break;
            }
            case FieldKind.String:
                *(byte**)at = DecodeString(ref r, a, f);
                break;
            case FieldKind.StringArray:
            {
                uint n = r.U32();
                if (n == Null) { RequireOptional(f, p); *(void**)at = null; break; }
                if (n != Count(f, p)) throw new ProtocolException($"{f.Name}: {n} strings sent but its length says {Count(f, p)}");
                if ((ulong)n * 4 > (ulong)r.Remaining) throw new ProtocolException($"{f.Name}: {n} strings exceed the message");
                byte** q = (byte**)a.Alloc((nuint)n * 8);
                *(byte***)at = q;
                for (uint i = 0; i < n; i++)
                {
                    q[i] = DecodeString(ref r, a, f);
                    if (q[i] == null) throw new ProtocolException($"{f.Name}[{i}] is NULL");
                }
                break;
            }
        }
    }

    // ------------------------------------------------------------------ enum values (host, requests)

    /// <summary>Types whose plain-data members include enums: their values are checked after a block copy.</summary>
    static readonly bool[] s_checksEnums = BuildChecks();

    static bool[] BuildChecks()
    {
        var checks = new bool[Tables.Types.Length];
        for (int t = 0; t < checks.Length; t++)
            foreach (ref readonly var f in FieldsOf(t))
                if (f.Kind == FieldKind.Pod && f.Type >= 0) { checks[t] = true; break; }
        return checks;
    }

    /// <summary>An out-of-range enum reaching the driver is undefined behaviour in the host process, so the
    /// decoder refuses it (noautovalidity members are not checked: the spec lets them hold anything).</summary>
    static void CheckPod(in FieldDesc f, byte* at)
    {
        if (f.Elem == ElemKind.Struct) { CheckEnums(f.Type, at); return; }
        int value = *(int*)at;
        if (Array.BinarySearch(Tables.CheckedEnumValues[f.Type], value) < 0)
            throw new ProtocolException($"{f.Name}: {value} is not a value of {Tables.CheckedEnumNames[f.Type]}");
    }

    static void CheckEnums(int type, byte* p)
    {
        foreach (ref readonly var f in FieldsOf(type))
            if (f.Kind == FieldKind.Pod && f.Type >= 0) CheckPod(f, p + f.Offset);
    }

    /// <summary>A NULL where the spec requires a pointer would crash the host driver, not just this guest.
    /// An array pointer may be NULL when its count is 0.</summary>
    static void RequireOptional(in FieldDesc f, byte* owner = null)
    {
        if ((f.Flags & FieldFlags.Optional) != 0) return;
        if (owner != null && f.Len != LenMode.None && Count(f, owner) == 0) return;
        throw new ProtocolException($"{f.Name} is NULL but is not optional");
    }

    static void DecodeElements(in FieldDesc f, byte* q, uint n, ref WireReader r, IHandleMap m, Arena a)
    {
        switch (f.Elem)
        {
            case ElemKind.Pod:
            {
                int bytes = checked((int)(n * (ulong)f.Size));
                r.Take(bytes).CopyTo(new Span<byte>(q, bytes));
                break;
            }
            case ElemKind.Handle:
                for (uint i = 0; i < n; i++) ((ulong*)q)[i] = DecodeHandle(f, ref r, m, (f.Flags & FieldFlags.NullElements) != 0);
                break;
            case ElemKind.Struct:
                if (Tables.Types[f.Type].Pod)
                {
                    int bytes = checked((int)(n * (ulong)f.Size));
                    r.Take(bytes).CopyTo(new Span<byte>(q, bytes));
                    if (s_checksEnums[f.Type]) for (uint i = 0; i < n; i++) CheckEnums(f.Type, q + i * (ulong)f.Size);
                }
                else for (uint i = 0; i < n; i++) DecodeStruct(f.Type, q + i * (ulong)f.Size, ref r, m, a);
                break;
        }
    }

    /// <summary>VK_NULL_HANDLE where the registry requires a handle reaches drivers that dereference it
    /// (the implicit "-parameter" valid usage), so it is refused here, before any driver code runs.</summary>
    static ulong DecodeHandle(in FieldDesc f, ref WireReader r, IHandleMap m, bool mayBeNull)
    {
        ulong id = r.U64();
        if (id == 0 && !mayBeNull) throw new ProtocolException($"{f.Name} is VK_NULL_HANDLE where the spec requires a valid handle (its -parameter valid usage)");
        return m.FromWire(f.Type, id);
    }

    static byte* DecodeString(ref WireReader r, Arena a, in FieldDesc f)
    {
        uint len = r.U32();
        if (len == Null) { RequireOptional(f); return null; }
        if (len > (uint)r.Remaining) throw new ProtocolException($"{f.Name}: a {len}-byte string exceeds the message");
        var bytes = r.Take((int)len);
        if (bytes.IndexOf((byte)0) >= 0) throw new ProtocolException($"{f.Name}: string holds a NUL byte");
        byte* s = (byte*)a.Alloc(len + 1, 1);
        bytes.CopyTo(new Span<byte>(s, (int)len));
        s[len] = 0;
        return s;
    }

    /// <summary>Whether the struct <paramref name="type"/> may be chained into <paramref name="owner"/>'s pNext
    /// (registry structextends).</summary>
    public static bool Extends(int type, int owner) => owner >= 0 && Array.BinarySearch(Tables.Extends[type], owner) >= 0;

    static byte* DecodeChain(ref WireReader r, IHandleMap m, Arena a, int owner)
    {
        byte* head = null;
        byte** link = &head;
        for (int hops = 0; ; hops++)
        {
            uint sType = r.U32();
            if (sType == 0) return head;
            if (hops == MaxChain) throw new ProtocolException($"pNext chain longer than {MaxChain}");
            int ti = Tables.TypeOfSType((int)sType);
            if (ti < 0 || !Tables.Types[ti].CanIn) throw new ProtocolException($"pNext holds unknown or uncarried sType {(int)sType}");
            // A driver reads a chained struct by its sType wherever it finds it; one the spec never puts there is
            // one its code for this owner was not written for.
            if (!Extends(ti, owner)) throw new ProtocolException($"pNext of {Tables.Types[owner].Name} holds a {Tables.Types[ti].Name}, which does not extend it (VUID-{Tables.Types[owner].Name}-pNext-pNext)");
            a.NoteChained(ti);
            byte* node = (byte*)a.Alloc((nuint)Tables.Types[ti].Size);
            DecodeStruct(ti, node, ref r, m, a, chained: true);
            if (*(uint*)node != sType) throw new ProtocolException($"pNext struct says sType {*(int*)node}, its tag says {sType}");
            *link = node;
            link = (byte**)(node + PNextOffset);
        }
    }

    // ------------------------------------------------------------------ outputs: shapes (request) and contents (reply)

    /// <summary>Guest: the shape of an output the host will fill (element count, pNext sTypes, new ids).</summary>
    public static void EncodeShape(in FieldDesc f, byte* args, WireWriter w, IHandleMap m, out ulong capacity)
    {
        byte* q = *(byte**)(args + f.Offset);
        capacity = 0;
        if (q == null) { w.U32(Null); return; }
        if ((f.Flags & FieldFlags.InOut) != 0) { w.U32(1); w.Raw(q, f.Size); capacity = 1; return; }
        ulong n = capacity = Count(f, args);
        w.U32(checked((uint)n));
        switch (f.Elem)
        {
            case ElemKind.Struct when Tables.Types[f.Type].SType >= 0:
                for (ulong i = 0; i < n; i++)
                {
                    byte* node = *(byte**)(q + i * (ulong)f.Size + PNextOffset);
                    for (int hops = 0; node != null && hops < MaxChain; hops++, node = *(byte**)(node + PNextOffset))
                    {
                        int ti = Tables.TypeOfSType(*(int*)node);
                        if (ti >= 0 && Tables.Types[ti].CanOut && Extends(ti, f.Type)) w.U32(*(uint*)node);
                    }
                    w.U32(0);
                }
                break;
            case ElemKind.Handle when (f.Flags & FieldFlags.Create) != 0:
                for (ulong i = 0; i < n; i++)
                {
                    w.U64(m.Create(f.Type, out var h));
                    ((ulong*)q)[i] = h;
                }
                break;
        }
    }

    /// <summary>Host: allocates an output of the requested shape and points the argument at it.</summary>
    public static void DecodeShape(in FieldDesc f, byte* args, ref WireReader r, IHandleMap m, Arena a)
    {
        uint n = r.U32();
        byte** slot = (byte**)(args + f.Offset);
        if (n == Null) { RequireOptional(f, args); *slot = null; return; }
        if ((f.Flags & FieldFlags.InOut) != 0)
        {
            if (n != 1) throw new ProtocolException($"{f.Name}: bad in/out marker {n}");
            *slot = (byte*)a.Alloc((nuint)f.Size);
            r.Take(f.Size).CopyTo(new Span<byte>(*slot, f.Size));
            return;
        }
        ulong expected = Count(f, args);
        if (n != expected) throw new ProtocolException($"{f.Name}: room for {n} outputs sent but its length says {expected}");
        byte* q = (byte*)a.AllocOutput((nuint)n * (nuint)f.Size);
        *slot = q;
        switch (f.Elem)
        {
            case ElemKind.Struct when Tables.Types[f.Type].SType >= 0:
                for (uint i = 0; i < n; i++)
                {
                    byte* e = q + i * (ulong)f.Size;
                    *(int*)e = Tables.Types[f.Type].SType;
                    byte** link = (byte**)(e + PNextOffset);
                    for (int hops = 0; ; hops++)
                    {
                        uint st = r.U32();
                        if (st == 0) break;
                        if (hops == MaxChain) throw new ProtocolException($"{f.Name}: output chain longer than {MaxChain}");
                        int ti = Tables.TypeOfSType((int)st);
                        if (ti < 0 || !Tables.Types[ti].CanOut) throw new ProtocolException($"{f.Name}: unknown output sType {(int)st}");
                        if (!Extends(ti, f.Type)) throw new ProtocolException($"{f.Name}: a {Tables.Types[ti].Name} does not extend {Tables.Types[f.Type].Name} (VUID-{Tables.Types[f.Type].Name}-pNext-pNext)");
                        byte* node = (byte*)a.AllocOutput((nuint)Tables.Types[ti].Size);
                        *(uint*)node = st;
                        *link = node;
                        link = (byte**)(node + PNextOffset);
                    }
                }
                break;
            case ElemKind.Handle when (f.Flags & FieldFlags.Create) != 0:
                if ((ulong)n * 8 > (ulong)r.Remaining) throw new ProtocolException($"{f.Name}: {n} ids exceed the message");
                for (uint i = 0; i < n; i++) m.ExpectCreate(f.Type, r.U64(), (ulong*)(q + i * 8));
                break;
        }
    }

    /// <summary>Host: the contents of an output after the call.</summary>
    public static void EncodeOut(in FieldDesc f, byte* args, ulong capacity, WireWriter w, IHandleMap m)
    {
        byte* q = *(byte**)(args + f.Offset);
        if (q == null) return;
        if ((f.Flags & FieldFlags.InOut) != 0) { w.Raw(q, f.Size); return; }
        ulong n = f.Len == LenMode.Deref ? Math.Min(Count(f, args), capacity) : capacity;
        w.U32((uint)n);
        if ((f.Flags & FieldFlags.Create) != 0) return;
        switch (f.Elem)
        {
            case ElemKind.Pod: w.Raw(q, checked((int)(n * (ulong)f.Size))); break;
            case ElemKind.Handle: for (ulong i = 0; i < n; i++) w.U64(m.ToWire(f.Type, ((ulong*)q)[i])); break;
            case ElemKind.Struct:
                for (ulong i = 0; i < n; i++) EncodeOutStruct(f.Type, q + i * (ulong)f.Size, w, m, chained: false);
                break;
        }
    }

    static void EncodeOutStruct(int type, byte* p, WireWriter w, IHandleMap m, bool chained)
    {
        ref readonly var t = ref Tables.Types[type];
        if (t.Pod) { w.Raw(p, t.Size); return; }
        foreach (ref readonly var f in FieldsOf(type))
        {
            if (f.Kind == FieldKind.PNext) { if (!chained) EncodeOutChain(*(byte**)(p + f.Offset), w, m); continue; }
            EncodeField(f, p, w, m);
        }
    }

    static void EncodeOutChain(byte* node, WireWriter w, IHandleMap m)
    {
        for (int hops = 0; node != null && hops < MaxChain; hops++, node = *(byte**)(node + PNextOffset))
        {
            int ti = Tables.TypeOfSType(*(int*)node);
            w.U32(*(uint*)node);
            EncodeOutStruct(ti, node, w, m, chained: true);
        }
        w.U32(0);
    }

    /// <summary>Guest: writes the host's output into the application's memory, keeping its sType/pNext links.</summary>
    public static void DecodeOut(in FieldDesc f, byte* args, ulong capacity, ref WireReader r, IHandleMap m)
    {
        byte* q = *(byte**)(args + f.Offset);
        if (q == null) return;
        if ((f.Flags & FieldFlags.InOut) != 0) { r.Take(f.Size).CopyTo(new Span<byte>(q, f.Size)); return; }
        uint n = r.U32();
        if (n > capacity) throw new ProtocolException($"{f.Name}: host returned {n} elements for room of {capacity}");
        if ((f.Flags & FieldFlags.Create) != 0) return;
        switch (f.Elem)
        {
            case ElemKind.Pod:
            {
                int bytes = checked((int)(n * (ulong)f.Size));
                r.Take(bytes).CopyTo(new Span<byte>(q, bytes));
                break;
            }
            case ElemKind.Handle: for (uint i = 0; i < n; i++) ((ulong*)q)[i] = m.FromWire(f.Type, r.U64()); break;
            case ElemKind.Struct:
                for (uint i = 0; i < n; i++) DecodeOutStruct(f.Type, q + i * (ulong)f.Size, ref r, m, chained: false);
                break;
        }
    }

    static void DecodeOutStruct(int type, byte* dst, ref WireReader r, IHandleMap m, bool chained)
    {
        ref readonly var t = ref Tables.Types[type];
        if (t.Pod) { r.Take(t.Size).CopyTo(new Span<byte>(dst, t.Size)); return; }
        foreach (ref readonly var f in FieldsOf(type))
        {
            byte* at = dst + f.Offset;
            switch (f.Kind)
            {
                case FieldKind.PNext:
                    if (chained) break;
                    byte* node = *(byte**)at;
                    for (uint st = r.U32(); st != 0; st = r.U32())
                    {
                        while (node != null && *(uint*)node != st) node = *(byte**)(node + PNextOffset);
                        if (node == null) throw new ProtocolException($"reply fills sType {(int)st} that the caller did not chain");
                        int ti = Tables.TypeOfSType((int)st);
                        if (ti < 0) throw new ProtocolException($"reply holds unknown sType {(int)st}");
                        DecodeOutStruct(ti, node, ref r, m, chained: true);
                        node = *(byte**)(node + PNextOffset);
                    }
                    break;
                case FieldKind.Pod:
                    r.Take(f.Size).CopyTo(new Span<byte>(at, f.Size));
                    break;
                case FieldKind.Handle:
                    for (int i = 0; i < f.Count; i++) ((ulong*)at)[i] = m.FromWire(f.Type, r.U64());
                    break;
                case FieldKind.Struct:
                    for (int i = 0; i < f.Count; i++) DecodeOutStruct(f.Type, at + i * f.Size, ref r, m, chained: false);
                    break;
                default:
                    throw new ProtocolException($"{f.Name}: output structs carry no pointers");
            }
        }
    }
}
