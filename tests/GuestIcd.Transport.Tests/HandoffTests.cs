using System.Net.Sockets;
using GuestIcd.Transport.Native;
using static GuestIcd.Transport.Tests.TestSupport;

namespace GuestIcd.Transport.Tests;

/// <summary>A host connection handed from the process that accepted it to one that serves it (hostsim's
/// supervisor and workers): the ring continues where the first owner left it; listeners evict the oldest
/// unfinished handshake instead of making newcomers wait behind silent peers.</summary>
public sealed class HandoffTests
{
    private static byte[] Bytes(int n, byte seed) => Enumerable.Range(0, n).Select(i => (byte)(i * 31 + seed)).ToArray();

    [Fact]
    public void ADetachedRingResumesMidStreamWithBothDirectionsIntact() => WithinTime(10_000, () =>
    {
        using var dir = new TempSocketDir();
        using var listener = new UnixRingListener(dir.Path());
        using var guest = UnixRingTransport.Connect(listener.SocketPath, 1000, 4096);
        var first = listener.Accept(CancellationToken.None)!;
        Assert.True(first.IsHandoffCapable);

        // Some traffic before the hand-off, so the counters are not at zero (and wrap the 4 KiB ring).
        for (int i = 0; i < 5; i++)
        {
            guest.Write(Bytes(3000, (byte)i));
            guest.Flush();
            var got = new byte[3000];
            Assert.True(first.ReadExactly(got, 2000));
            Assert.Equal(Bytes(3000, (byte)i), got);
            first.Write(Bytes(1000, (byte)(i + 50)));
            first.Flush();
            var reply = new byte[1000];
            Assert.True(guest.ReadExactly(reply, 2000));
        }
        // Bytes in flight at the moment of hand-off belong to the next owner.
        guest.Write(Bytes(700, 99));
        guest.Flush();

        var handoff = first.Detach(out int socketFd, out int memfd);
        Assert.False(first.IsHandoffCapable);
        // What another process would receive over SCM_RIGHTS: its own descriptors for the same files.
        int socketCopy = Libc.dup(socketFd), memCopy = Libc.dup(memfd);
        Libc.close(socketFd);
        Libc.close(memfd);
        using var second = UnixRingTransport.Resume(handoff, socketCopy, memCopy);

        var inFlight = new byte[700];
        Assert.True(second.ReadExactly(inFlight, 2000));
        Assert.Equal(Bytes(700, 99), inFlight);
        second.Write(Bytes(3500, 7));
        second.Flush();
        var back = new byte[3500];
        Assert.True(guest.ReadExactly(back, 2000));
        Assert.Equal(Bytes(3500, 7), back);

        // The guest sees the new owner's end of the connection close like the old one's would.
        second.Dispose();
        Assert.Throws<TransportClosedException>(() => guest.ReadExactly(new byte[1], 2000));
    });

    [Fact]
    public void ResumeRefusesMemoryThatIsNotWhatTheHandoffSays() => WithinTime(10_000, () =>
    {
        using var dir = new TempSocketDir();
        using var listener = new UnixRingListener(dir.Path());
        using var guest = UnixRingTransport.Connect(listener.SocketPath, 1000, 4096);
        var first = listener.Accept(CancellationToken.None)!;
        var handoff = first.Detach(out int socketFd, out int memfd);
        var e = Assert.Throws<TransportClosedException>(() => UnixRingTransport.Resume(handoff with { HeapBytes = 1 << 20 }, socketFd, memfd));
        Assert.Contains("not a sealed memfd", e.Message);
        // Resume took ownership and closed both: the guest's connection is gone.
        Assert.Throws<TransportClosedException>(() => guest.ReadExactly(new byte[1], 2000));
    });

    [Fact]
    public void ASilentFloodFromOneProcessEvictsItsOwnOldestAndGuestsStillGetIn() => WithinTime(20_000, () =>
    {
        using var dir = new TempSocketDir();
        using var listener = new UnixRingListener(dir.Path()) { HandshakeTimeoutMs = 10_000 };
        var silent = new List<Socket>();
        try
        {
            for (int i = 0; i < 100; i++)
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                s.Connect(new UnixDomainSocketEndPoint(listener.SocketPath));
                silent.Add(s);
            }
            // Accept reports the evictions one by one, then serves the guest that came last.
            using var guest = UnixRingTransport.Connect(listener.SocketPath, 2000, 4096);
            UnixRingTransport? host = null;
            int evicted = 0;
            while (host == null)
            {
                try { host = listener.Accept(CancellationToken.None); }
                catch (TransportClosedException e)
                {
                    Assert.Contains($"its process holds {UnixRingListener.MaxPendingPerPeer} unfinished handshakes", e.Message);
                    evicted++;
                }
            }
            using (host)
                Assert.True(host.IsHost);
            Assert.Equal(100 - UnixRingListener.MaxPendingPerPeer + 1, evicted);
        }
        finally
        {
            foreach (var s in silent) s.Dispose();
        }
    });
}
