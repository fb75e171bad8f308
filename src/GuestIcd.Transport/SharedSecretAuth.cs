using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Cryptography;
using GuestIcd.Transport.Native;

namespace GuestIcd.Transport;

/// <summary>
/// Mutual challenge–response on a fresh stream connection, before any protocol byte. The secret never
/// crosses the wire, only HMACs over both sides' fresh nonces, so a recorded exchange cannot be replayed
/// and a host that does not know the secret cannot pose as one.
/// </summary>
/// <remarks>
/// <code>
///   host → guest  48 B  "GICDAUTH" u16 version=1 u16 flags=0 u32 reserved=0 hostNonce[32]
///   guest → host  80 B  "GICDAUTH" u16 version=1 u16 flags=0 u32 reserved=0 guestNonce[32]
///                       HMAC-SHA256(secret, hostNonce ‖ guestNonce ‖ "GuestIcd auth v1 guest")
///   host → guest   1 B  status: 1 accepted, 0 wrong secret, 2 unsupported version/preamble
///                 32 B  (accepted only) HMAC-SHA256(secret, hostNonce ‖ guestNonce ‖ "GuestIcd auth v1 host")
/// </code>
/// The two labels differ so neither side's answer can be reflected back as the other's. The host
/// compares in constant time and, on a mismatch, sends the one status byte and closes. Under TLS this runs
/// inside the encrypted stream.
/// </remarks>
internal static class SharedSecretAuth
{
    public const ushort Version = 1;
    public const int NonceBytes = 32;
    public const int MacBytes = 32;
    public const int HelloBytes = 16 + NonceBytes;
    public const int AnswerBytes = 16 + NonceBytes + MacBytes;

    public const byte Accepted = 1;
    public const byte WrongSecret = 0;
    public const byte Unsupported = 2;

    // "GICDAUTH" little-endian
    private const ulong Magic = 0x4854554144434947;

    private static ReadOnlySpan<byte> GuestLabel => "GuestIcd auth v1 guest"u8;
    private static ReadOnlySpan<byte> HostLabel => "GuestIcd auth v1 host"u8;

    /// <summary>HMAC-SHA256(secret, hostNonce ‖ guestNonce ‖ label) into <paramref name="mac"/>.</summary>
    internal static void ComputeMac(ReadOnlySpan<byte> secret, ReadOnlySpan<byte> hostNonce, ReadOnlySpan<byte> guestNonce,
        bool guest, Span<byte> mac)
    {
        ReadOnlySpan<byte> label = guest ? GuestLabel : HostLabel;
        Span<byte> message = stackalloc byte[2 * NonceBytes + 32];
        hostNonce.CopyTo(message);
        guestNonce.CopyTo(message[NonceBytes..]);
        label.CopyTo(message[(2 * NonceBytes)..]);
        HMACSHA256.HashData(secret, message[..(2 * NonceBytes + label.Length)], mac);
    }

    private static void WriteHeader(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[8..], Version);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[10..], 0);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[12..], 0);
    }

    /// <summary>Null when the header is ours, else what is wrong with it.</summary>
    private static string? CheckHeader(ReadOnlySpan<byte> header, out ushort version)
    {
        version = BinaryPrimitives.ReadUInt16LittleEndian(header[8..]);
        if (BinaryPrimitives.ReadUInt64LittleEndian(header) != Magic)
            return "bad magic";
        if (version != Version)
            return $"authentication version {version}; this side speaks {Version}";
        return null;
    }

    // ================================================================== host

    /// <summary>Runs the host's side. Returns null when the guest proved it knows the secret, else the
    /// reason it was refused (worded to follow "it ..."); the caller then closes the connection.</summary>
    public static async Task<string?> ServeAsync(Stream stream, byte[] secret, CancellationToken cancellationToken)
    {
        byte[] hello = new byte[HelloBytes];
        byte[] answer = new byte[AnswerBytes];
        byte[] reply = new byte[1 + MacBytes];
        byte[] expected = new byte[MacBytes];
        try
        {
            WriteHeader(hello);
            RandomNumberGenerator.Fill(hello.AsSpan(16, NonceBytes));
            await stream.WriteAsync(hello, cancellationToken).ConfigureAwait(false);
            await stream.FlushAsync(cancellationToken).ConfigureAwait(false);

            await stream.ReadExactlyAsync(answer, cancellationToken).ConfigureAwait(false);
            if (CheckHeader(answer, out _) is { } problem)
            {
                reply[0] = Unsupported;
                await TrySendAsync(stream, reply.AsMemory(0, 1), cancellationToken).ConfigureAwait(false);
                return $"is not a GuestIcd guest or speaks another authentication protocol ({problem})";
            }
            ReadOnlySpan<byte> hostNonce = hello.AsSpan(16, NonceBytes);
            ReadOnlySpan<byte> guestNonce = answer.AsSpan(16, NonceBytes);
            ComputeMac(secret, hostNonce, guestNonce, guest: true, expected);
            if (!CryptographicOperations.FixedTimeEquals(expected, answer.AsSpan(16 + NonceBytes, MacBytes)))
            {
                reply[0] = WrongSecret;
                await TrySendAsync(stream, reply.AsMemory(0, 1), cancellationToken).ConfigureAwait(false);
                return "presented the wrong shared secret";
            }
            reply[0] = Accepted;
            ComputeMac(secret, hostNonce, guestNonce, guest: false, reply.AsSpan(1));
            await stream.WriteAsync(reply, cancellationToken).ConfigureAwait(false);
            await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
            return null;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(expected);
            CryptographicOperations.ZeroMemory(reply);
        }
    }

    private static async Task TrySendAsync(Stream stream, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        // The refusal is a courtesy so the guest can say why; a guest already gone changes nothing.
        try
        {
            await stream.WriteAsync(data, cancellationToken).ConfigureAwait(false);
            await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
        }
    }

    // ================================================================== guest

    /// <summary>
    /// Runs the guest's side on <paramref name="stream"/> (the plain socket stream or TLS over it) with
    /// every read bounded by <paramref name="deadline"/> through <paramref name="raw"/>'s read timeout.
    /// </summary>
    /// <param name="hostName">"hostsim at HOST:PORT"-style name for messages.</param>
    /// <exception cref="TransportClosedException">Refused, timed out, or the host is not ours; the message
    /// says which (never the secret).</exception>
    public static void Authenticate(Stream stream, SocketStream raw, byte[] secret, long deadline, int timeoutMs, string hostName)
    {
        Span<byte> hello = stackalloc byte[HelloBytes];
        Span<byte> answer = stackalloc byte[AnswerBytes];
        Span<byte> reply = stackalloc byte[1 + MacBytes];
        Span<byte> expected = stackalloc byte[MacBytes];
        try
        {
            Read(stream, raw, hello, deadline, timeoutMs, hostName, "waiting for its authentication challenge");
            if (CheckHeader(hello, out ushort version) is { } problem)
            {
                throw new TransportClosedException(version != Version && problem.StartsWith("auth", StringComparison.Ordinal)
                    ? $"{hostName} speaks {problem}"
                    : $"{hostName} is not a GuestIcd host: it sent no authentication challenge (does it expect TLS, or is it another service?)");
            }

            WriteHeader(answer);
            Span<byte> guestNonce = answer.Slice(16, NonceBytes);
            RandomNumberGenerator.Fill(guestNonce);
            ComputeMac(secret, hello.Slice(16, NonceBytes), guestNonce, guest: true, answer.Slice(16 + NonceBytes, MacBytes));
            try
            {
                stream.Write(answer);
                stream.Flush();
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
            {
                throw new TransportClosedException($"{hostName} closed the connection during authentication");
            }

            Read(stream, raw, reply[..1], deadline, timeoutMs, hostName, "waiting for its authentication verdict");
            switch (reply[0])
            {
                case Accepted:
                    break;
                case WrongSecret:
                    throw new TransportClosedException($"{hostName} refused the shared secret");
                case Unsupported:
                    throw new TransportClosedException($"{hostName} does not speak authentication version {Version}");
                default:
                    throw new TransportClosedException($"{hostName} answered authentication with an unknown status {reply[0]}");
            }
            Read(stream, raw, reply[1..], deadline, timeoutMs, hostName, "waiting for its proof of the secret");
            ComputeMac(secret, hello.Slice(16, NonceBytes), guestNonce, guest: false, expected);
            if (!CryptographicOperations.FixedTimeEquals(expected, reply[1..]))
                throw new TransportClosedException($"{hostName} accepted us but could not prove it knows the shared secret; not trusting it");
        }
        finally
        {
            CryptographicOperations.ZeroMemory(answer);
            CryptographicOperations.ZeroMemory(expected);
        }
    }

    private static void Read(Stream stream, SocketStream raw, Span<byte> buffer, long deadline, int timeoutMs, string hostName, string doing)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            int remaining = Libc.RemainingMs(deadline);
            if (remaining == 0)
                throw TimedOut(hostName, timeoutMs, doing);
            raw.ReadTimeout = remaining;
            int n;
            try
            {
                n = stream.Read(buffer[done..]);
            }
            catch (IOException e) when (SocketStream.IsTimeout(e))
            {
                throw TimedOut(hostName, timeoutMs, doing);
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
            {
                throw new TransportClosedException($"{hostName}: connection failed during authentication ({e.Message})");
            }
            if (n == 0)
                throw new TransportClosedException($"{hostName} closed the connection during authentication, {doing}");
            done += n;
        }
        raw.ReadTimeout = Timeout.Infinite;
    }

    private static TransportClosedException TimedOut(string hostName, int timeoutMs, string doing) =>
        new($"{hostName}: authentication timed out after {timeoutMs} ms, {doing}");
}
