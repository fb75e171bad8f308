using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging;

namespace GuestIcd.HostSim;

/// <summary>
/// What `serve --config FILE` sets: the settings a service keeps in /etc/guesticd/hostsim.conf rather than
/// on its unit's command line, its "quotas" (Quotas.cs) among them. An option given on the command line
/// wins over the file. JSON with comments:
/// <code>
/// { "listen": ["unix:/run/guesticd/hostsim.sock"], "device": "llvmpipe", "logLevel": "Information",
///   "secretFile": "/etc/guesticd/secret", "tlsCert": null, "tlsKey": null, "inProcess": false,
///   "warmWorkers": 2, "quotas": { ... } }
/// </code>
/// </summary>
internal sealed record ServeConfig
{
    public static readonly ServeConfig None = new();

    public string[]? Listen { get; init; }
    public string? Device { get; init; }
    public LogLevel? LogLevel { get; init; }
    public string? SecretFile { get; init; }
    public string? TlsCert { get; init; }
    public string? TlsKey { get; init; }
    public bool? InProcess { get; init; }
    public int? WarmWorkers { get; init; }
    /// <summary>The "quotas" section; what it leaves out keeps its default.</summary>
    public Quotas? Quotas { get; init; }

    static readonly JsonSerializerOptions s_json = new()
    {
        PropertyNameCaseInsensitive = true, ReadCommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Skip,
        Converters = { new JsonStringEnumConverter<Microsoft.Extensions.Logging.LogLevel>() },
    };

    /// <exception cref="ArgumentException">The file is unreadable or not such JSON; the message names it.</exception>
    public static ServeConfig Load(string? path)
    {
        if (path is null) return None;
        try { return JsonSerializer.Deserialize<ServeConfig>(File.ReadAllText(path), s_json) ?? None; }
        catch (JsonException e) { throw new ArgumentException($"{path}: {e.Message}"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new ArgumentException($"{path}: {e.Message}"); }
    }

    /// <summary>The option's value when the command line gave it, else the file's, else the option's default.</summary>
    public static T Pick<T>(ParseResult parse, Option<T> option, T? fromFile) where T : struct =>
        parse.GetResult(option) is { Implicit: false } || fromFile is null ? parse.GetValue(option) : fromFile.Value;

    public static string? Pick(ParseResult parse, Option<string?> option, string? fromFile) =>
        parse.GetResult(option) is { Implicit: false } ? parse.GetValue(option) : parse.GetValue(option) ?? fromFile;

    /// <summary>Started by systemd with its output going to the journal (JOURNAL_STREAM names that stream):
    /// journald adds the time and the unit's name itself and reads the level from a &lt;N&gt; prefix, so the
    /// systemd console format is used then; a terminal gets timestamped single lines.</summary>
    public static bool ToJournal => Environment.GetEnvironmentVariable("JOURNAL_STREAM") is { Length: > 0 };
}
