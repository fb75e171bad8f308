using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;

namespace GuestIcd.HostSim;

/// <summary>Nice values of the supervisor's pool workers (see WorkerMain's WarmUpThread for why): started
/// below the supervisor, every thread back at the supervisor's value once the worker has its session.</summary>
internal static unsafe class WorkerPriority
{
    /// <summary>A pool worker's nice value while it starts and waits. Not 19: on a loaded host a worker at 19
    /// gets so little CPU that its start (about 160 ms of CPU) outlasts the supervisor's connect timeout;
    /// at 10 it weighs a tenth of a session's thread.</summary>
    public const int PoolNice = 10;

    /// <summary>What the worker's threads return to: the supervisor's nice value (GUESTICD_WORKER_NICE).</summary>
    static int Target => int.TryParse(Environment.GetEnvironmentVariable("GUESTICD_WORKER_NICE"), out int n) ? n : CurrentNice(0);

    static int CurrentNice(uint tid)
    {
        Marshal.SetLastPInvokeError(0);
        int nice = WorkerNative.getpriority(0, tid);
        return nice == -1 && WorkerNative.Errno != 0 ? 0 : nice;
    }

    /// <summary>Whether a process started from here below <paramref name="nice"/> can come back to it: with
    /// CAP_SYS_NICE, or where RLIMIT_NICE's hard limit lets the worker raise its soft limit far enough
    /// (Linux: a thread may lower its nice value down to 20 - RLIMIT_NICE).</summary>
    public static bool CanReturnTo(int nice)
    {
        var limit = default(WorkerNative.RLimit);
        if (WorkerNative.getrlimit(WorkerNative.RLIMIT_NICE, &limit) == 0 && limit.Max >= (ulong)(20 - nice)) return true;
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("CapEff:", StringComparison.Ordinal))
                    return (Convert.ToUInt64(line[7..].Trim(), 16) & (1UL << 23)) != 0; // CAP_SYS_NICE
        }
        catch (IOException) { }
        return false;
    }

    /// <summary>The supervisor's side: the nice value its background spawner starts pool workers at (its own
    /// where they could not come back).</summary>
    public static int PoolNiceFor(int supervisorNice) =>
        supervisorNice < PoolNice && CanReturnTo(supervisorNice) ? PoolNice : supervisorNice;

    /// <summary>At the worker's start: raises the soft RLIMIT_NICE so that its threads may return to the
    /// target (and the warm-up thread from 19), where the hard limit allows.</summary>
    public static void AllowReturn()
    {
        int target = Target;
        var limit = default(WorkerNative.RLimit);
        if (WorkerNative.getrlimit(WorkerNative.RLIMIT_NICE, &limit) != 0 || limit.Current >= (ulong)(20 - target)) return;
        var wanted = new WorkerNative.RLimit { Current = (ulong)(20 - target), Max = Math.Max(limit.Max, (ulong)(20 - target)) };
        if (WorkerNative.setrlimit(WorkerNative.RLIMIT_NICE, &wanted) == 0) return;
        wanted = new WorkerNative.RLimit { Current = Math.Min(limit.Max, (ulong)(20 - target)), Max = limit.Max };
        WorkerNative.setrlimit(WorkerNative.RLIMIT_NICE, &wanted);
    }

    /// <summary>Every thread of this process back at the target, the runtime's (GC, JIT, finalizer) and the
    /// warm-up's included; passes until one changes nothing, for threads started meanwhile.</summary>
    public static void RestoreAll(ILogger log)
    {
        int target = Target;
        for (int pass = 0; pass < 3; pass++)
        {
            bool changed = false;
            foreach (var dir in Directory.EnumerateDirectories("/proc/self/task"))
            {
                if (!uint.TryParse(Path.GetFileName(dir), out uint tid) || CurrentNice(tid) <= target) continue;
                if (WorkerNative.setpriority(0, tid, target) == 0) changed = true;
                else if (WorkerNative.Errno != 3 /* ESRCH: it has ended */)
                    log.LogDebug("worker: thread {Tid} stays below the session's priority ({Error})", tid, WorkerNative.Describe(WorkerNative.Errno));
            }
            if (!changed) return;
        }
    }
}
