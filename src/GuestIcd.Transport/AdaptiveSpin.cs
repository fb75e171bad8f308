using System.Diagnostics;

namespace GuestIcd.Transport;

/// <summary>How long a ring reader busy-waits before it sleeps, learned from how long its recent waits took:
/// twice their median, so an answer that comes within the peer's usual latency is caught without the two
/// futex syscalls and the scheduler's wake-up on each side, at most the cap, and only <see cref="FloorMicroseconds"/>
/// when the peer usually takes longer than the cap (a long GPU job, an idle guest), so a wait that will sleep
/// anyway does not burn a core first.</summary>
/// <remarks>Several threads may record at once (a guest's waiters take turns reading); a lost or mixed sample
/// only moves the estimate a little, and the index stays in range whatever the interleaving.</remarks>
internal sealed class AdaptiveSpin
{
    private const int Samples = 16;
    public const int FloorMicroseconds = 5;

    private readonly long[] _recent = new long[Samples];
    private int _next, _count;
    private long _budget;

    /// <summary>The most a reader spins (µs); 0 never spins.</summary>
    public int CapMicroseconds { get; set; }

    public AdaptiveSpin(int capMicroseconds)
    {
        CapMicroseconds = capMicroseconds;
        _budget = long.MaxValue; // until something is learned: the cap
    }

    /// <summary>Stopwatch ticks to spin for the next wait.</summary>
    public long BudgetTicks
    {
        get
        {
            long cap = CapMicroseconds * Stopwatch.Frequency / 1_000_000;
            return Math.Min(_budget, cap);
        }
    }

    /// <summary>A wait that ended with what it waited for after <paramref name="ticks"/>.</summary>
    public void Record(long ticks)
    {
        int i = _next;
        _recent[i & (Samples - 1)] = ticks;
        _next = (i + 1) & (Samples - 1);
        if (_count < Samples)
            _count++;
        if ((i & 3) == 3)
            Recompute();
    }

    private void Recompute()
    {
        int n = Math.Min(_count, Samples);
        Span<long> sorted = stackalloc long[Samples];
        _recent.AsSpan(0, n).CopyTo(sorted);
        sorted = sorted[..n];
        InsertionSort(sorted);
        long median = sorted[n / 2];
        long cap = CapMicroseconds * Stopwatch.Frequency / 1_000_000;
        long floor = FloorMicroseconds * Stopwatch.Frequency / 1_000_000;
        _budget = median > cap ? floor : Math.Max(2 * median, floor);
    }

    /// <summary>Sorts at most <see cref="Samples"/> values in place. Not <c>Span.Sort</c>: under NativeAOT that
    /// allocates 48 bytes a call (measured), so every fourth wait left garbage that, with a gen0 budget of
    /// megabytes, grew the ICD's private memory ~12 bytes per command-buffer cycle until a collection came.</summary>
    private static void InsertionSort(Span<long> values)
    {
        for (int i = 1; i < values.Length; i++)
        {
            long v = values[i];
            int j = i - 1;
            while (j >= 0 && values[j] > v)
            {
                values[j + 1] = values[j];
                j--;
            }
            values[j + 1] = v;
        }
    }
}
