using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using GuestIcd.Transport.Native;

namespace GuestIcd.Transport;

/// <summary>
/// The host's end of a byte-stream transport (TCP or vsock, optionally TLS), built on System.IO.Pipelines:
/// a <see cref="PipeReader"/> and a <see cref="PipeWriter"/> over the connection's stream.
/// </summary>
/// <remarks>
/// <para>The session thread calls this synchronously; each call waits for the pipe's ValueTask on a
/// reusable event instead of <c>AsTask()</c>, so a steady session allocates nothing here beyond what the
/// pipe itself does.</para>
/// <para><see cref="ReadExactly"/> is all-or-nothing (a timeout consumes nothing) for reads up to
/// <see cref="AllOrNothingLimit"/>; bigger reads consume as they go and throw on a stall after their first
/// byte, like the other transports. A read that times out is not cancelled: it stays pending and the next
/// read waits on it. Cancelling the stream read under it is what Windows hosts cannot afford: there a
/// cancelled overlapped receive may complete as an error (Wine: now and then), which ended live sessions
/// as "guest left".</para>
/// <para>Threading: one thread may write while another reads. <see cref="Shutdown"/> may come from any
/// thread; <see cref="Dispose"/> must not race with calls on other threads.</para>
/// </remarks>
public sealed class PipeTransport : ITransport
{
    /// <summary>Reads up to this size are buffered whole before they are copied out.</summary>
    public const int AllOrNothingLimit = 16 << 20;

    /// <summary>Unflushed bytes beyond this are sent by <see cref="Write"/> itself, so the pipe stays bounded.</summary>
    private const int FlushThreshold = 1 << 20;

    private readonly Socket _socket;
    private readonly Stream _stream;
    private readonly PipeReader _reader;
    private readonly PipeWriter _writer;
    /// <summary>Released once when the pipe's read in flight completes: a semaphore, so the relay can wait for a
    /// read that a timed-out handshake left pending without holding a pool thread.</summary>
    private readonly SemaphoreSlim _readDone = new(0, 1);
    private readonly ManualResetEventSlim _flushDone = new(false);
    private readonly Action _readSignal;
    private readonly Action _flushSignal;
    private ConfiguredValueTaskAwaitable<ReadResult>.ConfiguredValueTaskAwaiter _pendingRead;
    private bool _readPending;
    private CancellationTokenSource _flushTimeout = new();
    private ConnectionState _state;

    /// <param name="socket">The connected socket under <paramref name="stream"/>.</param>
    /// <param name="stream">The socket's stream, or TLS over it; disposing it disposes the socket.</param>
    internal PipeTransport(Socket socket, Stream stream, bool isTls, string description)
    {
        _socket = socket;
        _stream = stream;
        IsTls = isTls;
        Description = description;
        _reader = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 64 << 10, minimumReadSize: 16 << 10, leaveOpen: true));
        _writer = PipeWriter.Create(stream, new StreamPipeWriterOptions(minimumBufferSize: 64 << 10, leaveOpen: true));
        // A read that outlived Dispose's wait for it completes into a disposed semaphore: nothing waits any more.
        _readSignal = () => { try { _readDone.Release(); } catch (ObjectDisposedException) { } };
        _flushSignal = _flushDone.Set;
    }

    public string Description { get; }

    /// <summary>True when the stream runs through TLS.</summary>
    public bool IsTls { get; }

    /// <summary>How long a flush may wait for the guest to make room before the transport gives up with
    /// <see cref="TransportClosedException"/>; -1 (default) waits as long as the peer lives. A host sets
    /// this so that a guest which stops reading cannot park a host thread forever.</summary>
    public int WriteTimeoutMs { get; set; } = -1;

    public bool PeerClosed => _state.PeerClosed(_socket);

    // ================================================================== reading

    public bool ReadExactly(Span<byte> buffer, int timeoutMs)
    {
        _state.ThrowIfDisposed(Description);
        if (buffer.IsEmpty)
            return true;
        long deadline = Libc.Deadline(timeoutMs);
        int done = 0;
        while (true)
        {
            if (!TryReadOnce(deadline, out ReadResult result))
            {
                if (done == 0)
                    return false;
                _state.MarkBroken();
                throw new TransportClosedException(
                    $"{Description}: peer stalled for {timeoutMs} ms after {done} of {buffer.Length} bytes of one read; the stream is out of sync");
            }
            ReadOnlySequence<byte> data = result.Buffer;
            int need = buffer.Length - done;
            if (data.Length >= need)
            {
                data.Slice(0, need).CopyTo(buffer[done..]);
                _reader.AdvanceTo(data.GetPosition(need));
                return true;
            }
            if (result.IsCompleted || result.IsCanceled)
            {
                long have = done + data.Length;
                _reader.AdvanceTo(data.End);
                throw _state.Closed(Description, have > 0 ? $"after {have} of {buffer.Length} bytes of one read" : null);
            }
            if (buffer.Length > AllOrNothingLimit && !data.IsEmpty)
            {
                // Too big to hold whole in the pipe: consume as it comes; the stream is committed now.
                data.CopyTo(buffer[done..]);
                done += (int)data.Length;
                _reader.AdvanceTo(data.End);
                deadline = Libc.Deadline(timeoutMs);
                continue;
            }
            // Nothing consumed, everything examined: the next read waits for more bytes.
            _reader.AdvanceTo(data.Start, data.End);
        }
    }

    /// <summary>One pipe read, or false at the deadline with the read left pending for the next call.</summary>
    private bool TryReadOnce(long deadline, out ReadResult result)
    {
        try
        {
            if (!_readPending)
            {
                ValueTask<ReadResult> task = _reader.ReadAsync();
                if (task.IsCompleted)
                {
                    result = task.GetAwaiter().GetResult();
                    return true;
                }
                _pendingRead = task.ConfigureAwait(false).GetAwaiter();
                _readPending = true;
                _pendingRead.UnsafeOnCompleted(_readSignal);
            }
            if (!_readDone.Wait(Libc.RemainingMs(deadline)))
            {
                result = default;
                return false;
            }
            _readPending = false;
            result = _pendingRead.GetResult();
            return true;
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or InvalidOperationException or OperationCanceledException)
        {
            _readPending = false;
            throw _state.Closed(Description, e.Message);
        }
    }

    // ================================================================== writing

    public void Write(ReadOnlySpan<byte> data)
    {
        _state.ThrowIfUnusable(Description);
        _writer.Write(data);
        if (_writer.CanGetUnflushedBytes && _writer.UnflushedBytes >= FlushThreshold)
            Flush();
    }

    public void Flush()
    {
        _state.ThrowIfUnusable(Description);
        int timeoutMs = WriteTimeoutMs;
        if (timeoutMs >= 0)
            _flushTimeout.CancelAfter(timeoutMs);
        try
        {
            FlushResult result = Wait(_writer.FlushAsync(_flushTimeout.Token), _flushDone, _flushSignal);
            if (result.IsCanceled)
                throw NoRoom(timeoutMs);
        }
        catch (OperationCanceledException)
        {
            throw NoRoom(timeoutMs);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or InvalidOperationException)
        {
            throw _state.Closed(Description, e.Message);
        }
        finally
        {
            if (timeoutMs >= 0 && !_flushTimeout.TryReset())
            {
                _flushTimeout.Dispose();
                _flushTimeout = new CancellationTokenSource();
            }
        }
    }

    private TransportClosedException NoRoom(int timeoutMs)
    {
        // Part of the data may be on the wire: the stream cannot be resynchronised.
        _state.MarkBroken();
        return new TransportClosedException($"{Description}: peer made no room for {timeoutMs} ms; the stream is out of sync");
    }

    /// <summary>Blocks until <paramref name="task"/> completes, on a reusable event (no Task allocated).</summary>
    private static T Wait<T>(ValueTask<T> task, ManualResetEventSlim done, Action signal)
    {
        if (task.IsCompleted)
            return task.GetAwaiter().GetResult();
        done.Reset();
        ConfiguredValueTaskAwaitable<T>.ConfiguredValueTaskAwaiter awaiter = task.ConfigureAwait(false).GetAwaiter();
        awaiter.UnsafeOnCompleted(signal);
        done.Wait();
        return awaiter.GetResult();
    }

    // ================================================================== hand-off to another process

    /// <summary>A host transport over an already connected stream socket <paramref name="fd"/> (a worker
    /// process's end of the socketpair its parent relays a guest through). Takes ownership of the fd.</summary>
    public static PipeTransport OverSocket(int fd, string description)
    {
        var socket = new Socket(new SafeSocketHandle(fd, ownsHandle: true));
        return new PipeTransport(socket, new NetworkStream(socket, ownsSocket: false), isTls: false, description);
    }

    /// <summary>Relays plaintext both ways between this (authenticated, maybe TLS) connection and
    /// <paramref name="local"/> until either side ends; then ends both. Bytes already buffered from the
    /// guest go first. Used by a parent that authenticated the guest and lets a worker process serve it;
    /// nothing else may use this transport meanwhile. Disposes this transport and <paramref name="local"/>.</summary>
    public async Task RelayAsync(Socket local)
    {
        _state.ThrowIfUnusable(Description);
        Task toLocal = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    ReadResult result;
                    if (_readPending)
                    {
                        // A handshake read that timed out is still the pipe's one read in flight.
                        await _readDone.WaitAsync().ConfigureAwait(false);
                        _readPending = false;
                        result = _pendingRead.GetResult();
                    }
                    else
                        result = await _reader.ReadAsync().ConfigureAwait(false);
                    foreach (ReadOnlyMemory<byte> segment in result.Buffer)
                    {
                        for (int sent = 0; sent < segment.Length;)
                            sent += await local.SendAsync(segment[sent..], SocketFlags.None).ConfigureAwait(false);
                    }
                    _reader.AdvanceTo(result.Buffer.End);
                    if (result.IsCompleted || result.IsCanceled)
                        break;
                }
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or InvalidOperationException)
            {
            }
        });
        Task toGuest = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    int n = await local.ReceiveAsync(_writer.GetMemory(64 << 10), SocketFlags.None).ConfigureAwait(false);
                    if (n == 0)
                        break;
                    _writer.Advance(n);
                    FlushResult flushed = await _writer.FlushAsync().ConfigureAwait(false);
                    if (flushed.IsCompleted || flushed.IsCanceled)
                        break;
                }
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or InvalidOperationException)
            {
            }
        });
        await Task.WhenAny(toLocal, toGuest).ConfigureAwait(false);
        // Whichever side ended, the session is over: wake the other copy loop and release both ends.
        ConnectionState.ShutdownQuietly(local);
        Shutdown();
        _reader.CancelPendingRead();
        await Task.WhenAll(toLocal, toGuest).ConfigureAwait(false);
        local.Dispose();
        Dispose();
    }

    // ================================================================== lifetime

    /// <summary>Ends the connection: the peer sees EOF, and this side's blocked or later calls throw
    /// <see cref="TransportClosedException"/>. Safe from any thread.</summary>
    public void Shutdown() => _state.Shutdown(_socket);

    public void Dispose()
    {
        if (!_state.BeginDispose())
            return;
        ConnectionState.ShutdownQuietly(_socket);
        _stream.Dispose();
        _socket.Dispose();
        // A read left pending by a timeout fails now that the socket is gone; the pipe must not hand its
        // buffers back to the pool while that read may still fill one.
        if (_readPending && _readDone.Wait(1000))
        {
            _readPending = false;
            try { _pendingRead.GetResult(); }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or InvalidOperationException or OperationCanceledException) { }
        }
        // With an exception the writer drops what was not flushed instead of writing it to a closed stream.
        _writer.Complete(new ObjectDisposedException(Description));
        _reader.Complete();
        _flushTimeout.Dispose();
        _readDone.Dispose();
        _flushDone.Dispose();
    }
}
