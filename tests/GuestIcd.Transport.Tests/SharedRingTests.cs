using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using static GuestIcd.Transport.Tests.TestSupport;

namespace GuestIcd.Transport.Tests;

public sealed unsafe class SharedRingTests
{
    private const int Capacity = 4096;

    private static Arbitrary<int[]> MessageSizes =>
        Gen.Frequency(
                (3, Gen.Choose(0, 64)),
                (3, Gen.Choose(0, Capacity)),
                (2, Gen.Choose(Capacity - 8, Capacity + 8)),
                (2, Gen.Choose(0, 3 * Capacity)))
            .ArrayOf()
            .ToArbitrary();

    /// <summary>One thread writes messages of random sizes (up to 3 rings' worth, so the producer keeps
    /// hitting a full ring and positions wrap), another reads in random chunk sizes: the consumer sees
    /// exactly the bytes written, in order.</summary>
    [Property(MaxTest = 50)]
    public Property OrderAndContentSurviveWrappingAndFullRing() =>
        Prop.ForAll(MessageSizes, Arb.From(Gen.Choose(1, 3 * Capacity).ArrayOf()), (sizes, readSizes) =>
        {
            using var memory = new GuardedRing(Capacity);
            var producer = new SharedRing(memory.Region, Capacity);
            var consumer = new SharedRing(memory.Region, Capacity);
            long total = sizes.Sum(s => (long)s);
            int seed = sizes.Length;
            bool ok = true;

            WithinTime(10_000, () =>
            {
                var writer = Start(() =>
                {
                    long position = 0;
                    foreach (int size in sizes)
                    {
                        var message = new byte[size];
                        Fill(message, position, seed);
                        position += size;
                        ReadOnlySpan<byte> rest = message;
                        while (!rest.IsEmpty)
                        {
                            int n = producer.Write(rest);
                            rest = rest[n..];
                            producer.Publish();
                            if (n == 0)
                                Thread.Yield();
                        }
                    }
                }, "ring writer");

                var buffer = new byte[3 * Capacity];
                long read = 0;
                int chunk = 0;
                while (read < total)
                {
                    int want = readSizes.Length == 0 ? buffer.Length : readSizes[chunk++ % readSizes.Length];
                    int n = consumer.Read(buffer.AsSpan(0, (int)Math.Min(want, total - read)));
                    if (n == 0)
                    {
                        Thread.Yield();
                        continue;
                    }
                    for (int i = 0; i < n; i++)
                        if (buffer[i] != Pattern(read + i, seed))
                            ok = false;
                    read += n;
                }
                writer.Join(10_000);
                ok &= consumer.Available == 0;
            });
            return ok;
        });

    [Fact]
    public void WriteCopiesOnlyWhatFitsAndNothingIsVisibleBeforePublish()
    {
        using var memory = new GuardedRing(Capacity);
        var producer = new SharedRing(memory.Region, Capacity);
        var consumer = new SharedRing(memory.Region, Capacity);

        Assert.Equal(Capacity, producer.Write(new byte[Capacity + 100]));
        Assert.Equal(0, producer.Write(new byte[1]));
        Assert.Equal(0, consumer.Available);
        Assert.False(producer.Publish()); // consumer is not sleeping: no doorbell needed
        Assert.Equal(Capacity, consumer.Available);
        Assert.Equal(10, consumer.Read(new byte[10]));
        Assert.Equal(10, producer.FreeSpace);
    }

    [Fact]
    public void SleepFlagsRequestExactlyOneDoorbell()
    {
        using var memory = new GuardedRing(Capacity);
        var producer = new SharedRing(memory.Region, Capacity);
        var consumer = new SharedRing(memory.Region, Capacity);

        consumer.BeginConsumerSleep();
        producer.Write(new byte[10]);
        Assert.True(producer.Publish());
        producer.Write(new byte[10]);
        Assert.False(producer.Publish()); // flag consumed by the first publish

        producer.Write(new byte[Capacity]);
        producer.Publish();
        producer.BeginProducerWait();
        consumer.Read(new byte[1]);
        Assert.True(consumer.TakeProducerWaiting());
        Assert.False(consumer.TakeProducerWaiting());
    }

    /// <summary>Whatever a hostile peer writes into the head counter, the consumer either reads at most a
    /// ring's worth from inside the data area or reports a corrupt ring; the guard pages around the
    /// region turn any stray access into a crash.</summary>
    [Property(MaxTest = 200)]
    public bool GarbageHeadNeverReadsOutOfBounds(ulong garbage, int legit)
    {
        using var memory = new GuardedRing(Capacity);
        var producer = new SharedRing(memory.Region, Capacity);
        var consumer = new SharedRing(memory.Region, Capacity);
        int first = (int)((uint)legit % Capacity);
        producer.Write(new byte[first]);
        producer.Publish();
        consumer.Read(new byte[first / 2]);

        // FsCheck's numbers stay small; also try the far ends of the range.
        ulong head = ((uint)legit % 3) switch { 0 => garbage, 1 => ~garbage, _ => garbage << 40 };
        memory.Head = head;
        ulong tail = (ulong)(first / 2);
        bool plausible = head - tail <= Capacity && head >= (ulong)first;
        try
        {
            int n = consumer.Read(new byte[2 * Capacity]);
            return plausible && n == (int)(head - tail);
        }
        catch (TransportClosedException e)
        {
            return !plausible && e.Message.Contains("corrupt ring");
        }
    }

    [Fact]
    public void HeadMovingBackwardsIsCorrupt()
    {
        using var memory = new GuardedRing(Capacity);
        var producer = new SharedRing(memory.Region, Capacity);
        var consumer = new SharedRing(memory.Region, Capacity);
        producer.Write(new byte[100]);
        producer.Publish();
        Assert.Equal(100, consumer.Available);
        consumer.Read(new byte[50]);
        memory.Head = 60; // still ahead of the tail, but behind what was already published
        var e = Assert.Throws<TransportClosedException>(() => consumer.Available);
        Assert.Contains("corrupt ring", e.Message);
    }

    [Theory]
    [InlineData(ulong.MaxValue)]
    [InlineData(5000ul)]      // beyond what was written
    [InlineData(10ul)]        // backwards
    public void GarbageTailIsCorruptForTheProducer(ulong tail)
    {
        using var memory = new GuardedRing(Capacity);
        var producer = new SharedRing(memory.Region, Capacity);
        var consumer = new SharedRing(memory.Region, Capacity);
        producer.Write(new byte[100]);
        producer.Publish();
        consumer.Read(new byte[50]);
        Assert.Equal(Capacity - 50, producer.FreeSpace);
        memory.Tail = tail;
        var e = Assert.Throws<TransportClosedException>(() => producer.Write(new byte[1]));
        Assert.Contains("corrupt ring", e.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(100)]
    [InlineData(4095)]
    [InlineData(-64)]
    public void RejectsCapacitiesThatAreNotPowersOfTwo(int capacity)
    {
        using var memory = new GuardedRing(Capacity);
        Assert.Throws<ArgumentOutOfRangeException>(() => new SharedRing(memory.Region, capacity));
    }
}
