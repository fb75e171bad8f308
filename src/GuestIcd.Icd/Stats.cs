using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Wire;

namespace GuestIcd.Icd;

/// <summary>GUESTICD_STATS=1: what one connection cost, printed on stderr when it closes (with its instance,
/// or after the loader's probe): the messages sent and the commands recorded into command buffers, the
/// round trips by command (each one a place the application, or the ICD, needed the host's answer before it
/// could go on), the questions the query cache answered without one, the bytes each way and the time spent
/// waiting for replies. Off, it costs a null check; on, a few interlocked adds per batch, nothing allocated.</summary>
internal sealed class ConnectionStats
{
    public static readonly bool Enabled = Config.Get("GUESTICD_STATS") is "1" or "true" or "yes";

    /// <summary>Counters by wire id: the generated commands by their index, the private messages after them.</summary>
    static readonly int Slots = Tables.Commands.Length + 16;
    readonly long[] _messages = new long[Slots], _roundTrips = new long[Slots], _cached = new long[Slots];
    long _batches, _recorded, _bytesOut, _bytesIn, _waitTicks;
    readonly long _opened = Stopwatch.GetTimestamp();

    static int Slot(uint wireId)
    {
        int cmd = Tables.CommandOfId(wireId);
        if (cmd >= 0) return cmd;
        return wireId < 16 ? Tables.Commands.Length + (int)wireId : Tables.Commands.Length; // private ids are small
    }

    static string Name(int slot) => slot < Tables.Commands.Length ? Tables.Commands[slot].Name : (uint)(slot - Tables.Commands.Length) switch
    {
        Handshake.HelloCommand => "hello",
        PrivateCommands.AllocateSharedMemory => "AllocateSharedMemory",
        PrivateCommands.WriteMemory => "WriteMemory",
        PrivateCommands.ReadMemory => "ReadMemory",
        PrivateCommands.Features => "Features",
        PrivateCommands.Feedback => "Feedback",
        PrivateCommands.RecordedCommands => "RecordedCommands",
        var id => $"private message {id}",
    };

    /// <summary>A batch leaves for the host: its bytes, and each message in it by command.</summary>
    public void Sent(ReadOnlySpan<byte> batch)
    {
        Interlocked.Increment(ref _batches);
        Interlocked.Add(ref _bytesOut, batch.Length);
        for (int at = 0; at + MessageHeader.Size <= batch.Length;)
        {
            uint id = BinaryPrimitives.ReadUInt32LittleEndian(batch[at..]);
            Interlocked.Increment(ref _messages[Slot(id)]);
            at += MessageHeader.Padded(MessageHeader.Size + (int)BinaryPrimitives.ReadUInt32LittleEndian(batch[(at + 8)..]));
        }
    }

    public void RoundTrip(uint wireId) => Interlocked.Increment(ref _roundTrips[Slot(wireId)]);
    public void Cached(int command) => Interlocked.Increment(ref _cached[command]);
    public void Recorded() => Interlocked.Increment(ref _recorded);
    public void Received(int bytes) => Interlocked.Add(ref _bytesIn, bytes);
    public void Waited(long ticks) => Interlocked.Add(ref _waitTicks, ticks);

    public void Print(string transport)
    {
        long messages = _messages.Sum(), roundTrips = _roundTrips.Sum(), cached = _cached.Sum();
        double seconds = (double)(Stopwatch.GetTimestamp() - _opened) / Stopwatch.Frequency;
        var sb = new StringBuilder();
        sb.Append($"GuestIcd stats: {transport}, open {seconds:0.###} s: {messages:N0} messages sent in {_batches:N0} batches");
        sb.Append($" ({_recorded:N0} commands recorded into command buffers travel inside RecordedCommands)");
        sb.Append($"; {roundTrips:N0} round trips (the hello included), {cached:N0} questions answered from the query cache");
        sb.Append($"; {_bytesOut / 1024.0:N1} KiB sent, {_bytesIn / 1024.0:N1} KiB received");
        sb.Append($"; {1000.0 * _waitTicks / Stopwatch.Frequency:N1} ms waiting for replies\n");
        sb.Append("GuestIcd stats: round trips by command:");
        foreach (var (slot, n) in Ranked(_roundTrips)) sb.Append($" {Name(slot)} {n:N0}");
        sb.Append('\n');
        if (cached > 0)
        {
            sb.Append("GuestIcd stats: answered from the query cache:");
            foreach (var (slot, n) in Ranked(_cached)) sb.Append($" {Name(slot)} {n:N0}");
            sb.Append('\n');
        }
        sb.Append("GuestIcd stats: messages by command:");
        foreach (var (slot, n) in Ranked(_messages)) sb.Append($" {Name(slot)} {n:N0}");
        try { Console.Error.WriteLine(sb.ToString()); }
        catch { /* stderr closed: nothing else to tell */ }
    }

    static IEnumerable<(int Slot, long Count)> Ranked(long[] counts) =>
        counts.Select((n, i) => (i, n)).Where(x => x.n > 0).OrderByDescending(x => x.n).ThenBy(x => x.i);
}
