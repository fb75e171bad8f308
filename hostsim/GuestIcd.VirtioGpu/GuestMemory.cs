using GuestIcd.Transport.Native;
namespace GuestIcd.VirtioGpu;

/// <summary>One piece of guest RAM as the frontend describes it (SET_MEM_TABLE): guest-physical
/// addresses [<see cref="GuestPhysical"/>, +<see cref="Size"/>) are the frontend's user addresses
/// [<see cref="FrontendVirtual"/>, +Size) and this process's [<see cref="Host"/>, +Size).</summary>
/// <param name="fd">The memfd backing it (-1 for memory that is not a file), kept so that a resource's
/// guest pages can be mapped again, contiguously (<see cref="GuestMemory.MapContiguous"/>).</param>
/// <param name="fileOffset">Where GuestPhysical lies in <paramref name="fd"/>.</param>
public readonly unsafe struct GuestRegion(ulong guestPhysical, ulong size, ulong frontendVirtual, byte* host, int fd, long fileOffset)
{
    public ulong GuestPhysical { get; } = guestPhysical;
    public ulong Size { get; } = size;
    public ulong FrontendVirtual { get; } = frontendVirtual;
    public byte* Host { get; } = host;
    public int Fd { get; } = fd;
    public long FileOffset { get; } = fileOffset;
}

/// <summary>
/// The guest's RAM as this backend sees it. Every guest-supplied address goes through here and is
/// checked against the regions, so no descriptor, ring or backing entry can reach past guest memory.
/// </summary>
public sealed unsafe class GuestMemory : IDisposable
{
    private readonly GuestRegion[] _regions;
    private readonly (nint Base, nuint Length)[] _mappings;
    private bool _disposed;

    /// <param name="regions">The regions; their Host pointers stay valid until Dispose.</param>
    /// <param name="mappings">What Dispose unmaps (and the regions' fds it closes), when this object owns them.</param>
    public GuestMemory(GuestRegion[] regions, (nint Base, nuint Length)[]? mappings = null)
    {
        _regions = regions;
        _mappings = mappings ?? [];
    }

    public static GuestMemory Empty { get; } = new([]);

    public ReadOnlySpan<GuestRegion> Regions => _regions;

    /// <summary>Total bytes of guest RAM described.</summary>
    public ulong TotalBytes
    {
        get
        {
            ulong total = 0;
            foreach (var r in _regions) total += r.Size;
            return total;
        }
    }

    /// <summary>Host pointer for guest-physical [gpa, gpa+length) when it lies inside one region, else null.</summary>
    public byte* Translate(ulong gpa, ulong length)
    {
        foreach (ref readonly var r in _regions.AsSpan())
        {
            if (gpa >= r.GuestPhysical && gpa - r.GuestPhysical < r.Size && length <= r.Size - (gpa - r.GuestPhysical))
                return r.Host + (gpa - r.GuestPhysical);
        }
        return null;
    }

    /// <summary>Host pointer for the frontend's user address [uva, uva+length) (vring addresses), else null.</summary>
    public byte* TranslateFrontend(ulong uva, ulong length)
    {
        foreach (ref readonly var r in _regions.AsSpan())
        {
            if (uva >= r.FrontendVirtual && uva - r.FrontendVirtual < r.Size && length <= r.Size - (uva - r.FrontendVirtual))
                return r.Host + (uva - r.FrontendVirtual);
        }
        return null;
    }

    /// <summary>True when every byte of [gpa, gpa+length) is guest RAM (it may cross adjacent regions).</summary>
    public bool Covers(ulong gpa, ulong length)
    {
        if (length == 0)
            return Find(gpa, out _);
        if (gpa + length < gpa)
            return false;
        while (length > 0)
        {
            if (!Find(gpa, out var r))
                return false;
            ulong run = Math.Min(length, r.Size - (gpa - r.GuestPhysical));
            gpa += run;
            length -= run;
        }
        return true;
    }

    /// <summary>Copies guest bytes at <paramref name="gpa"/> into <paramref name="destination"/>; false when
    /// any of them is outside guest RAM (nothing is promised about the destination then).</summary>
    public bool Read(ulong gpa, Span<byte> destination)
    {
        while (destination.Length > 0)
        {
            if (!Find(gpa, out var r))
                return false;
            int run = (int)Math.Min((ulong)destination.Length, r.Size - (gpa - r.GuestPhysical));
            new ReadOnlySpan<byte>(r.Host + (gpa - r.GuestPhysical), run).CopyTo(destination);
            destination = destination[run..];
            gpa += (ulong)run;
        }
        return true;
    }

    /// <summary>Copies <paramref name="source"/> to guest RAM at <paramref name="gpa"/>; false when any byte
    /// would land outside it (bytes before that point may have been written).</summary>
    public bool Write(ulong gpa, ReadOnlySpan<byte> source)
    {
        while (source.Length > 0)
        {
            if (!Find(gpa, out var r))
                return false;
            int run = (int)Math.Min((ulong)source.Length, r.Size - (gpa - r.GuestPhysical));
            source[..run].CopyTo(new Span<byte>(r.Host + (gpa - r.GuestPhysical), run));
            source = source[run..];
            gpa += (ulong)run;
        }
        return true;
    }

    private bool Find(ulong gpa, out GuestRegion region)
    {
        foreach (ref readonly var r in _regions.AsSpan())
        {
            if (gpa >= r.GuestPhysical && gpa - r.GuestPhysical < r.Size)
            {
                region = r;
                return true;
            }
        }
        region = default;
        return false;
    }

    /// <summary>
    /// Maps the guest pages listed in <paramref name="runs"/> (guest-physical address and length, each a
    /// whole number of pages) one after another into a fresh range of this process, so that memory the
    /// guest sees as one buffer (scattered pages) is one contiguous, shared view here: writes on either
    /// side are the other's at once. Returns null (and maps nothing) when a run is not page-aligned, not
    /// inside one file-backed region, or the mapping fails.
    /// </summary>
    public ContiguousMapping? MapContiguous(ReadOnlySpan<(ulong Gpa, ulong Length)> runs, out string? error)
    {
        var files = FileRuns(runs, out error);
        return files is null ? null : MapFileRuns(files, out error);
    }

    /// <summary>Where the guest pages of <paramref name="runs"/> lie in the regions' files (what another
    /// process needs to map them too); null with the reason as <see cref="MapContiguous"/>.</summary>
    public FileRun[]? FileRuns(ReadOnlySpan<(ulong Gpa, ulong Length)> runs, out string? error)
    {
        error = null;
        ulong total = 0;
        var files = new List<FileRun>(runs.Length);
        for (int i = 0; i < runs.Length; i++)
        {
            var (gpa, len) = runs[i];
            if (len == 0 || (gpa | len) % PageSize != 0)
            {
                error = $"run 0x{gpa:x}+0x{len:x} is not whole pages";
                return null;
            }
            if (Translate(gpa, len) == null || !Find(gpa, out var r) || r.Fd < 0)
            {
                error = $"run 0x{gpa:x}+0x{len:x} is not inside one file-backed region of guest RAM";
                return null;
            }
            total += len;
            if (total > 1UL << 40)
            {
                error = "the runs add up to more than 1 TiB";
                return null;
            }
            long offset = r.FileOffset + (long)(gpa - r.GuestPhysical);
            // Pages the guest kernel gave one after another are one mapping (and one entry in a hand-off).
            if (files.Count > 0 && files[^1] is var last && last.Fd == r.Fd && last.Offset + last.Length == offset)
                files[^1] = last with { Length = last.Length + (long)len };
            else
                files.Add(new FileRun(r.Fd, offset, (long)len));
        }
        if (total == 0)
        {
            error = "no pages";
            return null;
        }
        return files.ToArray();
    }

    /// <summary>Maps file pieces one after another into a fresh range of this process (see
    /// <see cref="MapContiguous"/>); null (nothing mapped) with the reason when a mapping fails.</summary>
    public static ContiguousMapping? MapFileRuns(ReadOnlySpan<FileRun> runs, out string? error)
    {
        error = null;
        ulong total = 0;
        foreach (var run in runs)
            total += (ulong)run.Length;
        // Reserve the whole range first, then replace it piece by piece: no other mapping can land in between.
        byte* reserve = (byte*)Libc.mmap(null, (nuint)total, Libc.PROT_NONE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS | Libc.MAP_NORESERVE, -1, 0);
        if (reserve == Libc.MAP_FAILED)
        {
            error = $"reserving {total} bytes failed ({Libc.Describe(Libc.Errno)})";
            return null;
        }
        ulong at = 0;
        foreach (var run in runs)
        {
            void* p = Libc.mmap(reserve + at, (nuint)run.Length, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED | Libc.MAP_FIXED, run.Fd, run.Offset);
            if (p == Libc.MAP_FAILED)
            {
                error = $"mapping file run {run.Offset}+{run.Length} failed ({Libc.Describe(Libc.Errno)})";
                Libc.munmap(reserve, (nuint)total);
                return null;
            }
            at += (ulong)run.Length;
        }
        return new ContiguousMapping(reserve, total);
    }

    public const ulong PageSize = 4096;

    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        foreach (var (b, len) in _mappings)
            Libc.munmap((void*)b, len);
        if (_mappings.Length > 0)
        {
            var closed = new HashSet<int>();
            foreach (var r in _regions)
                if (r.Fd >= 0 && closed.Add(r.Fd))
                    Libc.close(r.Fd);
        }
    }
}

/// <summary>Bytes [<see cref="Offset"/>, +<see cref="Length"/>) of the file <see cref="Fd"/> (a guest RAM memfd;
/// in a hand-off, an index into the fds that travel with it).</summary>
public readonly record struct FileRun(int Fd, long Offset, long Length);

/// <summary>Guest pages mapped contiguously in this process (see <see cref="GuestMemory.MapContiguous"/>).</summary>
public sealed unsafe class ContiguousMapping(byte* pointer, ulong length) : IDisposable
{
    private byte* _pointer = pointer;

    public byte* Pointer => _pointer;

    public ulong Length { get; } = length;

    /// <summary>Hands the mapping to a new owner (who unmaps it); this object forgets it.</summary>
    public byte* Release()
    {
        byte* p = _pointer;
        _pointer = null;
        return p;
    }

    public void Dispose()
    {
        if (_pointer != null)
        {
            Libc.munmap(_pointer, (nuint)Length);
            _pointer = null;
        }
    }
}
