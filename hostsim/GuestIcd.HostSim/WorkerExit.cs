using System.Diagnostics;
using GuestIcd.Transport.Native;

namespace GuestIcd.HostSim;

/// <summary>Whether a worker has exited, and how, without waiting on .NET's reaping first. Reaping a worker
/// can take seconds of kernel time on a loaded host (the supervisor's SIGCHLD thread seen in waitpid's
/// release_task → proc_invalidate_siblings_dcache → shrink_dcache_parent for 8 s, with the old supervisor
/// too), and .NET's <see cref="Process.WaitForExit(int)"/> waits for that under the process's lock; the
/// supervisor meanwhile kept the dead worker's guest socket, so the guest waited for a host that was gone.
/// A pidfd turns readable the moment the worker is dead, before it is reaped; the supervisor releases the
/// guest then, and reads the status afterwards: from the zombie without reaping it (waitid with WNOWAIT;
/// the reaping stays .NET's), else from .NET once its reaping is done.</summary>
internal sealed unsafe class WorkerExit : IDisposable
{
    readonly Process _process;
    readonly int _pidfd;

    public WorkerExit(Process process)
    {
        _process = process;
        try { _pidfd = WorkerNative.pidfd_open(process.Id, 0); }
        catch (EntryPointNotFoundException) { _pidfd = -1; }
    }

    /// <summary>True once the worker is dead; false after <paramref name="timeoutMs"/> (-1: no limit).</summary>
    public bool Wait(int timeoutMs)
    {
        if (_pidfd < 0) return _process.WaitForExit(timeoutMs);
        var pfd = new Libc.PollFd { fd = _pidfd, events = Libc.POLLIN };
        int r = Libc.poll(&pfd, 1, timeoutMs);
        return r > 0 || (r < 0 && Libc.Errno != Libc.EINTR && _process.WaitForExit(timeoutMs));
    }

    /// <summary>After <see cref="Wait"/>: the exit code as .NET reports it (128 + N for signal N); -1 where
    /// the status was lost.</summary>
    public int Code()
    {
        byte* info = stackalloc byte[128];
        new Span<byte>(info, 128).Clear();
        if (WorkerNative.waitid(WorkerNative.P_PID, (uint)_process.Id, info, WorkerNative.WEXITED | WorkerNative.WNOHANG | WorkerNative.WNOWAIT) == 0
            && *(int*)(info + 16) == _process.Id)
        {
            int status = *(int*)(info + 24);
            return *(int*)(info + 8) == WorkerNative.CLD_EXITED ? status : 128 + status;
        }
        return _process.WaitForExit(30_000) ? _process.ExitCode : -1;
    }

    public void Dispose()
    {
        if (_pidfd >= 0) Libc.close(_pidfd);
    }
}
