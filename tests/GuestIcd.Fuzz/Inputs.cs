using GuestIcd.HostSim;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Wire;

namespace GuestIcd.Fuzz;

/// <summary>
/// What one fuzzer input means. The first byte picks the mode, so one corpus (and AFL's splicing
/// between its files) mixes all three:
///   0: a raw guest stream, hello included (a capture file's header is accepted after the mode byte);
///   1: raw messages after a well-formed hello, so mutations land on commands and not on the hello;
///   2: a program of commands built with the project's encoder (<see cref="ProgramBuilder"/>).
/// </summary>
internal static class Inputs
{
    public const byte Raw = 0, AfterHello = 1, Structured = 2;

    static readonly byte[] s_hello = BuildHello();

    static byte[] BuildHello()
    {
        using var w = new WireWriter();
        var all = Tables.Commands.Where(c => c.OnWire).Select(c => c.Id).ToArray();
        Handshake.Write(new Hello(Handshake.ProtocolMajor, Handshake.ProtocolMinor, Tables.RegistryVersion, "fuzz", all, []), w);
        return w.Written.ToArray();
    }

    /// <summary>The bytes hostsim reads for this input, and the shared heap size it should offer.</summary>
    public static (ReadOnlyMemory<byte> Stream, long HeapBytes) ToStream(byte[] input)
    {
        if (input.Length == 0) return (ReadOnlyMemory<byte>.Empty, 0);
        var rest = input.AsMemory(1);
        switch (input[0] % 3)
        {
            case Raw:
            {
                // A damaged capture (its records carry checksums) is fuzzed as the bytes it is, not refused.
                try
                {
                    var (stream, heap) = CaptureFormat.Parse(rest.ToArray());
                    return (stream, heap > 0 ? heap : DefaultHeap);
                }
                catch (InvalidDataException) { return (rest, DefaultHeap); }
            }
            case AfterHello:
            {
                var s = new byte[s_hello.Length + rest.Length];
                s_hello.CopyTo(s, 0);
                rest.Span.CopyTo(s.AsSpan(s_hello.Length));
                return (s, DefaultHeap);
            }
            default:
                return (ProgramBuilder.Build(rest), DefaultHeap);
        }
    }

    /// <summary>The ICD's default shared heap size, so captured AllocateSharedMemory ranges stay inside it.</summary>
    public const long DefaultHeap = 1L << 30;

    /// <summary>A capture as the two raw modes: whole (the hello is fuzzed too) and after its hello.</summary>
    public static IEnumerable<(string Suffix, byte[] Input)> FromCapture(byte[] capture)
    {
        var (stream, _) = CaptureFormat.Parse(capture);
        yield return ("raw", [Raw, .. stream.Span]);
        var s = stream.Span;
        if (s.Length < MessageHeader.Size) yield break;
        var h = MessageHeader.Read(s);
        int helloBytes = MessageHeader.Size + h.WireBytesAfterHeader;
        if (s.Length > helloBytes) yield return ("msgs", [AfterHello, .. s[helloBytes..]]);
    }
}
