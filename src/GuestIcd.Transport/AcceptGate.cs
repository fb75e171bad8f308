using GuestIcd.Transport.Native;

namespace GuestIcd.Transport;

/// <summary>
/// The lifetime of a listener whose Accept blocks in poll() on the listener's own descriptors (the unix ring
/// and vm listeners): one Accept at a time; cancellation and Dispose, from any thread, wake it through an
/// eventfd; the descriptors are closed by whoever comes last, since a running Accept owns them until it returns.
/// </summary>
internal sealed unsafe class AcceptGate(int wakeFd, Action closeAll)
{
    private bool _accepting;
    private bool _disposed;
    private bool _closed;

    /// <summary>Polled by Accept beside the listener's descriptors; readable means "look again".</summary>
    public int WakeFd { get; } = wakeFd;

    /// <summary>Guards the gate's state; the listener may use it for what a session's end hands back.</summary>
    public object Lock { get; } = new();

    public bool IsDisposed => Volatile.Read(ref _disposed);

    /// <summary>Runs one Accept's <paramref name="body"/>, woken by <paramref name="cancellationToken"/> and Dispose;
    /// null once disposed. Throws when another thread is accepting.</summary>
    public T? Accept<T>(CancellationToken cancellationToken, Func<CancellationToken, T?> body) where T : class
    {
        if (!Enter())
            return null;
        try
        {
            using var registration = cancellationToken.Register(static s => ((AcceptGate)s!).Wake(), this);
            return body(cancellationToken);
        }
        finally
        {
            Exit();
        }
    }

    private bool Enter()
    {
        lock (Lock)
        {
            if (_disposed)
                return false;
            if (_accepting)
                throw new InvalidOperationException("Accept is already running on another thread");
            _accepting = true;
            return true;
        }
    }

    /// <summary>Ends an Accept; closes the descriptors when Dispose came meanwhile.</summary>
    private void Exit()
    {
        lock (Lock)
        {
            _accepting = false;
            if (_disposed)
                CloseLocked();
        }
    }

    public void Wake()
    {
        lock (Lock)
        {
            if (!_closed)
                Signal();
        }
    }

    /// <summary>Consumes a wake-up (cancellation, Dispose, or a stale one from an earlier Accept).</summary>
    public void Drain()
    {
        ulong value;
        Libc.read(WakeFd, &value, sizeof(ulong));
    }

    /// <summary>Closes the descriptors now, or, while an Accept runs, wakes it (and runs
    /// <paramref name="whileAccepting"/>) so that it closes them as it leaves.</summary>
    public void Dispose(Action? whileAccepting = null)
    {
        lock (Lock)
        {
            if (_disposed)
                return;
            Volatile.Write(ref _disposed, true);
            if (_accepting)
            {
                Signal();
                whileAccepting?.Invoke();
            }
            else
            {
                CloseLocked();
            }
        }
    }

    private void Signal()
    {
        ulong one = 1;
        Libc.write(WakeFd, &one, sizeof(ulong));
    }

    private void CloseLocked()
    {
        if (_closed)
            return;
        _closed = true;
        closeAll();
        Libc.close(WakeFd);
    }
}
