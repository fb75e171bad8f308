using System.Text;

namespace GuestIcd.Transport;

/// <summary>
/// How a stream transport (TCP, vsock) proves both ends belong together: a shared secret, always, and
/// optionally TLS. The secret never crosses the wire (see <see cref="SharedSecretAuth"/>) and is never
/// printed: <see cref="ToString"/> shows only its length.
/// </summary>
/// <remarks>
/// Host: <see cref="CertificateFile"/> (PKCS#12, or PEM with the key inside it or in <see cref="KeyFile"/>)
/// turns TLS on. Guest: <see cref="UseTls"/> with the system's trust store, or a private CA
/// (<see cref="TrustedCaFile"/>), or a pinned certificate (<see cref="PinnedCertificate"/>: a SHA-256 or
/// SHA-1 thumbprint in hex, or a certificate file), which replaces chain and name checks.
/// </remarks>
public sealed record TransportSecurity
{
    /// <summary>Shortest secret accepted: without TLS an eavesdropper can test guesses offline against
    /// one recorded challenge and answer, so a short secret is a weak one.</summary>
    public const int MinSecretBytes = 16;

    /// <summary>The shared secret (raw bytes). Required for TCP and vsock.</summary>
    public required byte[] Secret { get; init; }

    /// <summary>Guest: wrap the connection in TLS. Implied by <see cref="TrustedCaFile"/> and
    /// <see cref="PinnedCertificate"/>; on the host, by <see cref="CertificateFile"/>.</summary>
    public bool UseTls { get; init; }

    /// <summary>Host: the certificate to present, PKCS#12 (no password) or PEM.</summary>
    public string? CertificateFile { get; init; }

    /// <summary>Host: the PEM private key, when <see cref="CertificateFile"/> is a PEM without it.</summary>
    public string? KeyFile { get; init; }

    /// <summary>Guest: PEM file of the CA certificate(s) the host's certificate must chain to, instead of
    /// the system's trust store.</summary>
    public string? TrustedCaFile { get; init; }

    /// <summary>Guest: the host's certificate, pinned: a SHA-256 (64 hex digits) or SHA-1 (40) thumbprint,
    /// or the path of a certificate file (PEM or DER).</summary>
    public string? PinnedCertificate { get; init; }

    /// <summary>Guest: the name the host's certificate must carry (and the SNI), when it is not the host
    /// name of the transport spec.</summary>
    public string? ServerName { get; init; }

    internal bool GuestWantsTls => UseTls || TrustedCaFile != null || PinnedCertificate != null;

    internal bool HostWantsTls => CertificateFile != null;

    /// <summary>
    /// The guest's settings from the environment: <c>GUESTICD_SECRET</c> (UTF-8 text) or
    /// <c>GUESTICD_SECRET_FILE</c>; <c>GUESTICD_TLS=1</c>, <c>GUESTICD_TLS_CA</c>, <c>GUESTICD_TLS_PIN</c>,
    /// <c>GUESTICD_TLS_SERVER_NAME</c>. Null when no secret is configured.
    /// </summary>
    /// <exception cref="ArgumentException">Both secret variables are set, the file cannot be read, or the
    /// secret is too short.</exception>
    public static TransportSecurity? FromEnvironment() => FromEnvironment(Environment.GetEnvironmentVariable);

    /// <summary><see cref="FromEnvironment()"/> with the variables looked up through <paramref name="getVariable"/>.</summary>
    public static TransportSecurity? FromEnvironment(Func<string, string?> getVariable)
    {
        ArgumentNullException.ThrowIfNull(getVariable);
        string? text = NullIfEmpty(getVariable("GUESTICD_SECRET"));
        string? file = NullIfEmpty(getVariable("GUESTICD_SECRET_FILE"));
        if (text != null && file != null)
            throw new ArgumentException("set only one of GUESTICD_SECRET and GUESTICD_SECRET_FILE");
        byte[] secret;
        if (file != null)
            secret = ReadSecretFile(file, "GUESTICD_SECRET_FILE");
        else if (text != null)
            secret = CheckLength(Encoding.UTF8.GetBytes(text), "GUESTICD_SECRET");
        else
            return null;

        string? tls = NullIfEmpty(getVariable("GUESTICD_TLS"));
        return new TransportSecurity
        {
            Secret = secret,
            UseTls = tls is "1" or "true" or "yes" or "on",
            TrustedCaFile = NullIfEmpty(getVariable("GUESTICD_TLS_CA")),
            PinnedCertificate = NullIfEmpty(getVariable("GUESTICD_TLS_PIN")),
            ServerName = NullIfEmpty(getVariable("GUESTICD_TLS_SERVER_NAME")),
        };
    }

    /// <summary>The host's settings from its command line (<c>--secret-file</c>, <c>--tls-cert</c>,
    /// <c>--tls-key</c>). The certificate itself is loaded when a listener starts.</summary>
    /// <exception cref="ArgumentException">The secret file cannot be read or is too short, or a key
    /// was given without a certificate.</exception>
    public static TransportSecurity ForHost(string secretFile, string? certificateFile = null, string? keyFile = null)
    {
        ArgumentNullException.ThrowIfNull(secretFile);
        if (keyFile != null && certificateFile == null)
            throw new ArgumentException("--tls-key needs --tls-cert");
        return new TransportSecurity
        {
            Secret = ReadSecretFile(secretFile, "--secret-file"),
            CertificateFile = certificateFile,
            KeyFile = keyFile,
            UseTls = certificateFile != null,
        };
    }

    /// <summary>Reads a secret file. Trailing CR/LF are dropped, so a file written by <c>echo</c> and the
    /// same text in <c>GUESTICD_SECRET</c> give the same secret.</summary>
    public static byte[] ReadSecretFile(string path, string what = "secret file")
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            // The path is fine to name; the content never is.
            throw new ArgumentException($"{what} '{path}' cannot be read: {e.Message}");
        }
        int length = bytes.Length;
        while (length > 0 && bytes[length - 1] is (byte)'\n' or (byte)'\r')
            length--;
        if (length != bytes.Length)
        {
            byte[] trimmed = bytes[..length];
            Array.Clear(bytes);
            bytes = trimmed;
        }
        return CheckLength(bytes, $"{what} '{path}'");
    }

    /// <summary>Throws unless the secret is long enough; <paramref name="what"/> names where it came from.</summary>
    internal void Validate(string what)
    {
        if (Secret is null || Secret.Length == 0)
            throw new ArgumentException($"{what}: no shared secret configured");
        CheckLength(Secret, what);
    }

    private static byte[] CheckLength(byte[] secret, string what)
    {
        if (secret.Length < MinSecretBytes)
            throw new ArgumentException($"{what}: the shared secret is {secret.Length} bytes; at least {MinSecretBytes} are required");
        return secret;
    }

    private static string? NullIfEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    // Records print every property; the secret must never reach a log line.
    private bool PrintMembers(StringBuilder builder)
    {
        builder.Append("Secret = <").Append(Secret?.Length ?? 0).Append(" bytes, hidden>");
        builder.Append(", UseTls = ").Append(UseTls);
        if (CertificateFile != null)
            builder.Append(", CertificateFile = ").Append(CertificateFile);
        if (KeyFile != null)
            builder.Append(", KeyFile = ").Append(KeyFile);
        if (TrustedCaFile != null)
            builder.Append(", TrustedCaFile = ").Append(TrustedCaFile);
        if (PinnedCertificate != null)
            builder.Append(", PinnedCertificate = ").Append(PinnedCertificate);
        if (ServerName != null)
            builder.Append(", ServerName = ").Append(ServerName);
        return true;
    }
}
