using System.Runtime.InteropServices;
using System.Threading;

namespace GuestIcd.Icd;

/// <summary>A session outlives its instance for a moment. Each connection is one host session, and a new one
/// costs a worker process hand-over and its driver's first instance (hundreds of milliseconds once hostsim's
/// warm pool is drained, against ~10 ms for lavapipe's whole instance + device creation), while the next
/// vkCreateInstance of the same process — test suites, tools that probe and then work, applications that
/// restart their renderer — only needs a session that has no objects left. So vkDestroyInstance keeps its
/// connection as the spare the next vkCreateInstance takes (as the loader's probe connection is kept), for
/// <c>GUESTICD_SESSION_KEEP_MS</c> milliseconds (default <see cref="DefaultKeepMs"/>; 0 turns it off), and only where the application destroyed every device
/// first, as it must: nothing of the old instance is left for the new one to inherit on either side (the host
/// already released the instance and everything it owned).</summary>
internal static unsafe partial class Entry
{
    static Timer? s_spareTimer;

    static int SessionKeepMs =>
        int.TryParse(Config.Get("GUESTICD_SESSION_KEEP_MS"), out var ms) && ms >= 0 ? ms : DefaultKeepMs;

    /// <summary>Long enough for a tool's probe-then-work or a test suite's next case, short enough that an
    /// application which is done with Vulkan gives its host worker back soon.</summary>
    const int DefaultKeepMs = 2000;

    static bool KeepForNextInstance(Connection c)
    {
        int keepMs = SessionKeepMs;
        if (keepMs == 0 || !c.Usable || !c.Handles.OnlyInstancesLeft) return false;
        try { c.FlushQueued(); }
        catch (DeviceLostException) { return false; }
        lock (s_probeLock)
        {
            if (s_spare is not null) return false;
            c.Handles.FreeAll();
            // The process may exit before the next instance comes: its figures are printed now.
            c.PrintStats();
            s_spare = c;
            EnsureExitHook();
            s_spareTimer?.Dispose();
            s_spareTimer = new Timer(static state => DropSpare((Connection)state!), c, keepMs, Timeout.Infinite);
        }
        return true;
    }

    static int s_exitHook;

    /// <summary>A process that exits with a spare says goodbye on it: a host asleep on the ring's futex is not
    /// woken by the socket closing, and would see the session end only at its next liveness check (up to a
    /// quarter of a second later; the package test's service log missed it once). Registered with
    /// __cxa_atexit: this library is never unloaded (NODELETE), so the handler outlives every dlclose.</summary>
    static void EnsureExitHook()
    {
        if (Interlocked.Exchange(ref s_exitHook, 1) != 0) return;
        cxa_atexit(&OnProcessExit, 0, 0);
    }

    [UnmanagedCallersOnly]
    static void OnProcessExit(nint _)
    {
        // Other threads still run during exit(): never wait on a lock one of them may hold.
        if (!Monitor.TryEnter(s_probeLock, 100)) return;
        Connection? c;
        try { c = s_spare; s_spare = null; }
        finally { Monitor.Exit(s_probeLock); }
        try { c?.Dispose(); }
        catch (Exception) { }
    }

    [LibraryImport("libc", EntryPoint = "__cxa_atexit")]
    private static partial int cxa_atexit(delegate* unmanaged<nint, void> func, nint arg, nint dsoHandle);

    /// <summary>No instance came: the session ends, and its worker goes back to hostsim.</summary>
    static void DropSpare(Connection c)
    {
        lock (s_probeLock)
        {
            if (s_spare != c) return;
            s_spare = null;
        }
        c.Dispose();
    }
}
