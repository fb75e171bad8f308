using System.Buffers.Binary;
using System.Net.Sockets;
using static GuestIcd.Transport.Tests.TestSupport;

namespace GuestIcd.Transport.Tests;

public sealed class UnixRingListenerTests
{
    private static Socket RawClient(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(path));
        return socket;
    }

    private static byte[] Preamble(ulong ringBytes, uint version = 2)
    {
        var bytes = new byte[32];
        "GICDRING"u8.CopyTo(bytes);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), version);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(16), ringBytes);
        return bytes;
    }

    [Fact]
    public void ClientWithoutMemfdIsDroppedAndTheListenerKeepsServing() => WithinTime(5000, () =>
    {
        using var dir = new TempSocketDir();
        using var listener = new UnixRingListener(dir.Path());
        using var bad = RawClient(listener.SocketPath);
        bad.Send(Preamble(4096));
        var e = Assert.Throws<TransportClosedException>(() => listener.Accept(CancellationToken.None));
        Assert.Contains("no shared-memory file descriptor", e.Message);

        using var guest = UnixRingTransport.Connect(listener.SocketPath, 1000, 4096);
        using var host = listener.Accept(CancellationToken.None);
        Assert.NotNull(host);
        Assert.True(host.IsHost);
    });

    [Theory]
    [InlineData("NOTARING", 2u, "bad preamble magic")]
    [InlineData("GICDRING", 1u, "preamble version 1")]
    public void BadPreambleIsDroppedWithTheReason(string magic, uint version, string reason) => WithinTime(5000, () =>
    {
        using var dir = new TempSocketDir();
        using var listener = new UnixRingListener(dir.Path());
        using var bad = RawClient(listener.SocketPath);
        var preamble = Preamble(4096, version);
        System.Text.Encoding.ASCII.GetBytes(magic).CopyTo(preamble, 0);
        bad.Send(preamble);
        var e = Assert.Throws<TransportClosedException>(() => listener.Accept(CancellationToken.None));
        Assert.Contains(reason, e.Message);
    });

    [Fact]
    public void RingLargerThanTheHostAllowsIsRefused() => WithinTime(5000, () =>
    {
        using var dir = new TempSocketDir();
        using var listener = new UnixRingListener(dir.Path()) { MaxRingBytes = 8192 };
        using var guest = UnixRingTransport.Connect(listener.SocketPath, 1000, 16384);
        var e = Assert.Throws<TransportClosedException>(() => listener.Accept(CancellationToken.None));
        Assert.Contains("16384-byte ring", e.Message);
        // The refused guest finds out on its next wait.
        Assert.Throws<TransportClosedException>(() => guest.ReadExactly(new byte[1], 2000));
    });

    [Fact]
    public void SilentClientTimesOutWithoutBlockingOthers() => WithinTime(5000, () =>
    {
        using var dir = new TempSocketDir();
        // Long enough for the good guest's whole connect on a loaded machine (the TCP twin of this test once saw
        // the silent peer's drop first at 700 ms).
        using var listener = new UnixRingListener(dir.Path()) { HandshakeTimeoutMs = 2000 };
        using var silent = RawClient(listener.SocketPath);
        // A good guest that arrives after the silent one is served first.
        using var guest = UnixRingTransport.Connect(listener.SocketPath, 1000, 4096);
        using var host = listener.Accept(CancellationToken.None);
        Assert.NotNull(host);
        var e = Assert.Throws<TransportClosedException>(() => listener.Accept(CancellationToken.None));
        Assert.Contains("no complete preamble within 2000 ms", e.Message);
    });

    [Fact]
    public void CancellationEndsAcceptWithNull() => WithinTime(5000, () =>
    {
        using var dir = new TempSocketDir();
        using var listener = new UnixRingListener(dir.Path());
        using var cts = new CancellationTokenSource(100);
        Assert.Null(listener.Accept(cts.Token));
        // Still usable afterwards.
        using var guest = UnixRingTransport.Connect(listener.SocketPath, 1000, 4096);
        using var host = listener.Accept(CancellationToken.None);
        Assert.NotNull(host);
    });

    [Fact]
    public void DisposeFromAnotherThreadEndsAcceptAndRemovesTheSocketFile() => WithinTime(5000, () =>
    {
        using var dir = new TempSocketDir();
        var listener = new UnixRingListener(dir.Path());
        Assert.True(File.Exists(listener.SocketPath));
        var acceptor = Start(() => Assert.Null(listener.Accept(CancellationToken.None)), "acceptor");
        Thread.Sleep(100);
        listener.Dispose();
        acceptor.Join(3000);
        Assert.False(File.Exists(listener.SocketPath));
        Assert.Null(listener.Accept(CancellationToken.None));
    });

    [Fact]
    public void StaleSocketFileIsReplacedAndMissingDirectoryCreated() => WithinTime(5000, () =>
    {
        using var dir = new TempSocketDir();
        string path = Path.Combine(dir.Directory, "sub", "dir", "ring.sock");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        MakeStaleSocketFile(path);
        using var listener = new UnixRingListener(path);
        using var guest = UnixRingTransport.Connect(path, 1000, 4096);
        using var host = listener.Accept(CancellationToken.None);
        Assert.NotNull(host);

        using var fresh = new TempSocketDir();
        string nested = Path.Combine(fresh.Directory, "a", "b.sock");
        using var second = new UnixRingListener(nested);
        Assert.True(File.Exists(nested));
    });

    [Fact]
    public void LiveListenerIsNotStolen()
    {
        using var dir = new TempSocketDir();
        using var listener = new UnixRingListener(dir.Path());
        Assert.Throws<IOException>(() => new UnixRingListener(dir.Path()));
    }

    [Fact]
    public void RegularFileAtThePathIsNotDeleted()
    {
        using var dir = new TempSocketDir();
        File.WriteAllText(dir.Path(), "precious");
        Assert.Throws<IOException>(() => new UnixRingListener(dir.Path()));
        Assert.Equal("precious", File.ReadAllText(dir.Path()));
    }
}
