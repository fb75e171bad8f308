namespace GuestIcd.Protocol.Wire;

/// <summary>The framing of <see cref="PrivateCommands.RecordedCommands"/>: u64 command buffer id, then ordinary
/// messages. The guest records each command buffer's messages into that command buffer's own writer and copies
/// them behind this header when they go to the host; the host walks them with <see cref="Reader"/>, which checks
/// every nested header against the wrapper before any of it is decoded.</summary>
public static class RecordedCommands
{
    /// <summary>Wrapper header plus the command buffer id: what one chunk costs beyond its messages.</summary>
    public const int Overhead = MessageHeader.Size + 8;

    /// <summary>Appends one chunk: the recorded messages of <paramref name="commandBuffer"/> (wire id), as written.</summary>
    public static void Append(WireWriter w, ulong commandBuffer, ReadOnlySpan<byte> recorded)
    {
        int at = w.BeginMessage(PrivateCommands.RecordedCommands, MessageFlags.None);
        w.U64(commandBuffer);
        w.Bytes(recorded);
        w.EndMessage(at);
    }

    /// <summary>Walks the nested messages of one chunk. A nested message must be whole inside the chunk, padded
    /// like any message, want no reply, and carry a registry command id: a private or nesting message inside a
    /// chunk is a protocol error, so one level of nesting is all a guest can build.</summary>
    public ref struct Reader
    {
        readonly ReadOnlySpan<byte> _data;
        int _pos;

        /// <summary>The command buffer (wire id) every nested message must name as its first parameter.</summary>
        public readonly ulong CommandBuffer;

        public Reader(ReadOnlySpan<byte> payload)
        {
            var r = new WireReader(payload);
            CommandBuffer = r.U64();
            if (CommandBuffer == 0) throw new ProtocolException("recorded commands for VK_NULL_HANDLE");
            _data = payload;
            _pos = 8;
        }

        /// <summary>The next nested message; false at the end of the chunk.</summary>
        public bool Next(out MessageHeader header, out ReadOnlySpan<byte> payload)
        {
            header = default;
            payload = default;
            int left = _data.Length - _pos;
            if (left == 0) return false;
            if (left < MessageHeader.Size) throw new ProtocolException($"recorded commands: {left} stray bytes at the end");
            header = MessageHeader.Read(_data.Slice(_pos, MessageHeader.Size));
            if (header.Command < 0x100) throw new ProtocolException($"recorded commands: private message {header.Command} nested in a command buffer's recording");
            if ((header.Flags & MessageFlags.ReplyWanted) != 0) throw new ProtocolException("recorded commands: a nested message wants a reply");
            if ((uint)header.WireBytesAfterHeader > (uint)(left - MessageHeader.Size))
                throw new ProtocolException($"recorded commands: a nested message of {header.ByteLength} bytes runs past the chunk ({left - MessageHeader.Size} left)");
            payload = _data.Slice(_pos + MessageHeader.Size, (int)header.ByteLength);
            _pos += MessageHeader.Size + header.WireBytesAfterHeader;
            return true;
        }
    }
}
