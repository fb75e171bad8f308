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
        lock (_send)
        {
            if (rec.Writer.Position == 0) return;
            if (_lost) throw new DeviceLostException(_lostReason);
            try
            {
                var all = rec.Writer.Written;
                while (all.Length > 0)
                {
                    // Whole messages only, up to a chunk (a single larger message goes alone).
                    int take = 0;
                    while (take < all.Length)
                    {
                        int next = MessageHeader.Size + MessageHeader.Read(all[take..]).WireBytesAfterHeader;
                        if (take > 0 && take + next > CommandBuffers.ChunkBytes) break;
                        take += next;
                    }
                    RecordedCommands.Append(_writer, rec.Id, all[..take]);
                    all = all[take..];
                    if (_writer.Position >= BatchBytes) SendQueued();
                }
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

    /// <summary>Queues a command whose result the guest does not wait for (vkResetCommandPool under protocol 1.1: it
    /// fails only for lack of memory, which the host reports as a lost device at the pool's next use).</summary>
    public void QueueWithoutReply(int command, ulong* args)
    {
        ref readonly var cd = ref Tables.Commands[command];
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        lock (_send)
        {
            if (_lost) throw new DeviceLostException(_lostReason);
            try
            {
                int at = _writer.BeginMessage(cd.Id, MessageFlags.None);
                CommandCodec.EncodeParams(command, args, _writer, Handles, caps);
                _writer.EndMessage(at);
                if (_writer.Position >= BatchBytes) SendQueued();
            }
            catch (Exception e) when (e is TransportClosedException or ProtocolException) { throw Lost(cd.Name, e); }
        }
    }

    /// <summary>A command that wants no reply, encoded with <paramref name="map"/> choosing the handles it creates
    /// (vkAllocateCommandBuffers: the pool makes command-buffer objects with recorders).</summary>
    public ulong CallWith(int command, ulong* args, IHandleMap map)
    {
        ref readonly var cd = ref Tables.Commands[command];
        if (cd.WantsReply) throw new InvalidOperationException($"{cd.Name} wants a reply");
        ulong* caps = stackalloc ulong[CommandCodec.MaxParams];
        lock (_send)
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
