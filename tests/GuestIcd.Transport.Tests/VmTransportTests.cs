using System.Text;
using GuestIcd.Transport.Native;
using static GuestIcd.Transport.Tests.TestSupport;

namespace GuestIcd.Transport.Tests;

/// <summary>
/// The VM transport without a VM: a plain file stands for the ivshmem BAR (mapped by both sides) and one unix
/// socket connection to <see cref="VmTransportListener"/> stands for qemu's virtio-serial chardev. Each guest
/// session gets a dup of that connection, as each guest process opens the port anew while qemu keeps the
/// host socket, and drives it through the char-device code path (read/write, goodbye on Dispose).
/// </summary>
public sealed unsafe class VmTransportTests : IDisposable
{
    private const long FileSize = 8L << 20;
    private readonly TempSocketDir _dir = new();
    private readonly string _shm;
    private readonly VmTransportListener _listener;
    private readonly int _channel;

    public VmTransportTests()
    {
        _shm = _dir.Path("ivshmem.shm");
        _listener = new VmTransportListener(_dir.Path("vm.sock"), _shm, FileSize);
        _channel = ConnectLikeQemu(_listener.SocketPath);
    }

    public void Dispose()
    {
        Libc.close(_channel);
        _listener.Dispose();
        _dir.Dispose();
    }

    private static int ConnectLikeQemu(string path)
    {
        Assert.True(Libc.TryMakeAddress(path, out var address, out uint length));
        int fd = Libc.socket(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC, 0);
        Assert.True(fd >= 0);
        Assert.Equal(0, Libc.connect(fd, &address, length));
        Assert.Equal(0, Libc.fcntl(fd, 4 /* F_SETFL */, Libc.O_NONBLOCK | Libc.O_RDWR));
        return fd;
    }

    /// <summary>What one guest process does: map the "BAR", open the "port", start a session.</summary>
    private UnixRingTransport GuestSession(long heapBytes = 1 << 20)
    {
        byte* region = Map(_shm, FileSize);
        int port = Libc.dup(_channel);
        Assert.True(port >= 0);
        return VmTransport.Start(port, region, (nuint)FileSize, heapBytes, 2000, "test guest");
    }

    private static byte* Map(string path, long size)
    {
        int fd;
        fixed (byte* p = Encoding.UTF8.GetBytes(path + "\0"))
            fd = Libc.open(p, Libc.O_RDWR | Libc.O_CLOEXEC, 0);
        Assert.True(fd >= 0);
        var region = (byte*)Libc.mmap(null, (nuint)size, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, fd, 0);
        Libc.close(fd);
        Assert.True(region != Libc.MAP_FAILED);
        return region;
    }

    private UnixRingTransport AcceptSession()
    {
        using var cts = new CancellationTokenSource(5000);
        return _listener.Accept(cts.Token) ?? throw new InvalidOperationException("accept returned null");
    }

    private static void RoundTrip(UnixRingTransport guest, UnixRingTransport host, string text)
    {
        byte[] request = Encoding.ASCII.GetBytes(text);
        guest.Write(request);
        guest.Flush();
        var got = new byte[request.Length];
        Assert.True(host.ReadExactly(got, 5000));
        Assert.Equal(text, Encoding.ASCII.GetString(got));

        // A reply bigger than the ring: doorbells both ways while it streams.
        var reply = new byte[3 * host.RingBytes + 17];
        new Random(text.Length).NextBytes(reply);
        var writer = Start(() => { host.Write(reply); host.Flush(); }, "host reply");
        var echo = new byte[reply.Length];
        Assert.True(guest.ReadExactly(echo, 5000));
        writer.Join(5000);
        Assert.True(reply.AsSpan().SequenceEqual(echo));
    }

    [Fact]
    public void TwoSequentialSessionsOnOneChannel() => WithinTime(20_000, () =>
    {
        for (int s = 1; s <= 2; s++)
        {
            var guest = GuestSession();
            using var host = AcceptSession();
            Assert.Contains($"session {s}", host.Description);
            Assert.Equal(VmTransport.PreferredRingBytes, host.RingBytes);
            Assert.Equal(1 << 20, host.HeapBytes);

            RoundTrip(guest, host, $"hello from session {s}");

            // HOST_VISIBLE memory is the same bytes on both sides.
            guest.HeapBase[100] = (byte)(40 + s);
            Assert.Equal((byte)(40 + s), host.HeapBase[100]);
            host.HeapBase[200] = (byte)(50 + s);
            Assert.Equal((byte)(50 + s), guest.HeapBase[200]);

            guest.Dispose(); // goodbye byte: the host's session ends, the channel stays
            Assert.Throws<TransportClosedException>(() => host.ReadExactly(new byte[1], 5000));
        }
    });

    /// <summary>A host busy elsewhere (a wait in the driver) asks whether its guest is still there: doorbells
    /// are not an end, a goodbye or the next guest's preamble is, and the next session still starts.</summary>
    [Fact]
    public void PeerClosedSeesTheGoodbyeAndTheNextPreambleButNotDoorbells() => WithinTime(20_000, () =>
    {
        var first = GuestSession();
        using (var host = AcceptSession())
        {
            RoundTrip(first, host, "doorbells");
            first.Write([1]);
            first.Flush();
            Assert.False(host.PeerClosed);
            first.Dispose();
            Assert.True(SpinWait.SpinUntil(() => host.PeerClosed, 2000));
        }
        var dead = GuestSession();
        using (var host = AcceptSession())
        {
            RoundTrip(dead, host, "dies without goodbye");
            Assert.False(host.PeerClosed);
            var next = GuestSession();
            Assert.True(SpinWait.SpinUntil(() => host.PeerClosed, 2000));
            host.Dispose();
            using var host3 = AcceptSession();
            RoundTrip(next, host3, "next process");
            next.Dispose();
        }
        dead.Dispose(); // its late goodbye falls between sessions
    });

    [Fact]
    public void AGuestThatDiedWithoutGoodbyeIsEndedByTheNextPreamble() => WithinTime(20_000, () =>
    {
        var dead = GuestSession();
        using (var host1 = AcceptSession())
        {
            RoundTrip(dead, host1, "first process");
            // The first process "dies" (no goodbye) and a second one starts on the same port.
            var next = GuestSession();
            Assert.Throws<TransportClosedException>(() => host1.ReadExactly(new byte[1], 5000));
            host1.Dispose();
            using var host2 = AcceptSession(); // its preamble was drained by host1 and handed back
            Assert.Contains("session 2", host2.Description);
            RoundTrip(next, host2, "second process");
            next.Dispose();
            Assert.Throws<TransportClosedException>(() => host2.ReadExactly(new byte[1], 5000));
        }
        dead.Dispose(); // a late goodbye between sessions is skipped
        var third = GuestSession();
        using var host3 = AcceptSession();
        RoundTrip(third, host3, "third process");
        third.Dispose();
    });

    [Fact]
    public void APreambleReachingOutsideTheFileIsRefused() => WithinTime(10_000, () =>
    {
        var preamble = new byte[VmTransport.PreambleSize];
        VmTransport.WritePreamble(preamble, VmTransport.PreambleVersion, 1 << 20, (ulong)FileSize);
        fixed (byte* p = preamble)
            Assert.Equal(preamble.Length, (int)Libc.write(_channel, p, (nuint)preamble.Length));
        var e = Assert.Throws<TransportClosedException>(() => AcceptSession());
        Assert.Contains("do not fit", e.Message);

        // The listener stays usable.
        var guest = GuestSession();
        using var host = AcceptSession();
        RoundTrip(guest, host, "after a bad one");
        guest.Dispose();
    });

    [Fact]
    public void MissingDevicesOnAHostAreOneClearLine()
    {
        if (Directory.Exists("/sys/class/virtio-ports") && VmTransport.PortPresent())
            return; // running inside a guest that has them
        var e = Assert.Throws<TransportClosedException>(() => VmTransport.Connect(100, 0));
        Assert.Matches("no ivshmem device|no virtio-serial port", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void SpecsParse()
    {
        Assert.Equal(TransportKind.Vm, TransportSpec.ParseGuest("vm").Kind);
        var host = TransportSpec.ParseHost("vm:/tmp/a.sock,shm=/dev/shm/x,size=268435456");
        Assert.Equal(TransportKind.Vm, host.Kind);
        Assert.Equal("/tmp/a.sock", host.Address);
        Assert.Equal("/dev/shm/x", host.ShmPath);
        Assert.Equal(268435456, host.ShmSize);
        Assert.Equal("vm:/tmp/a.sock,shm=/dev/shm/x,size=268435456", host.ToString());
        Assert.Throws<ArgumentException>(() => TransportSpec.ParseHost("vm:/tmp/a.sock"));
        Assert.Throws<ArgumentException>(() => TransportSpec.ParseHost("vm:/tmp/a.sock,shm=/x,bogus=1"));
        Assert.Throws<ArgumentException>(() => TransportSpec.ParseHost("vm:,shm=/x"));
    }
}
