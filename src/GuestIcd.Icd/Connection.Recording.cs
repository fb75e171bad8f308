using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;
using GuestIcd.Transport;

namespace GuestIcd.Icd;

/// <summary>The connection's side of guest-side recording (CommandBuffer.cs): recorded chunks join the connection's
/// queue under its send lock, for the copy only. Everything else about recording touches no shared state.</summary>
internal sealed unsafe partial class Connection
{
    /// <summary>Every command pool of this connection and the recorders of their command buffers.</summary>
    public readonly CommandPools CommandPools = new();

    /// <summary>The host speaks protocol 1.1 or later: command buffers record here and travel as
    /// <see cref="PrivateCommands.RecordedCommands"/>. Against a 1.0 host every vkCmd* is a message of its own.</summary>
    public bool Records => Host.Minor >= Handshake.RecordedCommandsMinor;

    public bool IsLost => _lost;

    /// <summary>Appends what <paramref name="rec"/> recorded and has not sent to the connection's queue (it travels
    /// with the next batch). Called by the submit that uses the command buffer, a primary that executes it, or the
    /// recording itself when it outgrows a chunk; concurrent submits of one command buffer send it once.</summary>
    public void FlushRecorded(Recorder rec)
    {
        lock (this)
        {
            if (rec.Writer.Position == 0) return;
            if (_lost) throw new DeviceLostException(_lostReason);
            try
            {
                RecordedCommands.Append(_writer, rec.Id, rec.Writer.Written);
                if (_writer.Position >= BatchBytes) SendQueued();
            }
            catch (Exception e) when (e is TransportClosedException or ProtocolException) { throw Lost("a command buffer's recording", e); }
            finally
            {
                rec.Writer.Reset();
                rec.KeepBytes = 0;
                rec.HostRecording = !rec.Ended;
            }
        }
    }

    /// <summary>A command that wants no reply, encoded with <paramref name="map"/> choosing the handles it creates
    /// (vkAllocateCommandBuffers: the pool makes command-buffer objects with recorders).</summary>
    public ulong CallWith(int command, ulong* args, IHandleMap map)
    {
        ref readonly var cd = ref Tables.Commands[command];
        if (cd.WantsReply) throw new InvalidOperationException($"{cd.Name} wants a reply");
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        lock (this)
        {
            if (_lost) throw new DeviceLostException(_lostReason);
            try
            {
                CommandCodec.EncodeRequest(command, args, _writer, map, caps);
                if (_writer.Position >= BatchBytes) SendQueued();
                return 0;
            }
            catch (Exception e) when (e is TransportClosedException or ProtocolException) { throw Lost(cd.Name, e); }
        }
    }
}
