using System.Runtime.InteropServices;
using GuestIcd.Protocol;

namespace GuestIcd.HostSim;

/// <summary>A session's figures where the supervisor can read them while the session runs: in the worker's
/// shared status page (<see cref="WorkerStatus.Counters"/>), or in memory of this process for an in-process
/// session. The session stores its figures here after each message (plain 8-byte stores: no allocation, no
/// system call); readers (<c>status</c>, <c>--metrics</c>) take each field with a volatile read. A field may
/// be one message behind another, never torn.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct SessionCounters
{
    public long Commands;
    public long BytesIn;
    public long BytesOut;
    /// <summary>Replies sent: each is one round trip the guest waited for.</summary>
    public long RoundTrips;
    /// <summary>Commands answered with a negative VkResult, and the error that ended the session.</summary>
    public long Errors;
    public long LiveObjects;
    /// <summary>Device memory the session holds (driver allocations and imported shared-heap ranges).</summary>
    public long MemoryBytes;
    /// <summary>The guest's shared heap mapped on the host (0 for transports without one).</summary>
    public long HeapBytes;
    /// <summary><see cref="SessionEnd"/>: 0 while the session runs.</summary>
    public long End;
    /// <summary><see cref="ProtocolErrorKind"/> of the error that ended the session, when it was one.</summary>
    public long ProtocolError;

    /// <summary>Where sessions nobody watches store their figures (replay, warm-up, the fuzzer): nobody reads it.</summary>
    public static readonly unsafe SessionCounters* Sink = (SessionCounters*)NativeMemory.AllocZeroed((nuint)sizeof(SessionCounters));

    public static unsafe SessionCounters Read(SessionCounters* c) => new()
    {
        Commands = Volatile.Read(ref c->Commands),
        BytesIn = Volatile.Read(ref c->BytesIn),
        BytesOut = Volatile.Read(ref c->BytesOut),
        RoundTrips = Volatile.Read(ref c->RoundTrips),
        Errors = Volatile.Read(ref c->Errors),
        LiveObjects = Volatile.Read(ref c->LiveObjects),
        MemoryBytes = Volatile.Read(ref c->MemoryBytes),
        HeapBytes = Volatile.Read(ref c->HeapBytes),
        End = Volatile.Read(ref c->End),
        ProtocolError = Volatile.Read(ref c->ProtocolError),
    };
}

/// <summary>How a session ended, as its worker records it (the supervisor adds the ends it sees itself).</summary>
internal enum SessionEnd : long { Running, Disconnected, TransportClosed, ProtocolError, InternalError }

/// <summary>What kind of rule a guest broke, for <c>guesticd_protocol_errors_total{kind}</c>.</summary>
internal enum ProtocolErrorKind : long { None, Hello, UnknownCommand, TooLarge, Truncated, BadHandle, BadStructure, Validation, Invalid }

internal static class ProtocolErrors
{
    public static string Name(ProtocolErrorKind k) => k switch
    {
        ProtocolErrorKind.Hello => "hello",
        ProtocolErrorKind.UnknownCommand => "unknown_command",
        ProtocolErrorKind.TooLarge => "too_large",
        ProtocolErrorKind.Truncated => "truncated",
        ProtocolErrorKind.BadHandle => "bad_handle",
        ProtocolErrorKind.BadStructure => "bad_structure",
        ProtocolErrorKind.Validation => "validation",
        _ => "invalid",
    };

    public static readonly ProtocolErrorKind[] All =
        [ProtocolErrorKind.Hello, ProtocolErrorKind.UnknownCommand, ProtocolErrorKind.TooLarge, ProtocolErrorKind.Truncated,
         ProtocolErrorKind.BadHandle, ProtocolErrorKind.BadStructure, ProtocolErrorKind.Validation, ProtocolErrorKind.Invalid];

    /// <summary>Sorts a <see cref="ProtocolException"/>'s message (the decoder's and gate's wording) into a
    /// kind; once per session, at its end.</summary>
    public static ProtocolErrorKind Classify(string message)
    {
        bool Has(string s) => message.Contains(s, StringComparison.OrdinalIgnoreCase);
        if (Has("unknown command") || Has("not available on this host")) return ProtocolErrorKind.UnknownCommand;
        if (Has("exceeds") || Has("quota") || Has("too large") || Has("at most")) return ProtocolErrorKind.TooLarge;
        if (Has("cut short") || Has("truncated") || Has("past the end")) return ProtocolErrorKind.Truncated;
        if (Has("validation")) return ProtocolErrorKind.Validation;
        if (Has("pNext") || Has("sType") || Has("does not extend")) return ProtocolErrorKind.BadStructure;
        if (Has("handle") || Has("NULL")) return ProtocolErrorKind.BadHandle;
        return ProtocolErrorKind.Invalid;
    }
}

internal sealed unsafe partial class Session
{
    /// <summary>Where this session's figures are published (<see cref="SessionCounters"/>).</summary>
    public SessionCounters* Counters = SessionCounters.Sink;

    public long BytesOut, VulkanErrors;

    /// <summary>An in-process session's figures, where <c>status</c> reads them.</summary>
    public void ReportTo(LiveSession live) => Counters = live.OwnCounters();

    /// <summary>After each message: what <c>status</c> and <c>--metrics</c> show.</summary>
    void Publish()
    {
        var c = Counters;
        c->Commands = Commands;
        c->BytesIn = BytesIn;
        c->BytesOut = BytesOut;
        c->RoundTrips = Replies;
        c->Errors = Errors + VulkanErrors;
        c->LiveObjects = _objects.GuestCount;
        c->MemoryBytes = (long)_memoryBytes;
        c->HeapBytes = (long)_heapBytes;
    }

    /// <summary>At the end of <see cref="Run"/>: the last figures and how the session ended.</summary>
    void PublishEnd(string end)
    {
        Publish();
        var (kind, protocol) = end switch
        {
            _ when end.StartsWith("protocol error: ", StringComparison.Ordinal) => (SessionEnd.ProtocolError, ProtocolErrors.Classify(end)),
            _ when end.StartsWith("internal error: ", StringComparison.Ordinal) => (SessionEnd.InternalError, ProtocolErrorKind.None),
            _ when end.StartsWith("transport closed: ", StringComparison.Ordinal) => (SessionEnd.TransportClosed, ProtocolErrorKind.None),
            _ => (SessionEnd.Disconnected, ProtocolErrorKind.None),
        };
        Counters->ProtocolError = (long)protocol;
        Volatile.Write(ref Counters->End, (long)kind);
    }

    /// <summary>In <see cref="RunMessage"/>: a command the host answered with an error counts as one.</summary>
    void CountResult(int cmd, ulong result)
    {
        if (Tables.Commands[cmd].Return == GuestIcd.Protocol.Codec.ReturnKind.VkResult && (int)(uint)result < 0) VulkanErrors++;
    }
}
