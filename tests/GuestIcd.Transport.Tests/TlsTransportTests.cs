using static GuestIcd.Transport.Tests.StreamTestSupport;
using static GuestIcd.Transport.Tests.TestSupport;

namespace GuestIcd.Transport.Tests;

public sealed class TlsTransportTests
{
    private static TransportSecurity Host(TestCertificate certificate, bool pem = false) => Security() with
    {
        CertificateFile = pem ? certificate.CertPemPath : certificate.PfxPath,
        KeyFile = pem ? certificate.KeyPemPath : null,
    };

    private static TransportSecurity Pinned(string pin) => Security() with { PinnedCertificate = pin };

    [Fact]
    public void RoundTripWithASelfSignedCertificateAndAPinnedThumbprint() => WithinTime(30_000, () =>
    {
        using var certificate = new TestCertificate();
        using var pair = new TcpPair(Host(certificate), Pinned(certificate.Sha256));
        Assert.True(pair.Guest.IsTls);
        Assert.True(pair.Host.IsTls);
        Assert.EndsWith("(tls)", pair.Guest.Description);
        var echo = Start(() => Echo(pair.Host), "host echo");
        TcpTransportTests.RoundTrip(pair.Guest, [0, 1, 17, 16_384, 16_385, 70_000, 2 << 20, 3, 5], 11);
        pair.Guest.Dispose();
        echo.Join(5000);
    });

    [Theory]
    [InlineData("sha1")]
    [InlineData("sha256-colons")]
    [InlineData("file")]
    public void OtherPinFormsWork(string form) => WithinTime(10_000, () =>
    {
        using var certificate = new TestCertificate();
        string pin = form switch
        {
            "sha1" => certificate.Sha1.ToLowerInvariant(),
            "sha256-colons" => string.Join(':', certificate.Sha256.Chunk(2).Select(c => new string(c))),
            _ => certificate.CertPemPath,
        };
        using var pair = new TcpPair(Host(certificate, pem: true), Pinned(pin));
        pair.Guest.Write([7]);
        pair.Guest.Flush();
        var one = new byte[1];
        Assert.True(pair.Host.ReadExactly(one, 2000));
    });

    [Fact]
    public void WrongPinIsRefused() => WithinTime(10_000, () =>
    {
        using var certificate = new TestCertificate();
        using var listener = Listen(Host(certificate));
        var accept = Task.Run(() => Assert.Throws<TransportClosedException>(() => AcceptOne(listener)));
        var e = Assert.Throws<TransportClosedException>(() =>
            TcpTransport.Connect("127.0.0.1", listener.Port, Pinned(new string('A', 64)), 5000));
        Assert.Contains("TLS refused", e.Message);
        Assert.Contains("does not match the pinned one", e.Message);
        Assert.Contains(certificate.Sha256, e.Message);
        var dropped = accept.GetAwaiter().GetResult();
        Assert.Contains("dropped guest", dropped.Message);
        Assert.DoesNotContain(SecretText, e.Message + dropped.Message);
    });

    [Fact]
    public void PrivateCaTrustChecksChainAndName() => WithinTime(10_000, () =>
    {
        using var certificate = new TestCertificate();
        using var listener = Listen(Host(certificate));
        var accept = Task.Run(() => AcceptOne(listener));
        using (var guest = TcpTransport.Connect("127.0.0.1", listener.Port, Security() with { TrustedCaFile = certificate.CertPemPath }, 5000))
        using (var host = accept.GetAwaiter().GetResult())
            Assert.True(host.IsTls);

        // The same CA, but the certificate is not for this name.
        var refused = Task.Run(() => Assert.Throws<TransportClosedException>(() => AcceptOne(listener)));
        var e = Assert.Throws<TransportClosedException>(() => TcpTransport.Connect("127.0.0.1", listener.Port,
            Security() with { TrustedCaFile = certificate.CertPemPath, ServerName = "gpu-host.example" }, 5000));
        Assert.Contains("another name", e.Message);
        refused.GetAwaiter().GetResult();

        // System trust does not know a self-signed certificate.
        refused = Task.Run(() => Assert.Throws<TransportClosedException>(() => AcceptOne(listener)));
        e = Assert.Throws<TransportClosedException>(() => TcpTransport.Connect("127.0.0.1", listener.Port, Security() with { UseTls = true }, 5000));
        Assert.Contains("not trusted", e.Message);
        refused.GetAwaiter().GetResult();
    });

    [Fact]
    public void WrongSecretInsideTlsIsStillRefused() => WithinTime(10_000, () =>
    {
        using var certificate = new TestCertificate();
        using var listener = Listen(Host(certificate));
        var accept = Task.Run(() => Assert.Throws<TransportClosedException>(() => AcceptOne(listener)));
        var e = Assert.Throws<TransportClosedException>(() => TcpTransport.Connect("127.0.0.1", listener.Port,
            Security(OtherSecretText) with { PinnedCertificate = certificate.Sha256 }, 5000));
        Assert.EndsWith("refused the shared secret", e.Message);
        Assert.Contains("wrong shared secret", accept.GetAwaiter().GetResult().Message);
    });

    [Fact]
    public void PlainGuestAgainstATlsHostFailsOnBothSides() => WithinTime(10_000, () =>
    {
        using var certificate = new TestCertificate();
        using var listener = Listen(Host(certificate), handshakeTimeoutMs: 500);
        var accept = Task.Run(() => Assert.Throws<TransportClosedException>(() => AcceptOne(listener)));
        Assert.Throws<TransportClosedException>(() => TcpTransport.Connect("127.0.0.1", listener.Port, Security(), 3000));
        accept.GetAwaiter().GetResult();
    });

    [Fact]
    public void TlsGuestAgainstAPlainHostFailsClearly() => WithinTime(10_000, () =>
    {
        using var listener = Listen(handshakeTimeoutMs: 500);
        var e = Assert.Throws<TransportClosedException>(() =>
            TcpTransport.Connect("127.0.0.1", listener.Port, Pinned(new string('0', 64)), 3000));
        Assert.Contains("TLS", e.Message);
    });

    [Fact]
    public void TlsReadTimeoutsKeepPartialRecordsAndLoseNothing() => WithinTime(10_000, () =>
    {
        using var certificate = new TestCertificate();
        using var pair = new TcpPair(Host(certificate), Pinned(certificate.Sha256));
        var eight = new byte[8];
        Assert.False(pair.Guest.ReadExactly(eight, 50));
        pair.Host.Write([1, 2, 3]);
        pair.Host.Flush();
        Assert.False(pair.Guest.ReadExactly(eight, 200));
        pair.Host.Write([4, 5, 6, 7, 8]);
        pair.Host.Flush();
        Assert.True(pair.Guest.ReadExactly(eight, 2000));
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 }, eight);

        Assert.False(pair.Host.ReadExactly(eight, 50));
        pair.Guest.Write([8, 7, 6]);
        pair.Guest.Flush();
        Assert.False(pair.Host.ReadExactly(eight, 200));
        pair.Guest.Write([5, 4, 3, 2, 1]);
        pair.Guest.Flush();
        Assert.True(pair.Host.ReadExactly(eight, 2000));
        Assert.Equal(new byte[] { 8, 7, 6, 5, 4, 3, 2, 1 }, eight);
    });

    [Fact]
    public void UnloadableCertificateStopsTheListenerFromStarting() => WithinTime(5000, () =>
    {
        using var certificate = new TestCertificate();
        var e = Assert.Throws<ArgumentException>(() => Listen(Security() with { CertificateFile = Path.Combine(certificate.Directory, "missing.pfx") }));
        Assert.Contains("cannot be loaded", e.Message);
        e = Assert.Throws<ArgumentException>(() => Listen(Security() with { CertificateFile = certificate.CertPemPath }));
        Assert.Contains("private key", e.Message);
    });
}
