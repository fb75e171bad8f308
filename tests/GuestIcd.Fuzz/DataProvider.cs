using System.Buffers.Binary;

namespace GuestIcd.Fuzz;

/// <summary>Reads a fuzzer's bytes as a sequence of decisions (libFuzzer's FuzzedDataProvider idea): each
/// choice takes as few bytes as it needs, so a mutation changes one decision and leaves the rest of the
/// program in place. Past the end every choice is 0, which is always a valid choice.</summary>
internal sealed class DataProvider(ReadOnlyMemory<byte> data)
{
    int _at;

    public bool Exhausted => _at >= data.Length;
    public int Remaining => Math.Max(0, data.Length - _at);

    public byte Byte() => _at < data.Length ? data.Span[_at++] : (byte)0;

    public bool Coin(int oneIn) => Byte() % oneIn == 0;

    /// <summary>A value in [0, n), from one byte when n fits in one, two otherwise.</summary>
    public int Below(int n)
    {
        if (n <= 1) return 0;
        int v = n <= 256 ? Byte() : Byte() | Byte() << 8;
        return v % n;
    }

    public uint U32()
    {
        Span<byte> b = stackalloc byte[4];
        Fill(b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    public ulong U64()
    {
        Span<byte> b = stackalloc byte[8];
        Fill(b);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    /// <summary>Mostly small values: sizes, counts, offsets and indices that a driver accepts go much deeper
    /// than uniformly random words, which it rejects (or, unguarded, chokes on) at once.</summary>
    public ulong Scalar(int size)
    {
        ulong v = (Byte() % 8) switch
        {
            0 or 1 or 2 => Byte(),
            3 => 1UL << Below(size * 8),
            4 => (ulong)Byte() * 256,
            5 => ~0UL,
            6 => (ulong)Byte() << 12,
            _ => size == 8 ? U64() : U32(),
        };
        return size switch { 1 => v & 0xFF, 2 => v & 0xFFFF, 4 => v & 0xFFFF_FFFF, _ => v };
    }

    public void Fill(Span<byte> dst)
    {
        int n = Math.Min(dst.Length, Remaining);
        data.Span.Slice(_at, n).CopyTo(dst);
        dst[n..].Clear();
        _at += n;
    }

    public ReadOnlyMemory<byte> Rest()
    {
        var r = _at < data.Length ? data[_at..] : ReadOnlyMemory<byte>.Empty;
        _at = data.Length;
        return r;
    }
}
