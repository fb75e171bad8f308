using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace GuestIcd.Transport.Tests;

/// <summary>Helpers for the TCP/vsock/TLS tests: secrets, connected pairs, throwaway certificates.</summary>
internal static class StreamTestSupport
{
    public const string SecretText = "correct-horse-battery-staple-4711";
    public const string OtherSecretText = "wrong-pony-capacitor-clip-0815!!";

    public static TransportSecurity Security(string secret = SecretText) =>
        new() { Secret = System.Text.Encoding.UTF8.GetBytes(secret) };

    public static TcpTransportListener Listen(TransportSecurity? security = null, int handshakeTimeoutMs = 5000) =>
        new(new IPEndPoint(IPAddress.Loopback, 0), security ?? Security()) { HandshakeTimeoutMs = handshakeTimeoutMs };

    public static PipeTransport AcceptOne(SocketTransportListener listener, int limitMs = 5000)
    {
        using var cts = new CancellationTokenSource(limitMs);
        return listener.Accept(cts.Token) ?? throw new InvalidOperationException("accept returned null");
    }

    /// <summary>A TCP port nothing listens on (bound once, then released).</summary>
    public static int UnusedPort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    /// <summary>A connected, authenticated guest/host pair over loopback TCP.</summary>
    public sealed class TcpPair : IDisposable
    {
        public TcpPair(TransportSecurity? hostSecurity = null, TransportSecurity? guestSecurity = null)
        {
            Listener = Listen(hostSecurity);
            var accept = Task.Run(() => AcceptOne(Listener));
            Guest = TcpTransport.ConnectStream("127.0.0.1", Listener.Port, guestSecurity ?? Security(), 5000);
            Host = accept.GetAwaiter().GetResult();
        }

        public TcpTransportListener Listener { get; }
        public StreamTransport Guest { get; }
        public PipeTransport Host { get; }

        public void Dispose()
        {
            Guest.Dispose();
            Host.Dispose();
            Listener.Dispose();
        }
    }

    /// <summary>A self-signed certificate for localhost/127.0.0.1 written as PKCS#12 (no password) and
    /// as PEM certificate + PEM key into a temp directory.</summary>
    public sealed class TestCertificate : IDisposable
    {
        public TestCertificate(string name = "localhost")
        {
            Directory = System.IO.Directory.CreateTempSubdirectory("gicd-tls").FullName;
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
            var names = new SubjectAlternativeNameBuilder();
            names.AddDnsName(name);
            names.AddIpAddress(IPAddress.Loopback);
            request.CertificateExtensions.Add(names.Build());
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
            request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
            using X509Certificate2 certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
            PfxPath = Path.Combine(Directory, "host.pfx");
            File.WriteAllBytes(PfxPath, certificate.Export(X509ContentType.Pkcs12));
            CertPemPath = Path.Combine(Directory, "host.crt");
            File.WriteAllText(CertPemPath, certificate.ExportCertificatePem());
            KeyPemPath = Path.Combine(Directory, "host.key");
            File.WriteAllText(KeyPemPath, key.ExportPkcs8PrivateKeyPem());
            Sha256 = Convert.ToHexString(SHA256.HashData(certificate.RawData));
            Sha1 = certificate.Thumbprint;
        }

        public string Directory { get; }
        public string PfxPath { get; }
        public string CertPemPath { get; }
        public string KeyPemPath { get; }
        public string Sha256 { get; }
        public string Sha1 { get; }

        public void Dispose()
        {
            try { System.IO.Directory.Delete(Directory, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>Echoes length-prefixed messages (u32 length + payload) until the peer closes.</summary>
    public static void Echo(ITransport transport)
    {
        var header = new byte[4];
        var payload = new byte[1 << 20];
        try
        {
            while (transport.ReadExactly(header, -1))
            {
                int length = BitConverter.ToInt32(header);
                if (payload.Length < length)
                    payload = new byte[length];
                Assert.True(transport.ReadExactly(payload.AsSpan(0, length), 10_000));
                transport.Write(header);
                transport.Write(payload.AsSpan(0, length));
                transport.Flush();
            }
        }
        catch (TransportClosedException)
        {
            // the guest is done
        }
    }
}
