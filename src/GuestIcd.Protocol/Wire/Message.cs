using System.Buffers.Binary;

namespace GuestIcd.Protocol.Wire;

[Flags]
public enum MessageFlags : uint
{
    None = 0,
    /// <summary>The sender waits for a reply to this message.</summary>
    ReplyWanted = 1,
}

/// <summary>{u32 command, u32 flags, u32 byteLength} then the payload, padded to 8 (DESIGN.md §3).</summary>
public readonly record struct MessageHeader(uint Command, MessageFlags Flags, uint ByteLength)
{
    public const int Size = 12;
    /// <summary>A message larger than this is a protocol error: it bounds what one guest can make the host buffer.</summary>
    public const uint MaxPayload = 64u << 20;

    public static int Padded(int n) => (n + 7) & ~7;

    /// <summary>Bytes that follow the header: the payload plus the padding that ends the whole message on 8.</summary>
    public int WireBytesAfterHeader => Padded(Size + (int)ByteLength) - Size;

    public void Write(Span<byte> dst)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(dst, Command);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[4..], (uint)Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[8..], ByteLength);
    }

    public static MessageHeader Read(ReadOnlySpan<byte> src)
    {
        var h = new MessageHeader(BinaryPrimitives.ReadUInt32LittleEndian(src), (MessageFlags)BinaryPrimitives.ReadUInt32LittleEndian(src[4..]),
            BinaryPrimitives.ReadUInt32LittleEndian(src[8..]));
        if (h.ByteLength > MaxPayload) throw new ProtocolException($"message of {h.ByteLength} bytes exceeds the {MaxPayload}-byte limit");
        return h;
    }
}

/// <summary>{u32 command, u32 byteLength, u64 sequence} then VkResult and out parameters.</summary>
public readonly record struct ReplyHeader(uint Command, uint ByteLength, ulong Sequence)
{
    public const int Size = 16;

    public void Write(Span<byte> dst)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(dst, Command);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[4..], ByteLength);
        BinaryPrimitives.WriteUInt64LittleEndian(dst[8..], Sequence);
    }

    public static ReplyHeader Read(ReadOnlySpan<byte> src)
    {
        var h = new ReplyHeader(BinaryPrimitives.ReadUInt32LittleEndian(src), BinaryPrimitives.ReadUInt32LittleEndian(src[4..]),
            BinaryPrimitives.ReadUInt64LittleEndian(src[8..]));
        if (h.ByteLength > MessageHeader.MaxPayload) throw new ProtocolException($"reply of {h.ByteLength} bytes exceeds the limit");
        return h;
    }
}
