using System.Diagnostics;

namespace GuestIcd.Tests;

/// <summary>Paths inside the repository and a helper to run real processes.</summary>
public static class Repo
{
    public static string Root { get; } = FindRoot();

    static string FindRoot()
    {
        var dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "GuestIcd.sln"))) dir = Path.GetDirectoryName(dir);
        return dir ?? throw new InvalidOperationException("GuestIcd.sln not found above " + AppContext.BaseDirectory);
    }

    public static string PathOf(string relative) => Path.Combine(Root, relative);

    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    /// <summary>Runs a program to completion with a hard time limit, so a hung child fails the test instead of the suite.</summary>
    public static Result Run(string file, string args, IDictionary<string, string>? env = null, int timeoutMs = 120_000, string? cwd = null)
    {
        var psi = new ProcessStartInfo(file, args)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            WorkingDirectory = cwd ?? Root,
        };
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutMs))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {args} did not finish within {timeoutMs} ms");
        }
        p.WaitForExit();
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }
}
