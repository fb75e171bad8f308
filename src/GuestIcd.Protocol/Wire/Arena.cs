using System.Runtime.InteropServices;

namespace GuestIcd.Protocol.Wire;

/// <summary>Native scratch memory for the C structs that decoding rebuilds; reset after every message so
/// steady-state decoding allocates nothing. Its limit bounds what one message can make the host allocate.</summary>
public sealed unsafe class Arena : IDisposable
{
    byte* _base;
    nuint _size, _used, _outputs;
    readonly nuint _limit, _initial;

    public Arena(nuint initial = 1 << 16, nuint limit = 256u << 20)
    {
        _size = _initial = initial;
        _limit = limit;
        _base = (byte*)NativeMemory.AlignedAlloc(_size, 64);
    }

    public nuint Used => _used;

    /// <summary>Most bytes of outputs one message may ask for: outputs are sized by counts the sender chose and
    /// become the reply, so they are bounded apart from (and well below) the decode limit.</summary>
    public nuint OutputLimit { get; set; } = nuint.MaxValue;

    /// <summary>Room for outputs (what the reply will carry), counted against <see cref="OutputLimit"/>.</summary>
    public void* AllocOutput(nuint bytes, nuint align = 8)
    {
        if (bytes > OutputLimit - _outputs)
            throw new ProtocolException($"outputs of more than {OutputLimit} bytes asked for by one message (reply quota)");
        _outputs += bytes;
        return Alloc(bytes, align);
    }

    public void* Alloc(nuint bytes, nuint align = 8)
    {
        nuint start = (_used + align - 1) & ~(align - 1);
        if (start + bytes > _size) return Overflow(bytes);
        _used = start + bytes;
        var p = _base + start;
        NativeMemory.Clear(p, bytes);
        return p;
    }

    // Pointers handed out earlier stay valid, so growth chains a new block instead of moving the old one.
    readonly List<nint> _retired = new();

    void* Overflow(nuint bytes)
    {
        nuint total = _size;
        foreach (var _ in _retired) total += _size;
        if (bytes > _limit || total + bytes > _limit) throw new ProtocolException($"message needs more than the {_limit}-byte decode limit");
        _retired.Add((nint)_base);
        _size = Math.Max(_size * 2, bytes + 64);
        _base = (byte*)NativeMemory.AlignedAlloc(_size, 64);
        _used = 0;
        return Alloc(bytes);
    }

    /// <summary>The distinct struct types (type indexes) the message's pNext chains held: the host's gate checks
    /// that the device has what brings each in. Bounded, so a forged message cannot make it grow.</summary>
    readonly int[] _chained = new int[MaxChainedTypes];
    int _chainedCount;
    public const int MaxChainedTypes = 32;

    public ReadOnlySpan<int> Chained => _chained.AsSpan(0, _chainedCount);

    public void NoteChained(int typeIndex)
    {
        for (int i = 0; i < _chainedCount; i++) if (_chained[i] == typeIndex) return;
        if (_chainedCount == MaxChainedTypes) throw new ProtocolException($"more than {MaxChainedTypes} distinct pNext struct types in one message");
        _chained[_chainedCount++] = typeIndex;
    }

    public void Reset()
    {
        foreach (var p in _retired) NativeMemory.AlignedFree((void*)p);
        _retired.Clear();
        _used = 0;
        _outputs = 0;
        _chainedCount = 0;
        // One large message must not leave the session holding its high-water mark for good.
        if (_size > 16 * _initial)
        {
            NativeMemory.AlignedFree(_base);
            _size = _initial;
            _base = (byte*)NativeMemory.AlignedAlloc(_size, 64);
        }
    }

    public void Dispose()
    {
        Reset();
        NativeMemory.AlignedFree(_base);
        _base = null;
    }
}
