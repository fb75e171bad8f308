using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace GuestIcd.Protocol.Wire;

/// <summary>Appends little-endian values to a pooled buffer that is reused from message to message,
/// so encoding allocates nothing once the buffer has grown to the largest message seen.</summary>
public sealed class WireWriter : IDisposable
{
    byte[] _buf;
    int _pos;

    public WireWriter(int initial = 4096) => _buf = ArrayPool<byte>.Shared.Rent(initial);

    public int Position => _pos;
    public ReadOnlySpan<byte> Written => _buf.AsSpan(0, _pos);
    public void Reset() => _pos = 0;

    /// <summary>Drops what was written after <paramref name="position"/> (a message that turned out to be empty).</summary>
    public void Truncate(int position) => _pos = Math.Min(_pos, position);

    public Span<byte> Reserve(int n)
    {
        if (_pos + n > _buf.Length) Grow(n);
        var s = _buf.AsSpan(_pos, n);
        _pos += n;
        return s;
    }

    /// <summary><see cref="Reserve"/> for the generated per-command encoders (FastCommands): the first of
    /// <paramref name="n"/> bytes (n &gt; 0), inlined into each vkCmd* entry point. The out-of-line Reserve with
    /// its span was a third of the ICD's own instructions per recorded vkCmdDispatch (callgrind: 33 of ~100).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref byte ReserveFirst(int n)
    {
        int pos = _pos;
        byte[] buf = _buf;
        if ((uint)(pos + n) > (uint)buf.Length) return ref ReserveGrowing(n);
        _pos = pos + n;
        return ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buf), pos);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    ref byte ReserveGrowing(int n) => ref Reserve(n)[0];

    /// <summary>An array parameter's bytes into a generated encoder's message. Most are a few handles or words
    /// (one descriptor set, 16 bytes of push constants), which word moves copy in a few instructions where the
    /// runtime's memmove call cost 27 per command (callgrind); longer arrays still take the memmove.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void CopyArray(byte* dst, byte* src, uint bytes)
    {
        if (bytes > 32)
        {
            Unsafe.CopyBlockUnaligned(dst, src, bytes);
            return;
        }
        uint i = 0;
        for (; i + 8 <= bytes; i += 8) Unsafe.WriteUnaligned(dst + i, Unsafe.ReadUnaligned<ulong>(src + i));
        for (; i < bytes; i++) dst[i] = src[i];
    }

    void Grow(int n)
    {
        var bigger = ArrayPool<byte>.Shared.Rent(Math.Max(_buf.Length * 2, _pos + n));
        _buf.AsSpan(0, _pos).CopyTo(bigger);
        ArrayPool<byte>.Shared.Return(_buf);
        _buf = bigger;
    }

    public void U32(uint v) => Unsafe.WriteUnaligned(ref Reserve(4)[0], v);
    public void I32(int v) => Unsafe.WriteUnaligned(ref Reserve(4)[0], v);
    public void U64(ulong v) => Unsafe.WriteUnaligned(ref Reserve(8)[0], v);
    public void Bytes(ReadOnlySpan<byte> b) { if (b.Length > 0) b.CopyTo(Reserve(b.Length)); }
    public unsafe void Raw(void* p, int n) => Bytes(new ReadOnlySpan<byte>(p, n));
    public void PatchU32(int at, uint v) => Unsafe.WriteUnaligned(ref _buf[at], v);
    public void PatchU64(int at, ulong v) => Unsafe.WriteUnaligned(ref _buf[at], v);

    public void PadTo8()
    {
        int pad = MessageHeader.Padded(_pos) - _pos;
        if (pad > 0) Reserve(pad).Clear();
    }

    /// <summary>Starts a message; returns the position of its header for <see cref="EndMessage"/>.</summary>
    public int BeginMessage(uint command, MessageFlags flags)
    {
        int at = _pos;
        new MessageHeader(command, flags, 0).Write(Reserve(MessageHeader.Size));
        return at;
    }

    public void EndMessage(int headerAt)
    {
        PatchU32(headerAt + 8, (uint)(_pos - headerAt - MessageHeader.Size));
        PadTo8();
    }

    public int BeginReply(uint command, ulong sequence)
    {
        int at = _pos;
        new ReplyHeader(command, 0, sequence).Write(Reserve(ReplyHeader.Size));
        return at;
    }

    public void EndReply(int headerAt)
    {
        PatchU32(headerAt + 4, (uint)(_pos - headerAt - ReplyHeader.Size));
        PadTo8();
    }

    public void Dispose() => ArrayPool<byte>.Shared.Return(_buf);
}
