using System.Net;
using System.Net.Sockets;
using GuestIcd.Transport.Native;
using static GuestIcd.Transport.Tests.StreamTestSupport;
using static GuestIcd.Transport.Tests.TestSupport;

namespace GuestIcd.Transport.Tests;

/// <summary>
/// Hyper-V sockets as far as a Linux machine without Hyper-V can take them: the address encoding against
/// the values in Microsoft's "Make your own integration services" and Linux's hyperv_transport.c, the
/// spec forms, the VMBus detection on a fake sysfs, the guest's failure messages, and the Windows
/// listener's accept and authentication code over TCP. Nothing connects over AF_VSOCK: without the
/// vsock_loopback module even CID 1 goes to the guest-to-host transport, that is to this machine's own
/// host, which is not ours.
/// </summary>
public sealed class HvSockTests
{
    // The documentation's Linux example: vsock port 0x3049197C is service 3049197c-facb-11e6-bd58-64006a7986d3.
    private const uint DocPort = 0x3049197C;
    private static readonly Guid DocService = new("3049197c-facb-11e6-bd58-64006a7986d3");

    [Fact]
    public void APortIsTheFirstFieldOfTheVsockTemplateGuid()
    {
        Assert.Equal(DocService, HvSockAddress.ServiceIdForPort(DocPort));
        Assert.True(HvSockAddress.TryPortForServiceId(DocService, out uint port));
        Assert.Equal(DocPort, port);
        Assert.Equal(new Guid("00000000-facb-11e6-bd58-64006a7986d3"), HvSockAddress.ServiceIdForPort(0));
        Assert.Equal(new Guid("ffffffff-facb-11e6-bd58-64006a7986d3"), HvSockAddress.ServiceIdForPort(uint.MaxValue));
        Assert.Equal(new Guid("00001388-facb-11e6-bd58-64006a7986d3"), HvSockAddress.ServiceIdForPort(5000));
        Assert.Equal(new Guid("47494344-facb-11e6-bd58-64006a7986d3"), HvSockAddress.ServiceIdForPort(HvSockTransport.DefaultPort));
        foreach (uint p in new uint[] { 1, 1024, 0x12345678, 0x80000000, 0xFFFFFFFE })
        {
            Assert.True(HvSockAddress.TryPortForServiceId(HvSockAddress.ServiceIdForPort(p), out uint back));
            Assert.Equal(p, back);
        }
    }

    [Theory]
    [InlineData("90db8b89-0d35-4f79-8ce9-49ea0ac8b7cd")] // HV_GUID_CHILDREN
    [InlineData("3049197c-facb-11e6-bd58-64006a7986d4")] // one bit off the template
    [InlineData("3049197c-facc-11e6-bd58-64006a7986d3")]
    [InlineData("00000000-0000-0000-0000-000000000000")]
    public void GuidsOutsideTheTemplateHaveNoPort(string guid)
    {
        Assert.False(HvSockAddress.TryPortForServiceId(new Guid(guid), out uint port));
        Assert.Equal(0u, port);
    }

    [Fact]
    public void SockAddrHvIsFamilyReservedThenTwoGuidsInWindowsMemoryOrder()
    {
        var bytes = new byte[HvSockAddress.SockAddrSize];
        HvSockAddress.Encode(HvSockAddress.Children, DocService, bytes);
        byte[] expected =
        [
            0x22, 0x00, // AF_HYPERV = 34, little-endian
            0x00, 0x00, // Reserved
            // VmId 90db8b89-0d35-4f79-8ce9-49ea0ac8b7cd: Data1, Data2, Data3 little-endian, Data4 as written
            0x89, 0x8b, 0xdb, 0x90, 0x35, 0x0d, 0x79, 0x4f, 0x8c, 0xe9, 0x49, 0xea, 0x0a, 0xc8, 0xb7, 0xcd,
            // ServiceId 3049197c-facb-11e6-bd58-64006a7986d3
            0x7c, 0x19, 0x49, 0x30, 0xcb, 0xfa, 0xe6, 0x11, 0xbd, 0x58, 0x64, 0x00, 0x6a, 0x79, 0x86, 0xd3,
        ];
        Assert.Equal(36, HvSockAddress.SockAddrSize);
        Assert.Equal(expected, bytes);
        Assert.Equal((HvSockAddress.Children, DocService), HvSockAddress.Decode(bytes));

        HvSockAddress.Encode(HvSockAddress.Wildcard, DocService, bytes);
        Assert.All(bytes[4..20], b => Assert.Equal(0, b));
        Assert.Equal((HvSockAddress.Wildcard, DocService), HvSockAddress.Decode(bytes));

        Assert.Throws<ArgumentException>(() => HvSockAddress.Encode(HvSockAddress.Wildcard, DocService, new byte[35]));
        Assert.Contains("36 bytes", Assert.Throws<ArgumentException>(() => HvSockAddress.Decode(bytes.AsSpan(0, 20))).Message);
        bytes[0] = 40; // AF_VSOCK
        Assert.Contains("not AF_HYPERV", Assert.Throws<ArgumentException>(() => HvSockAddress.Decode(bytes)).Message);
    }

    [Fact]
    public void TheWellKnownVmIdsAreTheDocumentedOnes()
    {
        Assert.Equal(Guid.Empty, HvSockAddress.Wildcard);
        Assert.Equal(new Guid("90db8b89-0d35-4f79-8ce9-49ea0ac8b7cd"), HvSockAddress.Children);
        Assert.Equal((AddressFamily)34, HvSockAddress.AfHyperV);
        Assert.Equal((ProtocolType)1, HvSockAddress.ProtocolRaw);
        var endPoint = new HyperVEndPoint(HvSockAddress.Children, DocService);
        Assert.Equal(HvSockAddress.AfHyperV, endPoint.AddressFamily);
        Assert.Equal($"hyperv:children:{DocService}", endPoint.ToString());
    }

    [Theory]
    [InlineData("hvsock:808", 808u, "hvsock:808")]
    [InlineData("hvsock:0x3049197C", DocPort, "hvsock:810097020")]
    [InlineData("hvsock:3049197c-facb-11e6-bd58-64006a7986d3", DocPort, "hvsock:810097020")]
    public void GuestHvSockSpecsNameAPortOnTheHost(string spec, uint port, string canonical)
    {
        var parsed = TransportSpec.ParseGuest(spec);
        Assert.Equal(TransportKind.HvSock, parsed.Kind);
        Assert.Equal(port, parsed.Port);
        Assert.Equal(2u, parsed.Cid);
        Assert.Equal(HvSockAddress.ServiceIdForPort(port), parsed.ServiceId);
        Assert.Equal(canonical, parsed.ToString());
    }

    [Theory]
    [InlineData("hvsock:", "is not a number")]
    [InlineData("hvsock:0", "port 0 is not a port")]
    [InlineData("hvsock:4294967295", "is not a port")]
    [InlineData("hvsock:-1", "is not a number")]
    [InlineData("hvsock:90db8b89-0d35-4f79-8ce9-49ea0ac8b7cd", "PORT-facb-11e6-bd58-64006a7986d3")]
    public void BadHvSockSpecsSayWhy(string spec, string why) =>
        Assert.Contains(why, Assert.Throws<ArgumentException>(() => TransportSpec.ParseGuest(spec)).Message);

    [Theory]
    [InlineData("hyperv:3049197c-facb-11e6-bd58-64006a7986d3", "00000000-0000-0000-0000-000000000000", "hyperv:3049197c-facb-11e6-bd58-64006a7986d3")]
    [InlineData("hyperv:0x3049197C", "00000000-0000-0000-0000-000000000000", "hyperv:3049197c-facb-11e6-bd58-64006a7986d3")]
    [InlineData("hyperv:{3049197C-FACB-11E6-BD58-64006A7986D3}:children", "90db8b89-0d35-4f79-8ce9-49ea0ac8b7cd", "hyperv:3049197c-facb-11e6-bd58-64006a7986d3:children")]
    [InlineData("hyperv:3049197c-facb-11e6-bd58-64006a7986d3:*", "00000000-0000-0000-0000-000000000000", "hyperv:3049197c-facb-11e6-bd58-64006a7986d3")]
    [InlineData("hyperv:3049197c-facb-11e6-bd58-64006a7986d3:d2a6e0b0-3c47-4b2e-a3b1-5a1c2a3c4d5e", "d2a6e0b0-3c47-4b2e-a3b1-5a1c2a3c4d5e", "hyperv:3049197c-facb-11e6-bd58-64006a7986d3:d2a6e0b0-3c47-4b2e-a3b1-5a1c2a3c4d5e")]
    public void HostHyperVSpecsNameAServiceAndAVm(string spec, string vm, string canonical)
    {
        var parsed = TransportSpec.ParseHost(spec);
        Assert.Equal(TransportKind.HyperV, parsed.Kind);
        Assert.Equal(DocService, parsed.ServiceId);
        Assert.Equal(new Guid(vm), parsed.VmId);
        Assert.Equal(canonical, parsed.ToString());
        Assert.Equal(parsed, TransportSpec.ParseHost(parsed.ToString()));
    }

    [Theory]
    [InlineData("hyperv:", "expected hyperv:SERVICE-GUID[:VMID]")]
    [InlineData("hyperv:not-a-guid", "is not a GUID")]
    [InlineData("hyperv:3049197c-facb-11e6-bd58-64006a7986d3:somevm", "VM 'somevm' is not a GUID")]
    [InlineData("hyperv:a:b:c", "expected hyperv:SERVICE-GUID[:VMID]")]
    public void BadHyperVSpecsSayWhy(string spec, string why) =>
        Assert.Contains(why, Assert.Throws<ArgumentException>(() => TransportSpec.ParseHost(spec)).Message);

    /// <summary>A throwaway sysfs tree: bus/vmbus/devices with the given entries, module/ with the given modules.</summary>
    private static string FakeSysfs(string[]? vmbusDevices, params string[] modules)
    {
        string root = Directory.CreateTempSubdirectory("hv13-sysfs").FullName;
        if (vmbusDevices != null)
        {
            string devices = Directory.CreateDirectory(Path.Combine(root, "bus", "vmbus", "devices")).FullName;
            foreach (string d in vmbusDevices)
                Directory.CreateDirectory(Path.Combine(devices, d));
        }
        foreach (string m in modules)
            Directory.CreateDirectory(Path.Combine(root, "module", m));
        return root;
    }

    [Fact]
    public void AHyperVGuestIsOneWithDevicesOnTheVmbus()
    {
        string none = FakeSysfs(null);
        string empty = FakeSysfs([]);
        // A real guest's entries are the devices' instance GUIDs.
        string guest = FakeSysfs(["fd1d2cbd-ce7c-535c-966b-eb5f811c95f0", "f8615163-df3e-46c5-913f-f2d2f965ed0e"], "vsock", "hv_sock");
        try
        {
            Assert.False(HvSockAddress.IsHyperVGuest(none));
            Assert.False(HvSockAddress.IsHyperVGuest(empty));
            Assert.True(HvSockAddress.IsHyperVGuest(guest));
            Assert.Null(HvSockAddress.MissingModules(guest));
            Assert.Equal("the hv_sock module is not loaded (modprobe hv_sock)", HvSockAddress.MissingModules(FakeSysfs([], "vsock")));
            Assert.Contains("neither vsock nor hv_sock", HvSockAddress.MissingModules(none));
            // This machine is no Hyper-V guest (the CI's are not either); a test that says otherwise is wrong here.
            Assert.Equal(Directory.Exists("/sys/bus/vmbus/devices") && Directory.EnumerateFileSystemEntries("/sys/bus/vmbus/devices").Any(),
                HvSockAddress.IsHyperVGuest());
        }
        finally
        {
            foreach (string d in new[] { none, empty, guest })
                Directory.Delete(d, true);
        }
    }

    [Fact]
    public void EachConnectFailureIsExplainedInHyperVTerms()
    {
        string guest = FakeSysfs(["dev0"], "vsock");
        string plain = FakeSysfs(null);
        try
        {
            Guid s = HvSockAddress.ServiceIdForPort(DocPort);
            Assert.Equal("this Hyper-V guest has no usable hv_sock: the hv_sock module is not loaded (modprobe hv_sock)", HvSockTransport.Explain(Vsock.ENODEV, s, guest));
            Assert.Equal(HvSockTransport.Explain(Vsock.ENODEV, s, guest), HvSockTransport.Explain(Vsock.EAFNOSUPPORT, s, guest));
            Assert.Equal(HvSockTransport.Explain(0, s, guest), HvSockTransport.Explain(Vsock.EAFNOSUPPORT, s, guest));
            Assert.StartsWith("no Hyper-V vsock transport here (no VMBus devices under", HvSockTransport.Explain(Vsock.ENODEV, s, plain));
            string refused = HvSockTransport.Explain(Libc.ECONNREFUSED, s, guest)!;
            Assert.StartsWith($"the host refused service {s}: nothing listens on it", refused);
            Assert.Contains($"--listen hyperv:{s}", refused);
            Assert.Contains("GuestCommunicationServices", HvSockTransport.Explain(Vsock.ETIMEDOUT, s, guest));
            Assert.Null(HvSockTransport.Explain(Libc.EINVAL, s, guest)); // the vsock wording then
        }
        finally
        {
            Directory.Delete(guest, true);
            Directory.Delete(plain, true);
        }
    }

    [Fact]
    public void AutoTriesHvSockOnlyOnAHyperVGuestAndLogsWhyItMovesOn() => WithinTime(10_000, () =>
    {
        string plain = FakeSysfs(null);
        string guest = FakeSysfs(["dev0"], "vsock", "hv_sock");
        try
        {
            var lines = new List<string>();
            Assert.Null(HvSockTransport.TryAuto(2000, Security(), lines.Add, plain, Vsock.VMADDR_CID_LOCAL));
            Assert.Empty(lines);

            // CID "any" fails before any socket exists; a real CID would reach this machine's own host.
            Assert.Null(HvSockTransport.TryAuto(2000, Security(), lines.Add, guest, Vsock.VMADDR_CID_ANY));
            string line = Assert.Single(lines);
            uint port = HvSockTransport.PortFromEnvironment();
            Assert.StartsWith($"transport auto: Hyper-V guest, hvsock:{port} unusable (", line);
            Assert.Contains("a vsock peer needs a concrete CID and port", line);
            Assert.EndsWith("; trying the others", line);
        }
        finally
        {
            Directory.Delete(plain, true);
            Directory.Delete(guest, true);
        }
    });

    [Fact]
    public void OnLinuxTheHyperVListenerSaysItNeedsWindowsAndChecksTheSecretFirst()
    {
        Assert.False(OperatingSystem.IsWindows());
        var e = Assert.Throws<IOException>(() => Transports.Listen("hyperv:3049197c-facb-11e6-bd58-64006a7986d3", Security()));
        Assert.Equal("hyperv:3049197c-facb-11e6-bd58-64006a7986d3: cannot listen: AF_HYPERV sockets exist only on a Windows host with Hyper-V (a Linux guest reaches it with GUESTICD_TRANSPORT=hvsock:PORT)", e.Message);
        Assert.Contains("refusing to listen without a shared secret",
            Assert.Throws<ArgumentException>(() => Transports.Listen("hyperv:0x3049197C:children", null)).Message);
    }

    /// <summary>The listener Windows runs, given a TCP socket: accept, authentication, the guest's
    /// description, a refused secret, and a clean close: everything but the address family.</summary>
    [Fact]
    public void TheHyperVListenerServesGuestsOverAnyStreamSocket() => WithinTime(20_000, () =>
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        socket.Listen(16);
        int port = ((IPEndPoint)socket.LocalEndPoint!).Port;
        string name = HyperVListener.Name(DocService, HvSockAddress.Children);
        Assert.Equal($"hyperv:{DocService}:children", name);
        using var listener = new HyperVListener(socket, Security(), name) { HandshakeTimeoutMs = 5000 };
        Assert.Equal(name, listener.Description);

        var accept = Task.Run(() => AcceptOne(listener));
        using (var guest = TcpTransport.ConnectStream("127.0.0.1", port, Security(), 5000))
        using (var host = accept.GetAwaiter().GetResult())
        {
            Assert.StartsWith($"{name} guest 127.0.0.1:", host.Description);
            var echo = Start(() => Echo(host), "host echo");
            TcpTransportTests.RoundTrip(guest, [0, 1, 100, 70_000, 3 << 20], 13);
            guest.Dispose();
            echo.Join(5000);
        }

        var refused = Task.Run(() => Assert.Throws<TransportClosedException>(() => AcceptOne(listener)));
        var e = Assert.Throws<TransportClosedException>(() => TcpTransport.Connect("127.0.0.1", port, Security(OtherSecretText), 5000));
        Assert.EndsWith("refused the shared secret", e.Message);
        Assert.Contains("presented the wrong shared secret", refused.GetAwaiter().GetResult().Message);

        var blocked = Task.Run(() => listener.Accept(CancellationToken.None));
        Thread.Sleep(50);
        listener.Dispose();
        Assert.True(blocked.Wait(3000), "Dispose did not release Accept");
        Assert.Null(blocked.Result);
    });
}
