namespace GuestIcd.Protocol.Wire;

/// <summary>Mapped memory over transports that share none (TCP, vsock): each side keeps a copy of what the
/// other has last seen and sends only the pages that differ from it.</summary>
public static unsafe class DirtyPages
{
    public const int PageSize = 4096;

    /// <summary>Most bytes of page data one message carries: stream transports read a message whole, and a
    /// large allocation travels as several.</summary>
    public const ulong MaxBytesPerMessage = 2 << 20;

    /// <summary>Appends {u64 offset, u32 length, bytes} for every run of pages of <paramref name="current"/>
    /// that differs from <paramref name="seen"/>, from <paramref name="from"/> on, until about
    /// <see cref="MaxBytesPerMessage"/> bytes are written; updates <paramref name="seen"/>, returns how many
    /// runs, and sets <paramref name="from"/> to where the next message should continue (size when done).</summary>
    public static uint AppendChanged(byte* current, byte* seen, ulong size, WireWriter w, ref ulong from)
    {
        uint runs = 0;
        ulong page = from, written = 0;
        while (page < size && written < MaxBytesPerMessage)
        {
            ulong len = Math.Min((ulong)PageSize, size - page);
            if (new ReadOnlySpan<byte>(current + page, (int)len).SequenceEqual(new ReadOnlySpan<byte>(seen + page, (int)len))) { page += len; continue; }
            ulong start = page;
            while (page < size && page - start < MaxBytesPerMessage)
            {
                len = Math.Min((ulong)PageSize, size - page);
                if (new ReadOnlySpan<byte>(current + page, (int)len).SequenceEqual(new ReadOnlySpan<byte>(seen + page, (int)len))) break;
                page += len;
            }
            ulong runLen = page - start;
            w.U64(start);
            w.U32(checked((uint)runLen));
            w.Raw(current + start, (int)runLen);
            Buffer.MemoryCopy(current + start, seen + start, runLen, runLen);
            written += runLen;
            runs++;
        }
        from = page;
        return runs;
    }

    /// <summary>Applies <paramref name="runs"/> runs to both copies; a run outside the memory is a protocol error.</summary>
    public static void Apply(ref WireReader r, uint runs, byte* current, byte* seen, ulong size)
    {
        for (uint i = 0; i < runs; i++)
        {
            ulong offset = r.U64();
            uint len = r.U32();
            if (offset > size || len > size - offset) throw new ProtocolException($"memory run [{offset}, +{len}) outside a {size}-byte allocation");
            var bytes = r.Take((int)len);
            bytes.CopyTo(new Span<byte>(current + offset, (int)len));
            bytes.CopyTo(new Span<byte>(seen + offset, (int)len));
        }
    }
}
