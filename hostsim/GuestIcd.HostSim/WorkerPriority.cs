using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using GuestIcd.Transport.Native;

namespace GuestIcd.HostSim;

/// <summary>Nice values of a worker (see WorkerMain's WarmUpThread for why): its warm-up thread drops to 19,
/// and every thread returns to the worker's own nice value once it has its session, the runtime's and the
/// driver's threads that the warm-up started included (they inherited its 19).</summary>
internal static unsafe class WorkerPriority
{
    /// <summary>The worker's nice value at its start (the supervisor's), which every thread returns to.</summary>
    static int s_target;

    static int CurrentNice(uint tid)
    {
        Marshal.SetLastPInvokeError(0);
        int nice = WorkerNative.getpriority(0, tid);
        return nice == -1 && Libc.Errno != 0 ? 0 : nice;
    }

    /// <summary>At the worker's start: remembers its nice value and lets its threads return to it from 19
    /// (RLIMIT_NICE: a thread may lower its nice value only down to 20 - the limit without CAP_SYS_NICE; the
    /// soft limit is raised where the hard limit allows).</summary>
    public static void AllowReturn()
    {
        s_target = CurrentNice(0);
        var limit = default(WorkerNative.RLimit);
        if (WorkerNative.getrlimit(WorkerNative.RLIMIT_NICE, &limit) != 0 || limit.Current >= (ulong)(20 - s_target)) return;
        var wanted = new WorkerNative.RLimit { Current = (ulong)(20 - s_target), Max = Math.Max(limit.Max, (ulong)(20 - s_target)) };
        if (WorkerNative.setrlimit(WorkerNative.RLIMIT_NICE, &wanted) == 0) return;
        wanted = new WorkerNative.RLimit { Current = Math.Min(limit.Max, (ulong)(20 - s_target)), Max = limit.Max };
        WorkerNative.setrlimit(WorkerNative.RLIMIT_NICE, &wanted);
    }

    /// <summary>Every thread of this process back at the worker's priority, the runtime's (GC, JIT,
    /// finalizer) and the warm-up's included; passes over /proc/self/task until one changes nothing, for
    /// threads started meanwhile.</summary>
    public static void RestoreAll(ILogger log)
    {
        int nice = s_target;
        for (int pass = 0; pass < 3; pass++)
        {
            bool changed = false;
            foreach (var dir in Directory.EnumerateDirectories("/proc/self/task"))
            {
                if (!uint.TryParse(Path.GetFileName(dir), out uint tid) || CurrentNice(tid) == nice) continue;
                if (WorkerNative.setpriority(0, tid, nice) == 0) changed = true;
                else if (Libc.Errno != 3 /* ESRCH: it has ended */)
                    log.LogDebug("worker: thread {Tid} stays at nice {Nice} ({Error})", tid, CurrentNice(tid), Libc.Describe(Libc.Errno));
            }
            if (!changed) return;
        }
    }
}
