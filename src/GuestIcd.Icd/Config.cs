namespace GuestIcd.Icd;

/// <summary>
/// The ICD's settings: an environment variable when it is set, else the system-wide file
/// <c>/etc/guesticd.conf</c> (another file with <c>GUESTICD_CONFIG=PATH</c>; <c>GUESTICD_CONFIG=</c> empty
/// reads none). A packaged guest has no environment to set for every application, so the file is what
/// configures it; the environment still wins so that one application can be pointed elsewhere.
/// </summary>
/// <remarks>
/// The file has one <c>key = value</c> per line; <c>#</c> starts a comment line. A key is the variable's
/// name without its <c>GUESTICD_</c> prefix, in any case, with <c>-</c> or <c>_</c>: <c>transport</c>,
/// <c>secret-file</c>, <c>log</c>, <c>heap-mb</c>, <c>connect-timeout-ms</c>… The full variable name is
/// accepted too. The file is read once, on first use, and never on a hot path.
/// </remarks>
internal static class Config
{
    public const string DefaultPath = "/etc/guesticd.conf";

    static readonly Dictionary<string, string> s_file = Read();

    /// <summary>The setting <paramref name="variable"/> (a full <c>GUESTICD_*</c> name): the environment's
    /// value when set and not empty, else the file's, else null.</summary>
    public static string? Get(string variable) =>
        Environment.GetEnvironmentVariable(variable) is { Length: > 0 } v ? v
        : s_file.TryGetValue(variable, out var f) ? f : null;

    /// <summary>What the file set, by full variable name (for messages and tests).</summary>
    public static IReadOnlyDictionary<string, string> FromFile => s_file;

    static Dictionary<string, string> Read()
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        string? path = Environment.GetEnvironmentVariable("GUESTICD_CONFIG") ?? DefaultPath;
        if (path.Length == 0) return values;
        string[] lines;
        try { lines = File.ReadAllLines(path); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException) { return values; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Log reads its level through this class: it cannot be used while this initialiser runs.
            Warn($"{path}: not read ({e.Message}); using the environment and defaults only");
            return values;
        }
        for (int i = 0; i < lines.Length; i++)
        {
            var line = lines[i].Trim();
            if (line.Length == 0 || line[0] == '#') continue;
            int eq = line.IndexOf('=');
            if (eq <= 0) { Warn($"{path}:{i + 1}: not key = value, ignored: {line}"); continue; }
            var key = line[..eq].Trim().Replace('-', '_').ToUpperInvariant();
            var value = line[(eq + 1)..].Trim();
            if (value.Length >= 2 && value[0] == '"' && value[^1] == '"') value = value[1..^1];
            if (!key.StartsWith("GUESTICD_", StringComparison.Ordinal)) key = "GUESTICD_" + key;
            if (key == "GUESTICD_CONFIG") { Warn($"{path}:{i + 1}: config cannot name another file, ignored"); continue; }
            values[key] = value;
        }
        return values;
    }

    static void Warn(string message)
    {
        try { Console.Error.WriteLine($"GuestIcd warn: {message}"); }
        catch { /* stderr closed */ }
    }
}
