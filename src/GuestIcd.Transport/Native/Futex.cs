using System.Runtime.InteropServices;

namespace GuestIcd.Transport.Native;

/// <summary>Linux futexes on shared memory (not FUTEX_PRIVATE: the waiter and the waker are different processes
/// mapping the same memfd). glibc has no wrapper, so they go through syscall(2).</summary>
internal static unsafe partial class Futex
{
    const int FUTEX_WAIT = 0, FUTEX_WAKE = 1;

    /// <summary>SYS_futex of this architecture; 0 where it is not known (then nobody uses futexes).</summary>
    static readonly long s_number = RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => 202,
        Architecture.Arm64 or Architecture.RiscV64 or Architecture.LoongArch64 => 98,
        _ => 0,
    };

    public static bool Available => s_number != 0 && OperatingSystem.IsLinux();

    [StructLayout(LayoutKind.Sequential)]
    struct Timespec { public long Seconds, Nanoseconds; }

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall(long number, int* word, int op, int value, Timespec* timeout, int* word2, int value3);

    /// <summary>Sleeps while <c>*word == expected</c>, at most <paramref name="timeoutMs"/> (negative: no limit);
    /// returns at once when the word already differs. Wake-ups, timeouts and signals all just return: the caller
    /// re-checks its condition. A negative count of milliseconds must not reach the kernel: it refuses the
    /// timespec (EINVAL) at once, and a caller that loops on its condition then spins in syscalls.</summary>
    public static void Wait(int* word, int expected, int timeoutMs)
    {
        var ts = new Timespec { Seconds = timeoutMs / 1000, Nanoseconds = timeoutMs % 1000 * 1_000_000L };
        Syscall(s_number, word, FUTEX_WAIT, expected, timeoutMs < 0 ? null : &ts, null, 0);
    }

    /// <summary>Wakes every thread (of any process) waiting on <paramref name="word"/>.</summary>
    public static void WakeAll(int* word) => Syscall(s_number, word, FUTEX_WAKE, int.MaxValue, null, null, 0);
}
