using System.Buffers.Binary;
using System.Diagnostics;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using static GuestIcd.Transport.Tests.TestSupport;

namespace GuestIcd.Transport.Tests;

public sealed unsafe class UnixRingTransportTests
{
    private const int SmallRing = 4096;

    /// <summary>Messages of random sizes (up to three rings' worth) go guest→host through the real
    /// transport with a 4 KiB ring: full-ring blocking, doorbells both ways and reads larger than the ring
    /// all happen, and the host reads exactly what was sent.</summary>
    [Property(MaxTest = 50)]
    public Property MessagesArriveInOrderThroughTheTransport() =>
        Prop.ForAll(
            Gen.Frequency(
                    (3, Gen.Choose(0, 64)),
                    (3, Gen.Choose(0, SmallRing)),
                    (2, Gen.Choose(0, 3 * SmallRing)))
                .ArrayOf()
                .ToArbitrary(),
            sizes =>
            {
                bool ok = true;
                WithinTime(10_000, () =>
                {
                    using var pair = new Pair(SmallRing);
                    int seed = sizes.Length;
                    var writer = Start(() =>
                    {
                        long position = 0;
                        foreach (int size in sizes)
                        {
                            var message = new byte[size];
                            Fill(message, position, seed);
                            position += size;
                            pair.Guest.Write(message);
                            pair.Guest.Flush();
                        }
                    }, "guest writer");

                    long read = 0;
                    foreach (int size in sizes)
                    {
                        var message = new byte[size];
                        if (!pair.Host.ReadExactly(message, 5000))
                        {
                            ok = false;
                            break;
                        }
                        for (int i = 0; i < size; i++)
                            ok &= message[i] == Pattern(read + i, seed);
                        read += size;
                    }
                    writer.Join(5000);
                });
                return ok;
            });

    /// <summary>Request/response both ways over a real socket: each echo waits on the other side.</summary>
    [Fact]
    public void EchoRoundTripsManyMessages() => WithinTime(20_000, () =>
    {
        using var pair = new Pair(64 * 1024);
        var host = Start(() =>
        {
            var header = new byte[4];
            while (true)
            {
                Assert.True(pair.Host.ReadExactly(header, 5000));
                int length = BinaryPrimitives.ReadInt32LittleEndian(header);
                if (length < 0)
                    return;
                var payload = new byte[length];
                Assert.True(pair.Host.ReadExactly(payload, 5000));
                pair.Host.Write(header);
                pair.Host.Write(payload);
                pair.Host.Flush();
            }
        }, "host echo");

        var random = new Random(1234);
        var header = new byte[4];
        for (int m = 0; m < 2000; m++)
        {
            // Mostly small, sometimes bigger than the ring (streamed on both sides).
            int length = random.Next(10) == 0 ? random.Next(200_000) : random.Next(300);
            var payload = new byte[length];
            random.NextBytes(payload);
            BinaryPrimitives.WriteInt32LittleEndian(header, length);
            pair.Guest.Write(header);
            pair.Guest.Write(payload);
            pair.Guest.Flush();

            var echoHeader = new byte[4];
            Assert.True(pair.Guest.ReadExactly(echoHeader, 5000));
            Assert.Equal(length, BinaryPrimitives.ReadInt32LittleEndian(echoHeader));
            var echo = new byte[length];
            Assert.True(pair.Guest.ReadExactly(echo, 5000));
            Assert.True(payload.AsSpan().SequenceEqual(echo), $"echo {m} differs");
        }
        BinaryPrimitives.WriteInt32LittleEndian(header, -1);
        pair.Guest.Write(header);
        pair.Guest.Flush();
        host.Join(5000);
    });

    /// <summary>Both directions stream at once with a separate reader and writer thread on each side, on
    /// 4 KiB rings: all four threads block and wake through the one socket per side without losing a
    /// wake-up or deadlocking.</summary>
    [Theory]
    [InlineData(50)]
    [InlineData(0)] // no spinning: every wait goes through the flag + poll() path
    public void FullDuplexStreamingWithConcurrentReaderAndWriterThreads(int spinMicroseconds) => WithinTime(20_000, () =>
    {
        using var pair = new Pair(SmallRing);
        pair.Guest.SpinMicroseconds = spinMicroseconds;
        pair.Host.SpinMicroseconds = spinMicroseconds;
        const long Total = 2_000_000;

        static TestSupport.Worker Writer(ITransport t, int seed, string name) => Start(() =>
        {
            var random = new Random(seed);
            var chunk = new byte[3 * SmallRing];
            long sent = 0;
            while (sent < Total)
            {
                int n = (int)Math.Min(random.Next(1, chunk.Length), Total - sent);
                Fill(chunk.AsSpan(0, n), sent, seed);
                t.Write(chunk.AsSpan(0, n));
                if (random.Next(4) == 0)
                    t.Flush();
                sent += n;
            }
            t.Flush();
        }, name);

        static TestSupport.Worker Reader(ITransport t, int seed, string name) => Start(() =>
        {
            var random = new Random(seed + 1);
            var chunk = new byte[3 * SmallRing];
            long received = 0;
            while (received < Total)
            {
                int n = (int)Math.Min(random.Next(1, chunk.Length), Total - received);
                Assert.True(t.ReadExactly(chunk.AsSpan(0, n), 5000), $"{name} timed out at {received}");
                for (int i = 0; i < n; i++)
                    if (chunk[i] != Pattern(received + i, seed))
                        Assert.Fail($"{name}: byte {received + i} differs");
                received += n;
            }
        }, name);

        var workers = new[]
        {
            Writer(pair.Guest, 11, "guest writer"),
            Writer(pair.Host, 22, "host writer"),
            Reader(pair.Host, 11, "host reader"),
            Reader(pair.Guest, 22, "guest reader"),
        };
        foreach (var w in workers)
            w.Join(15_000);
    });

    [Fact]
    public void HotPathDoesNotAllocate() => WithinTime(5000, () =>
    {
        using var pair = new Pair(64 * 1024);
        var message = new byte[100];
        var received = new byte[100];
        void RoundTrips(int count)
        {
            for (int i = 0; i < count; i++)
            {
                pair.Guest.Write(message);
                pair.Guest.Flush();
                pair.Host.ReadExactly(received, 1000);
                pair.Host.Write(received);
                pair.Host.Flush();
                pair.Guest.ReadExactly(received, 1000);
            }
        }
        RoundTrips(1000); // warm up (tiered JIT)
        long before = GC.GetAllocatedBytesForCurrentThread();
        RoundTrips(1000);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    });

    [Fact]
    public void ConnectWithNothingThereFailsFastNamingThePath() => WithinTime(5000, () =>
    {
        using var dir = new TempSocketDir();
        string path = dir.Path("nobody-home.sock");
        var e = Assert.Throws<TransportClosedException>(() => UnixRingTransport.Connect(path, 2000));
        Assert.Contains(path, e.Message);
    });

    [Fact]
    public void ConnectToAStaleSocketFileIsRefusedNamingThePath() => WithinTime(5000, () =>
    {
        using var dir = new TempSocketDir();
        string path = dir.Path();
        MakeStaleSocketFile(path);
        Assert.True(File.Exists(path));
        var e = Assert.Throws<TransportClosedException>(() => UnixRingTransport.Connect(path, 2000));
        Assert.Contains(path, e.Message);
        Assert.Contains("nothing is listening", e.Message);
    });

    [Fact]
    public void PeerDisposedWhileGuestReadsEndsTheReadWithTransportClosed() => WithinTime(5000, () =>
    {
        using var pair = new Pair();
        var reader = Start(() =>
        {
            var e = Assert.Throws<TransportClosedException>(() => pair.Guest.ReadExactly(new byte[16], -1));
            Assert.Contains("closed", e.Message);
        }, "guest reader");
        Thread.Sleep(100); // let it fall asleep in poll()
        pair.Host.Dispose();
        reader.Join(3000);
    });

    [Fact]
    public void PeerDisposedWhileHostReadsEndsTheReadWithTransportClosed() => WithinTime(5000, () =>
    {
        using var pair = new Pair();
        var reader = Start(() =>
            Assert.Throws<TransportClosedException>(() => pair.Host.ReadExactly(new byte[16], -1)), "host reader");
        Thread.Sleep(100);
        pair.Guest.Dispose();
        reader.Join(3000);
    });

    [Fact]
    public void PeerDisposedWhileWriterWaitsForRoomEndsTheWrite() => WithinTime(5000, () =>
    {
        using var pair = new Pair(SmallRing);
        var writer = Start(() =>
            Assert.Throws<TransportClosedException>(() => pair.Guest.Write(new byte[3 * SmallRing])), "guest writer");
        Thread.Sleep(100);
        pair.Host.Dispose();
        writer.Join(3000);
    });

    [Fact]
    public void DataSentBeforeThePeerClosedIsStillDelivered() => WithinTime(5000, () =>
    {
        using var pair = new Pair();
        pair.Host.Write([1, 2, 3, 4]);
        pair.Host.Flush();
        pair.Host.Dispose();
        var buffer = new byte[4];
        Assert.True(pair.Guest.ReadExactly(buffer, 1000));
        Assert.Equal([1, 2, 3, 4], buffer);
        Assert.Throws<TransportClosedException>(() => pair.Guest.ReadExactly(buffer, 1000));
        Assert.Throws<TransportClosedException>(() => { pair.Guest.Write(buffer); pair.Guest.Flush(); });
    });

    [Fact]
    public void ShutdownFromAnotherThreadWakesABlockedReader() => WithinTime(5000, () =>
    {
        using var pair = new Pair();
        var reader = Start(() =>
            Assert.Throws<TransportClosedException>(() => pair.Host.ReadExactly(new byte[8], -1)), "host reader");
        Thread.Sleep(100);
        pair.Host.Shutdown();
        reader.Join(3000);
    });

    [Fact]
    public void ReadTimesOutWhenNothingIsSent() => WithinTime(5000, () =>
    {
        using var pair = new Pair();
        var stopwatch = Stopwatch.StartNew();
        Assert.False(pair.Guest.ReadExactly(new byte[8], 200));
        // Never early (the deadline is honoured); no upper bound beyond the liveness guard.
        Assert.True(stopwatch.ElapsedMilliseconds >= 195, $"returned after {stopwatch.ElapsedMilliseconds} ms");
        Assert.False(pair.Guest.ReadExactly(new byte[8], 0));
    });

    [Fact]
    public void TimedOutReadConsumesNothing() => WithinTime(5000, () =>
    {
        using var pair = new Pair();
        pair.Host.Write([1, 2, 3, 4, 5]);
        pair.Host.Flush();
        var buffer = new byte[10];
        Assert.False(pair.Guest.ReadExactly(buffer, 50));
        pair.Host.Write([6, 7, 8, 9, 10]);
        pair.Host.Flush();
        Assert.True(pair.Guest.ReadExactly(buffer, 1000));
        Assert.Equal([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], buffer);
    });

    [Fact]
    public void WriteTimeoutEndsAWriteNobodyDrains() => WithinTime(5000, () =>
    {
        using var pair = new Pair(SmallRing);
        pair.Host.WriteTimeoutMs = 100;
        var e = Assert.Throws<TransportClosedException>(() => pair.Host.Write(new byte[2 * SmallRing]));
        Assert.Contains("no room", e.Message);
    });

    /// <summary>A guest scribbling a garbage head into the shared header makes the host's read fail
    /// cleanly instead of reading outside the ring.</summary>
    [Theory]
    [InlineData(ulong.MaxValue)]
    [InlineData(SmallRing + 1ul)]
    [InlineData(0x8000_0000_0000_0000ul)]
    public void HostileHeadCounterIsReportedAsCorruptRing(ulong garbage) => WithinTime(5000, () =>
    {
        using var pair = new Pair(SmallRing);
        *(ulong*)(pair.Guest.Region + 0) = garbage; // guest→host ring's head
        var e = Assert.Throws<TransportClosedException>(() => pair.Host.ReadExactly(new byte[8], 1000));
        Assert.Contains("corrupt ring", e.Message);
    });

    [Fact]
    public void HostileTailCounterIsReportedAsCorruptRing() => WithinTime(5000, () =>
    {
        using var pair = new Pair(SmallRing);
        byte* toGuest = pair.Guest.Region + SharedRing.RegionSize(SmallRing);
        *(ulong*)(toGuest + 64) = 12345; // host→guest ring's tail, claiming more than was ever sent
        var e = Assert.Throws<TransportClosedException>(() => pair.Host.Write(new byte[8]));
        Assert.Contains("corrupt ring", e.Message);
    });
}
