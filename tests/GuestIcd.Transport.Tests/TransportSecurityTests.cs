using System.Text;
using static GuestIcd.Transport.Tests.StreamTestSupport;

namespace GuestIcd.Transport.Tests;

public sealed class TransportSecurityTests
{
    private static Func<string, string?> Env(params (string Name, string Value)[] variables)
    {
        var map = variables.ToDictionary(v => v.Name, v => v.Value);
        return name => map.GetValueOrDefault(name);
    }

    [Fact]
    public void NoSecretConfiguredMeansNull() => Assert.Null(TransportSecurity.FromEnvironment(Env(("GUESTICD_TLS", "1"))));

    [Fact]
    public void SecretFromTheEnvironmentOrAFileGivesTheSameBytes()
    {
        string file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, SecretText + "\n");
            var fromFile = TransportSecurity.FromEnvironment(Env(("GUESTICD_SECRET_FILE", file)))!;
            var fromText = TransportSecurity.FromEnvironment(Env(("GUESTICD_SECRET", SecretText)))!;
            Assert.Equal(Encoding.UTF8.GetBytes(SecretText), fromFile.Secret);
            Assert.Equal(fromText.Secret, fromFile.Secret);
            Assert.False(fromText.UseTls);
            Assert.Equal(fromFile.Secret, TransportSecurity.ForHost(file).Secret);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void TlsSettingsComeFromTheEnvironment()
    {
        var security = TransportSecurity.FromEnvironment(Env(("GUESTICD_SECRET", SecretText), ("GUESTICD_TLS", "1"),
            ("GUESTICD_TLS_PIN", "ab"), ("GUESTICD_TLS_CA", "/ca.pem"), ("GUESTICD_TLS_SERVER_NAME", "gpu")))!;
        Assert.True(security.UseTls);
        Assert.Equal("ab", security.PinnedCertificate);
        Assert.Equal("/ca.pem", security.TrustedCaFile);
        Assert.Equal("gpu", security.ServerName);
    }

    [Fact]
    public void BadSecretsAreRefusedWithoutShowingThem()
    {
        var e = Assert.Throws<ArgumentException>(() => TransportSecurity.FromEnvironment(Env(("GUESTICD_SECRET", SecretText), ("GUESTICD_SECRET_FILE", "/x"))));
        Assert.Contains("only one", e.Message);
        e = Assert.Throws<ArgumentException>(() => TransportSecurity.FromEnvironment(Env(("GUESTICD_SECRET", "hunter2"))));
        Assert.DoesNotContain("hunter2", e.Message);
        Assert.Contains("7 bytes", e.Message);
        e = Assert.Throws<ArgumentException>(() => TransportSecurity.FromEnvironment(Env(("GUESTICD_SECRET_FILE", "/nonexistent/secret"))));
        Assert.Contains("/nonexistent/secret", e.Message);
        e = Assert.Throws<ArgumentException>(() => TransportSecurity.ForHost("/nonexistent/secret", keyFile: "/k"));
        Assert.Contains("--tls-key needs --tls-cert", e.Message);
    }

    [Fact]
    public void PrintingTheSettingsHidesTheSecret()
    {
        var security = Security() with { CertificateFile = "/etc/host.pfx" };
        string text = security.ToString();
        Assert.DoesNotContain(SecretText, text);
        Assert.Contains($"<{SecretText.Length} bytes, hidden>", text);
        Assert.Contains("/etc/host.pfx", text);
    }
}
