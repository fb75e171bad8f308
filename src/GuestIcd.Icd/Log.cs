namespace GuestIcd.Icd;

/// <summary>One-line diagnostics on stderr, prefixed so they can be told apart from the application's.
/// GUESTICD_LOG=error|warn|info|debug (default warn; or log = ... in /etc/guesticd.conf, Config.cs).</summary>
internal static class Log
{
    public enum Level { Error, Warn, Info, Debug }

    static readonly Level s_level = (Config.Get("GUESTICD_LOG") ?? "warn").ToLowerInvariant() switch
    {
        "error" => Level.Error, "info" => Level.Info, "debug" => Level.Debug, _ => Level.Warn,
    };

    public static bool Enabled(Level l) => l <= s_level;

    public static void Write(Level l, string message)
    {
        if (!Enabled(l)) return;
        try { Console.Error.WriteLine($"GuestIcd {l.ToString().ToLowerInvariant()}: {message}"); }
        catch { /* stderr closed: nothing else to tell */ }
    }

    public static void Error(string m) => Write(Level.Error, m);
    public static void Warn(string m) => Write(Level.Warn, m);
    public static void Info(string m) => Write(Level.Info, m);
    public static void Debug(string m) => Write(Level.Debug, m);
}
