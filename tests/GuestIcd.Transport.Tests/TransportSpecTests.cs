using System.Net;
using static GuestIcd.Transport.Tests.StreamTestSupport;
using static GuestIcd.Transport.Tests.TestSupport;

namespace GuestIcd.Transport.Tests;

public sealed class TransportSpecTests
{
    [Theory]
    [InlineData("unix:/run/guesticd/hostsim.sock", TransportKind.Unix, "/run/guesticd/hostsim.sock", 0u, 0u)]
    [InlineData("unix:relative/path:with:colons", TransportKind.Unix, "relative/path:with:colons", 0u, 0u)]
    [InlineData("tcp:gpu-host.example:7000", TransportKind.Tcp, "gpu-host.example", 7000u, 0u)]
    [InlineData("tcp:10.0.0.5:65535", TransportKind.Tcp, "10.0.0.5", 65535u, 0u)]
    [InlineData("tcp:[::1]:7000", TransportKind.Tcp, "::1", 7000u, 0u)]
    [InlineData("tcp:[fe80::1%2]:1", TransportKind.Tcp, "fe80::1%2", 1u, 0u)]
    [InlineData("vsock:2:5000", TransportKind.Vsock, "", 5000u, 2u)]
    [InlineData("vsock:4294967294:1", TransportKind.Vsock, "", 1u, 4294967294u)]
    [InlineData("virtio-gpu", TransportKind.VirtioGpu, "", 0u, 0u)]
    [InlineData("virtio-gpu:/dev/dri/renderD129", TransportKind.VirtioGpu, "/dev/dri/renderD129", 0u, 0u)]
    public void GuestSpecsParse(string spec, TransportKind kind, string address, uint port, uint cid)
    {
        var parsed = TransportSpec.ParseGuest(spec);
        Assert.Equal(new TransportSpec(kind, address, port, cid), parsed);
        Assert.Equal(spec, parsed.ToString());
    }

    [Theory]
    [InlineData("auto")]
    [InlineData("")]
    [InlineData(null)]
    public void AutoMeansTheGivenDefaultSocket(string? spec)
    {
        Assert.Equal(new TransportSpec(TransportKind.Unix, "/tmp/default.sock", 0, 0), TransportSpec.ParseGuest(spec, "/tmp/default.sock"));
        Assert.Contains("default unix socket path", Assert.Throws<ArgumentException>(() => TransportSpec.ParseGuest(spec)).Message);
    }

    [Theory]
    [InlineData("bogus:thing", "unknown scheme 'bogus'")]
    [InlineData("vmbus", "has no scheme")]
    [InlineData("unix:", "needs a socket path")]
    [InlineData("tcp:host", "expected tcp:HOST:PORT")]
    [InlineData("tcp::7000", "the host is empty")]
    [InlineData("tcp:host:0", "port 0 is not a port to connect to")]
    [InlineData("tcp:host:65536", "port '65536' is not a number")]
    [InlineData("tcp:host:-1", "port '-1' is not a number")]
    [InlineData("tcp:host: 80", "is not a number")]
    [InlineData("tcp:::1:7000", "IPv6 addresses go in brackets")]
    [InlineData("tcp:[::1]7000", "expected tcp:[IPv6]:PORT")]
    [InlineData("tcp:[not-v6]:7000", "is not an IPv6 address")]
    [InlineData("vsock:5000", "vsock:CID:PORT")]
    [InlineData("vsock:x:5000", "CID 'x' is not a number")]
    [InlineData("vsock:2:0", "vsock port 0")]
    [InlineData("vsock:4294967295:1", "CID '4294967295'")]
    public void BadGuestSpecsSayWhatIsWrong(string spec, string reason)
    {
        var e = Assert.Throws<ArgumentException>(() => TransportSpec.ParseGuest(spec));
        Assert.Contains(reason, e.Message);
        Assert.Contains(spec, e.Message);
        Assert.Null(e.ParamName);
    }

    [Theory]
    [InlineData("unix:/tmp/h.sock", TransportKind.Unix, "/tmp/h.sock", 0u)]
    [InlineData("tcp:127.0.0.1:0", TransportKind.Tcp, "127.0.0.1", 0u)]
    [InlineData("tcp:[::]:7000", TransportKind.Tcp, "::", 7000u)]
    [InlineData("tcp:*:7000", TransportKind.Tcp, "*", 7000u)]
    [InlineData("tcp:localhost:7000", TransportKind.Tcp, "localhost", 7000u)]
    [InlineData("vsock:5000", TransportKind.Vsock, "", 5000u)]
    [InlineData("vsock:0", TransportKind.Vsock, "", 0u)]
    public void HostSpecsParse(string spec, TransportKind kind, string address, uint port)
    {
        var parsed = TransportSpec.ParseHost(spec);
        Assert.Equal(kind, parsed.Kind);
        Assert.Equal(address, parsed.Address);
        Assert.Equal(port, parsed.Port);
        Assert.Equal(spec, parsed.ToString());
    }

    [Fact]
    public void HostTcpEndPoints()
    {
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 7000), TransportSpec.ParseHost("tcp:localhost:7000").TcpEndPoint());
        Assert.Equal(new IPEndPoint(IPAddress.IPv6Loopback, 1), TransportSpec.ParseHost("tcp:[::1]:1").TcpEndPoint());
        Assert.Equal(7000, TransportSpec.ParseHost("tcp:*:7000").TcpEndPoint().Port);
    }

    [Theory]
    [InlineData("auto", "has no scheme")]
    [InlineData("tcp:gpu-host.example:7000", "listens on an IP address")]
    [InlineData("vsock:2:5000", "a host listens on vsock:PORT")]
    [InlineData("vsock:any", "port 'any' is not a number")]
    [InlineData("http:x", "unknown scheme 'http'; expected unix:PATH, tcp:ADDRESS:PORT, vsock:PORT, hyperv:SERVICE-GUID[:VMID] or vm:SOCKET,shm=FILE[,size=BYTES]")]
    public void BadHostSpecsSayWhatIsWrong(string spec, string reason)
    {
        var e = Assert.Throws<ArgumentException>(() => TransportSpec.ParseHost(spec));
        Assert.Contains(reason, e.Message);
        Assert.Contains("unknown", Assert.Throws<ArgumentException>(() => Transports.Listen("ftp:1", Security())).Message);
    }

    [Fact]
    public void ConnectRejectsUnknownSchemesAndMissingSecrets() => WithinTime(5000, () =>
    {
        var e = Assert.Throws<ArgumentException>(() => Transports.Connect("carrier-pigeon:1", 100));
        Assert.Contains("unknown scheme 'carrier-pigeon'", e.Message);
        if (Environment.GetEnvironmentVariable("GUESTICD_SECRET") == null && Environment.GetEnvironmentVariable("GUESTICD_SECRET_FILE") == null)
        {
            e = Assert.Throws<ArgumentException>(() => Transports.Connect("tcp:127.0.0.1:9", 100));
            Assert.Contains("needs a shared secret", e.Message);
            e = Assert.Throws<ArgumentException>(() => Transports.Connect("vsock:2:9", 100));
            Assert.Contains("needs a shared secret", e.Message);
        }
    });

    [Fact]
    public void ConnectAndListenOverTcpBySpec() => WithinTime(10_000, () =>
    {
        using var listener = Transports.Listen("tcp:127.0.0.1:0", Security());
        var tcp = Assert.IsType<TcpTransportListener>(listener);
        var accept = Task.Run(() => listener.Accept(CancellationToken.None));
        using var guest = Transports.Connect($"tcp:127.0.0.1:{tcp.Port}", 5000, security: Security());
        using var host = accept.GetAwaiter().GetResult()!;
        Assert.Equal($"tcp:127.0.0.1:{tcp.Port}", guest.Description);
        guest.Write([5, 6]);
        guest.Flush();
        var two = new byte[2];
        Assert.True(host.ReadExactly(two, 2000));
        Assert.Equal(new byte[] { 5, 6 }, two);
    });

    [Fact]
    public void ConnectAndListenOverIpv6BySpec() => WithinTime(10_000, () =>
    {
        if (!System.Net.Sockets.Socket.OSSupportsIPv6)
            return;
        ITransportListener listener;
        try
        {
            listener = Transports.Listen("tcp:[::1]:0", Security());
        }
        catch (IOException)
        {
            return; // no IPv6 loopback on this machine
        }
        using (listener)
        {
            int port = ((TcpTransportListener)listener).Port;
            Assert.Equal($"tcp:[::1]:{port}", listener.Description);
            var accept = Task.Run(() => listener.Accept(CancellationToken.None));
            using var guest = Transports.Connect($"tcp:[::1]:{port}", 5000, security: Security());
            using var host = accept.GetAwaiter().GetResult()!;
            Assert.Equal($"tcp:[::1]:{port}", guest.Description);
        }
    });

    [Fact]
    public void ConnectAndListenOverUnixBySpecIncludingAuto() => WithinTime(10_000, () =>
    {
        using var dir = new TempSocketDir();
        string path = dir.Path();
        using var listener = Transports.Listen("unix:" + path, null);
        Assert.IsType<UnixRingListener>(listener);
        var accept = Task.Run(() => listener.Accept(CancellationToken.None));
        using var guest = Transports.Connect("auto", 2000, defaultUnixPath: path);
        using var host = accept.GetAwaiter().GetResult();
        Assert.NotNull(host);
        Assert.IsType<UnixRingTransport>(guest);
    });

    [Fact]
    public void ConnectToAMissingUnixSocketIsATransportFailure() => WithinTime(5000, () =>
    {
        using var dir = new TempSocketDir();
        Assert.Throws<TransportClosedException>(() => Transports.Connect("unix:" + dir.Path("none.sock"), 500));
    });
}
