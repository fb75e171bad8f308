using static GuestIcd.Transport.Tests.TestSupport;

namespace GuestIcd.Transport.Tests;

/// <summary><see cref="ITransport.PeerClosed"/>: false while the peer is there (also with its data unread),
/// true as soon as it has gone, and asking consumes nothing, on the ring and on TCP.</summary>
public sealed class PeerClosedTests
{
    static bool Eventually(Func<bool> condition, int limitMs = 2000)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.ElapsedMilliseconds > limitMs) return false;
            Thread.Sleep(5);
        }
        return true;
    }

    [Fact]
    public void TheRingHostSeesItsGuestLeaveWithoutLosingWhatItSent() => WithinTime(10_000, () =>
    {
        using var pair = new Pair(4096);
        Assert.False(pair.Host.PeerClosed);
        Assert.False(pair.Guest.PeerClosed);
        pair.Guest.Write([1, 2, 3]);
        pair.Guest.Flush(); // a doorbell and data wait unread: neither means "gone"
        Assert.False(pair.Host.PeerClosed);
        pair.Guest.Dispose();
        Assert.True(Eventually(() => pair.Host.PeerClosed));
        var got = new byte[3];
        Assert.True(pair.Host.ReadExactly(got, 1000));
        Assert.Equal(new byte[] { 1, 2, 3 }, got);
    });

    [Fact]
    public void TheRingGuestSeesItsHostLeave() => WithinTime(10_000, () =>
    {
        using var pair = new Pair(4096);
        Assert.False(pair.Guest.PeerClosed);
        pair.Host.Dispose();
        Assert.True(Eventually(() => pair.Guest.PeerClosed));
    });

    [Fact]
    public void OverTcpBothEndsSeeTheOtherLeave() => WithinTime(10_000, () =>
    {
        using (var pair = new StreamTestSupport.TcpPair())
        {
            Assert.False(pair.Host.PeerClosed);
            Assert.False(pair.Guest.PeerClosed);
            pair.Guest.Write([7]);
            pair.Guest.Flush();
            Assert.False(pair.Host.PeerClosed);
            pair.Guest.Dispose();
            Assert.True(Eventually(() => pair.Host.PeerClosed));
            var got = new byte[1];
            Assert.True(pair.Host.ReadExactly(got, 1000));
            Assert.Equal(7, got[0]);
        }
        using (var pair = new StreamTestSupport.TcpPair())
        {
            pair.Host.Dispose();
            Assert.True(Eventually(() => pair.Guest.PeerClosed));
        }
    });
}
