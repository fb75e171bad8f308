using System.Threading;

namespace GuestIcd.Icd;

/// <summary>A session outlives its instance for a moment. Each connection is one host session, and a new one
/// costs a worker process hand-over and its driver's first instance (hundreds of milliseconds once hostsim's
/// warm pool is drained, against ~10 ms for lavapipe's whole instance + device creation), while the next
/// vkCreateInstance of the same process — test suites, tools that probe and then work, applications that
/// restart their renderer — only needs a session that has no objects left. So vkDestroyInstance keeps its
/// connection as the spare the next vkCreateInstance takes (as the loader's probe connection is kept), for
/// <c>GUESTICD_SESSION_KEEP_MS</c> milliseconds (opt-in, 0 by default until the whole suite has run with it on; 2000 is what the README measured), and only where the application destroyed every device
/// first, as it must: nothing of the old instance is left for the new one to inherit on either side (the host
/// already released the instance and everything it owned).</summary>
internal static unsafe partial class Entry
{
    static Timer? s_spareTimer;

    static int SessionKeepMs =>
        int.TryParse(Config.Get("GUESTICD_SESSION_KEEP_MS"), out var ms) && ms >= 0 ? ms : 0;

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
            s_spareTimer?.Dispose();
            s_spareTimer = new Timer(static state => DropSpare((Connection)state!), c, keepMs, Timeout.Infinite);
        }
        return true;
    }

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
