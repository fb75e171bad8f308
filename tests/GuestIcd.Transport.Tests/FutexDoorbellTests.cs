using System.Diagnostics;
using GuestIcd.Transport.Native;
using static GuestIcd.Transport.Tests.TestSupport;

namespace GuestIcd.Transport.Tests;

/// <summary>The unix ring's futex doorbells (issue 11 point 3): both ends of a unix connection sleep in FUTEX_WAIT on
/// the ring header's flag instead of poll() on the socket, and still notice a peer that is gone.</summary>
public sealed unsafe class FutexDoorbellTests
{
    // The guest→host ring's header: its consumer (the host) raises this flag before it sleeps.
    private const int ConsumerSleepingOffset = 128;

    [Fact]
    public void BothEndsOfAUnixConnectionAnnounceAndUseFutexes() => WithinTime(10_000, () =>
    {
        using var pair = new Pair(64 * 1024);
        Assert.True(pair.Guest.UsesFutexDoorbells);
        Assert.True(pair.Host.UsesFutexDoorbells);
        pair.Guest.SpinMicroseconds = pair.Host.SpinMicroseconds = 0;
        var got = new byte[8];
        var reader = Start(() => Assert.True(pair.Host.ReadExactly(got, 5000)), "host reader");
        // The host sleeps on the futex: its flag says so (1 would be a doorbell byte on the socket).
        int* flag = (int*)(pair.Guest.Region + ConsumerSleepingOffset);
        var watch = Stopwatch.StartNew();
        while (Volatile.Read(ref *flag) != 2 && watch.ElapsedMilliseconds < 3000)
            Thread.Sleep(1);
        Assert.Equal(2, Volatile.Read(ref *flag));
        pair.Guest.Write(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 });
        pair.Guest.Flush();
        reader.Join(3000); // the futex wake-up woke the host
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 }, got);
        Assert.Equal(0, Volatile.Read(ref *flag));
    });

    /// <summary>A read without a deadline (timeout -1: the host's session loop between messages, the guest's wait
    /// for vkWaitForFences(UINT64_MAX)) sleeps: it once handed the kernel a negative futex timeout, which fails at
    /// once, and spun a core in futex + poll for as long as it waited. Measured as the reading thread's own CPU
    /// time over half a second of waiting (a starved machine only makes it smaller).</summary>
    [Fact]
    public void AReadWithoutADeadlineSleepsInsteadOfSpinning() => WithinTime(10_000, () =>
    {
        using var pair = new Pair(64 * 1024);
        pair.Host.SpinMicroseconds = 0;
        var got = new byte[8];
        int tid = 0;
        var reader = Start(() =>
        {
            Volatile.Write(ref tid, Libc.gettid());
            Assert.True(pair.Host.ReadExactly(got, -1));
        }, "host reader");
        int* flag = (int*)(pair.Guest.Region + ConsumerSleepingOffset);
        var watch = Stopwatch.StartNew();
        while ((Volatile.Read(ref *flag) != 2 || Volatile.Read(ref tid) == 0) && watch.ElapsedMilliseconds < 3000)
            Thread.Sleep(1);
        Assert.Equal(2, Volatile.Read(ref *flag));
        long before = ThreadCpuTicks(tid);
        Thread.Sleep(500);
        long spent = ThreadCpuTicks(tid) - before;
        pair.Guest.Write(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 });
        pair.Guest.Flush();
        reader.Join(3000);
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 }, got);
        // Clock ticks (1/100 s): a sleeping reader uses none; the spinning one used about 50.
        Assert.True(spent <= 5, $"the waiting reader used {spent} clock ticks of CPU in 500 ms");
    });

    /// <summary>utime + stime of one of this process's threads, in clock ticks (/proc/self/task/TID/stat).</summary>
    private static long ThreadCpuTicks(int tid)
    {
        string stat = File.ReadAllText($"/proc/self/task/{tid}/stat");
        string[] f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return long.Parse(f[11]) + long.Parse(f[12]);
    }

    /// <summary>Ping-pong with no spinning: every message is a sleep and a futex wake-up on each side.</summary>
    [Fact]
    public void ThousandsOfSleepingRoundTripsAllArrive() => WithinTime(30_000, () =>
    {
        using var pair = new Pair(4096);
        pair.Guest.SpinMicroseconds = pair.Host.SpinMicroseconds = 0;
        const int rounds = 2000;
        var echo = Start(() =>
        {
            var b = new byte[4];
            for (int i = 0; i < rounds; i++)
            {
                Assert.True(pair.Host.ReadExactly(b, 5000));
                pair.Host.Write(b);
                pair.Host.Flush();
            }
        }, "host echo");
        var m = new byte[4];
        for (int i = 0; i < rounds; i++)
        {
            BitConverter.TryWriteBytes(m, i);
            pair.Guest.Write(m);
            pair.Guest.Flush();
            Assert.True(pair.Guest.ReadExactly(m, 5000), $"round trip {i} timed out");
            Assert.Equal(i, BitConverter.ToInt32(m));
        }
        echo.Join(5000);
    });

    /// <summary>A futex is not woken by the peer's death; the sleeper asks the socket between slices, so it still
    /// ends well within a second or so rather than at its timeout.</summary>
    [Fact]
    public void APeerThatGoesAwayWhileWeSleepOnTheFutexIsNoticedWithinASecond() => WithinTime(10_000, () =>
    {
        using var pair = new Pair();
        pair.Guest.SpinMicroseconds = 0;
        var watch = new Stopwatch();
        var reader = Start(() => Assert.Throws<TransportClosedException>(() => pair.Guest.ReadExactly(new byte[16], 8000)), "guest reader");
        int* flag = (int*)(pair.Host.Region + UnixRingTransport.SharedSize(4096) / 2 + ConsumerSleepingOffset);
        var wait = Stopwatch.StartNew();
        while (Volatile.Read(ref *flag) != 2 && wait.ElapsedMilliseconds < 3000)
            Thread.Sleep(1);
        Assert.Equal(2, Volatile.Read(ref *flag));
        watch.Start();
        pair.Host.Dispose();
        reader.Join(5000);
        Assert.True(watch.ElapsedMilliseconds < 3000, $"noticed after {watch.ElapsedMilliseconds} ms");
    });

    [Fact]
    public void ShutdownWakesOurOwnFutexSleeper() => WithinTime(5000, () =>
    {
        using var pair = new Pair();
        pair.Guest.SpinMicroseconds = 0;
        var reader = Start(() => Assert.Throws<TransportClosedException>(() => pair.Guest.ReadExactly(new byte[16], -1)), "guest reader");
        Thread.Sleep(100);
        var watch = Stopwatch.StartNew();
        pair.Guest.Shutdown();
        reader.Join(3000);
        Assert.True(watch.ElapsedMilliseconds < 1000, $"woke after {watch.ElapsedMilliseconds} ms");
    });
}
