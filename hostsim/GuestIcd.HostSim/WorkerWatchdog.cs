using System.Globalization;
using GuestIcd.Transport.Native;

namespace GuestIcd.HostSim;

/// <summary>
/// Tells the supervisor when a worker that should have died or exited is still there. A worker can hang
/// instead of dying: after heap corruption the runtime's crash handling can block (a fault inside malloc,
/// then a handler that needs the same lock), and the process then stays alive for good, holding its guest.
/// </summary>
/// <remarks>
/// <para>"Hung" is one of two things, and nothing else. (1) The worker's guest has gone (its connection
/// is closed) and the worker has not exited, nor begun to, within <see cref="ExitGraceMs"/>: nobody waits for what it is
/// doing, so killing it loses nothing. (2) A thread of the worker has been inside the handling of a fatal
/// signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT: the kernel blocks the signal while its handler runs)
/// for over <see cref="FaultStuckMs"/>: the process has faulted and failed to die; its memory is not to
/// be trusted whatever its other threads do.</para>
/// <para>A worker busy in a long driver call (a big vkCreateComputePipelines, a long wait loop) whose
/// guest is still connected is neither: it is never killed, however long it takes (not even when
/// stopped with SIGSTOP).</para>
/// <para>Threads that block every signal by design (Mesa's driver threads do) are told apart by SIGTERM:
/// a signal handler's mask adds its own signal, not SIGTERM.</para>
/// </remarks>
internal sealed unsafe class WorkerWatchdog(int pid)
{
    /// <summary>How long a worker whose guest left may take to tear down and exit. Generous: a worker that
    /// got its guest while still starting can take seconds on a loaded host (measured: over 2 s for a
    /// probe session at load 30 on 2 cores), and killing it early would only log a false "hung".</summary>
    public const int ExitGraceMs = 5000;
    /// <summary>How long a thread may stay in fatal-signal handling (a real crash ends in milliseconds).</summary>
    public const int FaultStuckMs = 1000;
    /// <summary>How often the supervisor looks.</summary>
    public const int PeriodMs = 250;

    const ulong FatalSignals = (1UL << (4 - 1)) | (1UL << (6 - 1)) | (1UL << (7 - 1)) | (1UL << (8 - 1)) | (1UL << (11 - 1));
    const ulong Sigterm = 1UL << (15 - 1);

    readonly Dictionary<int, long> _inHandlerSince = new();
    long _goneSince = -1;

    /// <summary>Why the worker counts as hung now, or null. <paramref name="guestGone"/>: its connection is closed.</summary>
    public string? Check(bool guestGone, long nowMs)
    {
        if (guestGone)
        {
            if (_goneSince < 0) _goneSince = nowMs;
            else if (nowMs - _goneSince >= ExitGraceMs && !Exiting())
                return $"its guest left {(nowMs - _goneSince) / 1000.0:F1} s ago and it has not exited";
        }
        return FaultStuck(nowMs);
    }

    /// <summary>The worker has called exit and the kernel is taking its address space down: its main thread
    /// is a zombie while the last thread unmaps. With a 1 GiB guest heap mapped that is CPU work, and on a
    /// busy 2-core host it took over 5 s of wall time (the last thread runnable in exit_mmap), which the
    /// watchdog took for a hang and "killed" in vain.</summary>
    bool Exiting()
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            int close = stat.LastIndexOf(')');
            return close >= 0 && close + 2 < stat.Length && stat[close + 2] is 'Z' or 'X';
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return true; } // gone already
    }

    string? FaultStuck(long nowMs)
    {
        string[] tasks;
        try { tasks = Directory.GetDirectories($"/proc/{pid}/task"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
        var seen = new HashSet<int>();
        string? why = null;
        foreach (var task in tasks)
        {
            if (!int.TryParse(Path.GetFileName(task), out int tid)) continue;
            ulong blocked = BlockedSignals(task);
            ulong fatal = blocked & FatalSignals;
            if (fatal == 0 || (blocked & Sigterm) != 0) continue;
            seen.Add(tid);
            if (!_inHandlerSince.TryGetValue(tid, out long since)) _inHandlerSince[tid] = since = nowMs;
            else if (nowMs - since >= FaultStuckMs && why is null)
                why = $"thread {tid} has been handling {Supervisor.SignalName(System.Numerics.BitOperations.TrailingZeroCount(fatal) + 1)} for {(nowMs - since) / 1000.0:F1} s without dying";
        }
        foreach (var tid in _inHandlerSince.Keys.Where(t => !seen.Contains(t)).ToList()) _inHandlerSince.Remove(tid);
        return why;
    }

    static ulong BlockedSignals(string task)
    {
        try
        {
            foreach (var line in File.ReadLines(task + "/status"))
                if (line.StartsWith("SigBlk:", StringComparison.Ordinal))
                    return ulong.TryParse(line.AsSpan(7).Trim(), NumberStyles.HexNumber, null, out var v) ? v : 0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return 0;
    }

    /// <summary>Whether the peer of a socket the supervisor keeps a copy of has hung up; reads nothing.</summary>
    public static bool PeerGone(int fd)
    {
        var pfd = new Libc.PollFd { fd = fd, events = Libc.POLLRDHUP };
        if (Libc.poll(&pfd, 1, 0) <= 0) return false;
        return (pfd.revents & (Libc.POLLERR | Libc.POLLHUP | Libc.POLLNVAL | Libc.POLLRDHUP)) != 0;
    }

}
