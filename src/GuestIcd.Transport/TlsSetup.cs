using System.Net.Security;
using System.Runtime.CompilerServices;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace GuestIcd.Transport;

/// <summary>TLS settings for both ends of a stream transport, built from <see cref="TransportSecurity"/>.</summary>
internal static class TlsSetup
{
    /// <summary>The guest's options. <paramref name="failure"/> receives why the host's certificate was
    /// rejected, since SslStream's own exception only says that it was.</summary>
    public static SslClientAuthenticationOptions ClientOptions(TransportSecurity security, string targetHost, StrongBox<string?> failure)
    {
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = security.ServerName ?? targetHost,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        };
        if (security.PinnedCertificate is { } pin)
        {
            Func<byte[], bool> matches = PinMatcher(pin);
            // A pin names the one certificate we accept; chain and name do not matter then.
            options.RemoteCertificateValidationCallback = (_, certificate, _, _) =>
            {
                if (certificate == null)
                {
                    failure.Value = "the host presented no certificate";
                    return false;
                }
                if (matches(certificate.GetRawCertData()))
                    return true;
                failure.Value = $"the host's certificate (SHA-256 {Convert.ToHexString(SHA256.HashData(certificate.GetRawCertData()))}) does not match the pinned one";
                return false;
            };
            return options;
        }
        if (security.TrustedCaFile is { } caFile)
        {
            var policy = new X509ChainPolicy
            {
                TrustMode = X509ChainTrustMode.CustomRootTrust,
                RevocationMode = X509RevocationMode.NoCheck,
            };
            policy.CustomTrustStore.AddRange(LoadCertificates(caFile, "GUESTICD_TLS_CA"));
            options.CertificateChainPolicy = policy;
        }
        options.RemoteCertificateValidationCallback = (_, _, chain, errors) =>
        {
            if (errors == SslPolicyErrors.None)
                return true;
            failure.Value = Describe(errors, chain);
            return false;
        };
        return options;
    }

    private static string Describe(SslPolicyErrors errors, X509Chain? chain)
    {
        var parts = new List<string>();
        if ((errors & SslPolicyErrors.RemoteCertificateNotAvailable) != 0)
            parts.Add("the host presented no certificate");
        if ((errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
            parts.Add("the host's certificate is for another name (set GUESTICD_TLS_SERVER_NAME?)");
        if ((errors & SslPolicyErrors.RemoteCertificateChainErrors) != 0)
        {
            string detail = chain == null ? "" : string.Join("; ", chain.ChainStatus.Select(s => s.StatusInformation.Trim()).Where(s => s.Length > 0));
            parts.Add($"the host's certificate is not trusted{(detail.Length > 0 ? $" ({detail})" : "")}");
        }
        return string.Join(", ", parts);
    }

    private static Func<byte[], bool> PinMatcher(string pin)
    {
        string hex = pin.Replace(":", "", StringComparison.Ordinal).Replace(" ", "", StringComparison.Ordinal).Trim();
        if ((hex.Length == 64 || hex.Length == 40) && hex.All(Uri.IsHexDigit))
        {
            byte[] wanted = Convert.FromHexString(hex);
            return hex.Length == 64
                ? raw => CryptographicOperations.FixedTimeEquals(SHA256.HashData(raw), wanted)
                : raw => CryptographicOperations.FixedTimeEquals(SHA1.HashData(raw), wanted);
        }
        if (!File.Exists(pin))
            throw new ArgumentException($"GUESTICD_TLS_PIN '{pin}' is neither a SHA-256 (64 hex digits) or SHA-1 (40) thumbprint nor a certificate file");
        byte[] pinned = LoadCertificates(pin, "GUESTICD_TLS_PIN")[0].RawData;
        return raw => raw.AsSpan().SequenceEqual(pinned);
    }

    /// <summary>Every certificate in a PEM file, or the one in a DER file.</summary>
    private static X509Certificate2Collection LoadCertificates(string path, string what)
    {
        var collection = new X509Certificate2Collection();
        try
        {
            string text = File.ReadAllText(path);
            if (text.Contains("-----BEGIN", StringComparison.Ordinal))
                collection.ImportFromPem(text);
            else
                collection.Add(X509CertificateLoader.LoadCertificateFromFile(path));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException)
        {
            throw new ArgumentException($"{what} '{path}' cannot be read as a certificate: {e.Message}");
        }
        if (collection.Count == 0)
            throw new ArgumentException($"{what} '{path}' holds no certificate");
        return collection;
    }

    /// <summary>The host's certificate with its private key, ready for SslStream.</summary>
    /// <exception cref="ArgumentException">The files cannot be read or hold no usable key.</exception>
    public static SslStreamCertificateContext LoadServerCertificate(TransportSecurity security)
    {
        string path = security.CertificateFile ?? throw new ArgumentException("no TLS certificate configured");
        X509Certificate2 certificate;
        bool fromPem = false;
        try
        {
            if (security.KeyFile != null)
            {
                certificate = X509Certificate2.CreateFromPemFile(path, security.KeyFile);
                fromPem = true;
            }
            else if (File.ReadAllText(path) is var text && text.Contains("-----BEGIN", StringComparison.Ordinal))
            {
                if (!text.Contains("PRIVATE KEY-----", StringComparison.Ordinal))
                    throw new ArgumentException($"TLS certificate '{path}' has no private key; give it with --tls-key");
                certificate = X509Certificate2.CreateFromPemFile(path);
                fromPem = true;
            }
            else
            {
                certificate = X509CertificateLoader.LoadPkcs12FromFile(path, password: null);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException)
        {
            throw new ArgumentException($"TLS certificate '{path}'{(security.KeyFile != null ? $" with key '{security.KeyFile}'" : "")} cannot be loaded " +
                $"(PKCS#12 without a password, or PEM with its key inside or given by --tls-key): {e.Message}");
        }
        if (!certificate.HasPrivateKey)
        {
            certificate.Dispose();
            throw new ArgumentException($"TLS certificate '{path}' has no private key; give it with --tls-key");
        }
        if (fromPem)
        {
            // A key imported from PEM is ephemeral; a PKCS#12 round trip gives SslStream a key it can use everywhere.
            using X509Certificate2 pem = certificate;
            certificate = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), password: null);
        }
        return SslStreamCertificateContext.Create(certificate, additionalCertificates: null, offline: true);
    }

    /// <summary>The host's options for one connection.</summary>
    public static SslServerAuthenticationOptions ServerOptions(SslStreamCertificateContext certificate) => new()
    {
        ServerCertificateContext = certificate,
        ClientCertificateRequired = false,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        EnabledSslProtocols = SslProtocols.None, // the system's choice: TLS 1.2 and 1.3
    };
}
