namespace GuestIcd.Icd;

/// <summary>Hands out page-aligned ranges of the connection's shared heap for HOST_VISIBLE allocations.
/// First fit over a sorted free list, merging neighbours on free. Allocation is not a hot path
/// (applications allocate memory rarely and sub-allocate themselves).</summary>
internal sealed class HeapAllocator
{
    public const ulong Page = 4096;
    readonly List<(ulong Offset, ulong Size)> _free = new();

    public HeapAllocator(ulong size)
    {
        if (size > 0) _free.Add((0, size));
    }

    public static ulong RoundUp(ulong n) => n == 0 ? Page : (n + Page - 1) & ~(Page - 1);

    public bool TryAllocate(ulong size, out ulong offset)
    {
        size = RoundUp(size);
        lock (_free)
        {
            for (int i = 0; i < _free.Count; i++)
            {
                var (o, s) = _free[i];
                if (s < size) continue;
                offset = o;
                if (s == size) _free.RemoveAt(i);
                else _free[i] = (o + size, s - size);
                return true;
            }
        }
        offset = 0;
        return false;
    }

    public void Free(ulong offset, ulong size)
    {
        size = RoundUp(size);
        lock (_free)
        {
            int i = 0;
            while (i < _free.Count && _free[i].Offset < offset) i++;
            _free.Insert(i, (offset, size));
            if (i + 1 < _free.Count && _free[i].Offset + _free[i].Size == _free[i + 1].Offset)
            {
                _free[i] = (_free[i].Offset, _free[i].Size + _free[i + 1].Size);
                _free.RemoveAt(i + 1);
            }
            if (i > 0 && _free[i - 1].Offset + _free[i - 1].Size == _free[i].Offset)
            {
                _free[i - 1] = (_free[i - 1].Offset, _free[i - 1].Size + _free[i].Size);
                _free.RemoveAt(i);
            }
        }
    }

    public ulong FreeBytes { get { lock (_free) return _free.Aggregate(0ul, (a, f) => a + f.Size); } }
}
