namespace GuestIcd.Tests;

/// <summary>The ICD's configuration file (src/GuestIcd.Icd/Config.cs, /etc/guesticd.conf in the package), here
/// through GUESTICD_CONFIG: its settings apply when the environment has none, the environment wins over it.</summary>
public class ConfigFileTests
{
    static string WriteConfig(string text)
    {
        var path = Path.Combine(Directory.CreateTempSubdirectory("guesticd-conf").FullName, "guesticd.conf");
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public void TheFileNamesTheTransportAndLogLevelWhenTheEnvironmentDoesNot()
    {
        using var host = new HostSim();
        var env = host.ClientEnv();
        env.Remove("GUESTICD_TRANSPORT");
        env["GUESTICD_CONFIG"] = WriteConfig($"# comment\n\ntransport = unix:{host.SocketPath}\nLOG=info\nnot a setting\n");
        var r = Repo.Run("vulkaninfo", "--summary", env, timeoutMs: 60_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        Assert.Contains("GuestIcd: llvmpipe", r.Stdout);
        // log = info came from the file: the connection line is an info message.
        Assert.Contains($"GuestIcd info: connected to", r.Stderr);
        Assert.Contains($"unix:{host.SocketPath}", r.Stderr);
        // A line that is not key = value is named, not fatal.
        Assert.Contains("not key = value, ignored: not a setting", r.Stderr);
    }

    [Fact]
    public void TheEnvironmentWinsOverTheFile()
    {
        using var host = new HostSim();
        var env = host.ClientEnv(); // GUESTICD_TRANSPORT names the live host
        env["GUESTICD_CONFIG"] = WriteConfig("transport = unix:/nonexistent/guesticd.sock\nlog = error\n");
        env["GUESTICD_LOG"] = "info";
        var r = Repo.Run("vulkaninfo", "--summary", env, timeoutMs: 60_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        Assert.Contains("GuestIcd: llvmpipe", r.Stdout);
        Assert.Contains("GuestIcd info: connected to", r.Stderr);
        Assert.DoesNotContain("/nonexistent/guesticd.sock", r.Stderr);
    }

    [Fact]
    public void AFileTransportThatCannotBeReachedIsNamedInTheError()
    {
        using var host = new HostSim();
        var env = host.ClientEnv();
        env.Remove("GUESTICD_TRANSPORT");
        env["GUESTICD_CONNECT_TIMEOUT_MS"] = "500";
        env["GUESTICD_CONFIG"] = WriteConfig("transport = unix:/nonexistent/guesticd.sock\n");
        var r = Repo.Run("vulkaninfo", "--summary", env, timeoutMs: 60_000);
        Assert.Contains("/nonexistent/guesticd.sock", r.Stderr);
        Assert.DoesNotContain("GuestIcd: llvmpipe", r.Stdout);
    }
}
