using System.Runtime.CompilerServices;

namespace GuestIcd.Protocol.Wire;

/// <summary>Reads a message that the peer wrote. Every read is checked against the message length:
/// a short message is a <see cref="ProtocolException"/>, never a read past its end.</summary>
public ref struct WireReader(ReadOnlySpan<byte> data)
{
    readonly ReadOnlySpan<byte> _data = data;
    int _pos;

    public readonly int Remaining => _data.Length - _pos;
    public readonly int Position => _pos;

    public ReadOnlySpan<byte> Take(int n)
    {
        if ((uint)n > (uint)(_data.Length - _pos)) throw new ProtocolException($"message truncated: needs {n} bytes at offset {_pos}, has {_data.Length - _pos}");
        var s = _data.Slice(_pos, n);
        _pos += n;
        return s;
    }

    public uint U32() => Unsafe.ReadUnaligned<uint>(ref Unsafe.AsRef(in Take(4)[0]));
    public int I32() => (int)U32();
    public ulong U64() => Unsafe.ReadUnaligned<ulong>(ref Unsafe.AsRef(in Take(8)[0]));

    /// <summary>A count that announces <paramref name="elementBytes"/> wire bytes per element must fit in what is left,
    /// so a forged count cannot make the decoder allocate or loop beyond the message.</summary>
    public uint Count(int minElementBytes)
    {
        uint n = U32();
        if (minElementBytes > 0 && (ulong)n * (ulong)minElementBytes > (ulong)Remaining)
            throw new ProtocolException($"array count {n} exceeds the {Remaining} bytes left in the message");
        return n;
    }

    public readonly void ExpectEnd()
    {
        if (_pos != _data.Length) throw new ProtocolException($"{_data.Length - _pos} unexpected trailing bytes");
    }
}
