using GuestIcd.Transport.Native;
using static GuestIcd.Transport.Tests.StreamTestSupport;
using static GuestIcd.Transport.Tests.TestSupport;

namespace GuestIcd.Transport.Tests;

/// <summary>
/// Local vsock behaviour only. This machine's /dev/vsock leads to the machine's own host, which is not
/// ours: nothing here connects to any CID. After connect, vsock runs the TCP tests' code path
/// (SocketStream, StreamTransport, PipeTransport, SharedSecretAuth), so those cover the rest.
/// </summary>
public sealed class VsockTransportTests
{
    [Fact]
    public void CreatingAnAfVsockSocketWorksOrFailsClearly() => WithinTime(5000, () =>
    {
        int fd;
        try
        {
            fd = Vsock.CreateSocket(nonBlocking: true, "test");
        }
        catch (IOException e)
        {
            Assert.Matches("AF_VSOCK", e.Message);
            return;
        }
        Assert.True(fd >= 0);
        Assert.Equal(0, Libc.close(fd));
    });

    [Fact]
    public void ListenerBindsOrSaysWhyNot() => WithinTime(5000, () =>
    {
        VsockTransportListener listener;
        try
        {
            listener = new VsockTransportListener(0, Security());
        }
        catch (IOException e)
        {
            Assert.StartsWith("vsock:0: cannot listen: ", e.Message);
            return;
        }
        using (listener)
        {
            Assert.NotEqual(0u, listener.Port);
            Assert.NotEqual(Vsock.VMADDR_PORT_ANY, listener.Port);
            Assert.Equal($"vsock:{listener.Port}", listener.Description);

            // A second listener on the same port is refused with the reason.
            var e = Assert.Throws<IOException>(() => new VsockTransportListener(listener.Port, Security()));
            Assert.Contains("already in use", e.Message);

            using (var cts = new CancellationTokenSource(100))
                Assert.Null(listener.Accept(cts.Token));
        }
        Assert.Null(listener.Accept(CancellationToken.None));
    });

    [Fact]
    public void ListenerBySpecBindsOrSaysWhyNot() => WithinTime(5000, () =>
    {
        try
        {
            using var listener = Transports.Listen("vsock:0", Security());
            Assert.StartsWith("vsock:", listener.Description);
            var blocked = Task.Run(() => listener.Accept(CancellationToken.None));
            Thread.Sleep(50);
            listener.Dispose();
            Assert.True(blocked.Wait(3000), "Dispose did not release Accept");
            Assert.Null(blocked.Result);
        }
        catch (IOException e)
        {
            Assert.Contains("cannot listen", e.Message);
        }
    });

    [Fact]
    public void ListenerWithoutASecretRefusesBeforeTouchingVsock() => WithinTime(5000, () =>
    {
        var e = Assert.Throws<ArgumentException>(() => Transports.Listen("vsock:0", null));
        Assert.Contains("refusing to listen without a shared secret", e.Message);
        e = Assert.Throws<ArgumentException>(() => new VsockTransportListener(0, null!));
        Assert.Contains("shared secret", e.Message);
    });

    [Fact]
    public void ConnectValidatesArgumentsBeforeAnySocketExists() => WithinTime(5000, () =>
    {
        // These fail before a socket is created, so no CID is ever contacted.
        Assert.Throws<ArgumentOutOfRangeException>(() => VsockTransport.Connect(Vsock.VMADDR_CID_ANY, 5000, Security(), 100));
        Assert.Throws<ArgumentOutOfRangeException>(() => VsockTransport.Connect(VsockTransport.HostCid, Vsock.VMADDR_PORT_ANY, Security(), 100));
        Assert.Throws<ArgumentException>(() => VsockTransport.Connect(VsockTransport.HostCid, 5000, Security("short"), 100));
    });

    [Fact]
    public void SockaddrVmHasTheKernelLayout()
    {
        Assert.Equal(16, System.Runtime.CompilerServices.Unsafe.SizeOf<Vsock.SockAddrVm>());
        var address = Vsock.Address(3, 0x1234);
        Assert.Equal(40, address.svm_family);
        Assert.Equal(3u, address.svm_cid);
        Assert.Equal(0x1234u, address.svm_port);
    }
}
