using System.Runtime.InteropServices;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;

namespace GuestIcd.Tests;

/// <summary>For every struct type the codec carries: a random instance (random field values, random valid
/// pNext chains, null and empty arrays) encoded by the guest, decoded by the host and encoded again gives
/// the same bytes, and the decoder consumes exactly what was sent. Encoding is deterministic, so any field
/// the round trip lost or changed shows up as a difference.</summary>
public unsafe class StructRoundTripTests
{
    sealed class IdentityMap : IHandleMap
    {
        public ulong ToWire(int t, ulong h) => h;
        public ulong FromWire(int t, ulong id) => id;
        public ulong Create(int t, out ulong handle) => handle = 1;
        public void ExpectCreate(int t, ulong id, ulong* slot) { }
    }

    /// <summary>Builds a random, internally consistent instance of a type in native memory.</summary>
    sealed class Builder(Random rnd, Arena arena)
    {
        static readonly int[] ChainTypes = Enumerable.Range(0, Tables.Types.Length)
            .Where(i => Tables.Types[i].SType > 0 && Tables.Types[i].CanIn).ToArray();

        public byte* Build(int type, int depth)
        {
            ref readonly var t = ref Tables.Types[type];
            byte* p = (byte*)arena.Alloc((nuint)Math.Max(t.Size, 1));
            Fill(type, p, depth);
            return p;
        }

        void Fill(int type, byte* p, int depth)
        {
            ref readonly var t = ref Tables.Types[type];
            if (t.Pod) { rnd.NextBytes(new Span<byte>(p, t.Size)); ValidEnums(type, p); return; }
            var fields = Tables.Fields.AsSpan(t.FirstField, t.FieldCount);
            var countsSet = new HashSet<int>();
            foreach (ref readonly var f in fields)
            {
                byte* at = p + f.Offset;
                switch (f.Kind)
                {
                    case FieldKind.Pod:
                        // Counts get their value from the array they measure (below); everything else is noise.
                        if (!countsSet.Contains(f.Offset)) rnd.NextBytes(new Span<byte>(at, f.Size));
                        if (f.Type >= 0) ValidEnum(f, at);
                        break;
                    case FieldKind.PNext:
                        *(byte**)at = depth > 2 ? null : Chain(type, depth);
                        break;
                    case FieldKind.Handle:
                        // The host refuses VK_NULL_HANDLE where the registry requires a handle.
                        for (int i = 0; i < f.Count; i++) ((ulong*)at)[i] = (ulong)rnd.Next((f.Flags & FieldFlags.Optional) != 0 ? 0 : 1, 1000);
                        break;
                    case FieldKind.Struct:
                        for (int i = 0; i < f.Count; i++) Fill(f.Type, at + i * f.Size, depth + 1);
                        break;
                    case FieldKind.String:
                        *(byte**)at = (f.Flags & FieldFlags.Optional) != 0 && rnd.Next(4) == 0 ? null : Str();
                        break;
                    case FieldKind.Pointer or FieldKind.StringArray:
                        FillPointer(f, p, at, depth, countsSet);
                        break;
                }
            }
        }

        void FillPointer(in FieldDesc f, byte* owner, byte* at, int depth, HashSet<int> countsSet)
        {
            uint n;
            switch (f.Len)
            {
                case LenMode.None: n = 1; break;
                case LenMode.SampleMask:
                    if (!countsSet.Contains(f.LenOffset)) { *(uint*)(owner + f.LenOffset) = (uint)rnd.Next(1, 70); countsSet.Add(f.LenOffset); }
                    n = (uint)StructCodec.Count(f, owner);
                    break;
                default:
                    if (!countsSet.Contains(f.LenOffset))
                    {
                        ulong c = (ulong)rnd.Next(0, depth > 1 ? 2 : 4);
                        if (f.LenSize == 8) *(ulong*)(owner + f.LenOffset) = c; else *(uint*)(owner + f.LenOffset) = (uint)c;
                        countsSet.Add(f.LenOffset);
                    }
                    n = (uint)StructCodec.Count(f, owner);
                    break;
            }
            bool mayBeNull = (f.Flags & FieldFlags.Optional) != 0 || f.Len != LenMode.None && n == 0;
            if ((f.Flags & FieldFlags.Selected) != 0 || mayBeNull && rnd.Next(3) == 0) { *(void**)at = null; return; }
            if (f.Kind == FieldKind.StringArray)
            {
                var arr = (byte**)arena.Alloc(Math.Max(n, 1) * 8);
                for (uint i = 0; i < n; i++) arr[i] = Str();
                *(byte***)at = arr;
                return;
            }
            byte* q = (byte*)arena.Alloc((nuint)Math.Max(n * (ulong)f.Size, 1));
            *(byte**)at = q;
            for (uint i = 0; i < n; i++)
            {
                byte* e = q + i * (ulong)f.Size;
                switch (f.Elem)
                {
                    case ElemKind.Pod: rnd.NextBytes(new Span<byte>(e, f.Size)); break;
                    case ElemKind.Handle: *(ulong*)e = (ulong)rnd.Next((f.Flags & FieldFlags.NullElements) != 0 ? 0 : 1, 1000); break;
                    case ElemKind.Struct: Fill(f.Type, e, depth + 1); break;
                }
            }
        }

        /// <summary>The host refuses enum values outside the registry's, so random data gets valid ones there.</summary>
        void ValidEnum(in FieldDesc f, byte* at)
        {
            if (f.Elem == ElemKind.Struct) { ValidEnums(f.Type, at); return; }
            var values = Tables.CheckedEnumValues[f.Type];
            *(int*)at = values[rnd.Next(values.Length)];
        }

        void ValidEnums(int type, byte* p)
        {
            ref readonly var t = ref Tables.Types[type];
            foreach (ref readonly var f in Tables.Fields.AsSpan(t.FirstField, t.FieldCount))
                if (f.Kind == FieldKind.Pod && f.Type >= 0) ValidEnum(f, p + f.Offset);
        }

        /// <summary>Mostly structs that extend the owner (the only ones that travel); now and then any, which the
        /// encoder must drop.</summary>
        byte* Chain(int owner, int depth)
        {
            byte* head = null;
            byte** link = &head;
            var fitting = ChainTypes.Where(t => StructCodec.Extends(t, owner)).ToArray();
            for (int k = rnd.Next(0, 3); k > 0; k--)
            {
                int ti = fitting.Length > 0 && rnd.Next(4) != 0 ? fitting[rnd.Next(fitting.Length)] : ChainTypes[rnd.Next(ChainTypes.Length)];
                byte* node = Build(ti, depth + 1);
                *(int*)node = Tables.Types[ti].SType;
                *(void**)(node + 8) = null;
                *link = node;
                link = (byte**)(node + 8);
            }
            return head;
        }

        byte* Str()
        {
            int len = rnd.Next(0, 12);
            byte* s = (byte*)arena.Alloc((nuint)len + 1, 1);
            for (int i = 0; i < len; i++) s[i] = (byte)rnd.Next('a', 'z' + 1);
            s[len] = 0;
            return s;
        }
    }

    static void RoundTrip(int type, int seed)
    {
        using var guestMem = new Arena(1 << 16, 64u << 20);
        using var hostMem = new Arena(1 << 16, 64u << 20);
        var map = new IdentityMap();
        var b = new Builder(new Random(seed), guestMem);
        byte* original = b.Build(type, 0);
        ref readonly var t = ref Tables.Types[type];
        if (t.SType >= 0) *(int*)original = t.SType;

        using var w1 = new WireWriter();
        StructCodec.EncodeStruct(type, original, w1, map);
        byte* decoded = (byte*)hostMem.Alloc((nuint)Math.Max(t.Size, 1));
        var r = new WireReader(w1.Written);
        try { StructCodec.DecodeStruct(type, decoded, ref r, map, hostMem); }
        catch (ProtocolException e) { Assert.Fail($"{t.Name} (seed {seed}): {e.Message}"); }
        Assert.True(r.Remaining == 0, $"{t.Name} (seed {seed}): {r.Remaining} bytes not consumed");
        using var w2 = new WireWriter();
        StructCodec.EncodeStruct(type, decoded, w2, map);
        if (!w1.Written.SequenceEqual(w2.Written))
            Assert.Fail($"{t.Name} (seed {seed}): the decoded struct encodes differently ({w1.Position} vs {w2.Position} bytes)");
    }

    public static IEnumerable<object[]> CarriedTypes() =>
        Enumerable.Range(0, Tables.Types.Length).Where(i => Tables.Types[i].CanIn).Select(i => new object[] { Tables.Types[i].Name });

    [Fact]
    public void EveryCarriedStructTypeRoundTrips()
    {
        int covered = 0;
        for (int i = 0; i < Tables.Types.Length; i++)
        {
            if (!Tables.Types[i].CanIn) continue;
            for (int seed = 0; seed < 8; seed++) RoundTrip(i, seed * 7919 + i);
            covered++;
        }
        Assert.True(covered > 600, $"only {covered} struct types are carried");
    }

    [FsCheck.Xunit.Property(MaxTest = 2000)]
    public void RandomStructsRoundTrip(FsCheck.PositiveInt pick, int seed)
    {
        var carried = Enumerable.Range(0, Tables.Types.Length).Where(i => Tables.Types[i].CanIn).ToArray();
        RoundTrip(carried[pick.Get % carried.Length], seed);
    }
}
