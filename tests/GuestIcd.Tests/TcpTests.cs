using System.Net;
using System.Net.Sockets;

namespace GuestIcd.Tests;

/// <summary>A GPU host on another machine: the same ICD reaches hostsim over TCP (loopback here), with a
/// shared secret, and mapped memory travels as changed pages instead of shared pages.</summary>
public class TcpTests
{
    static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    static (HostSim Host, int Port, string SecretFile) Start()
    {
        var secretFile = Path.Combine(Directory.CreateTempSubdirectory("guesticd-secret").FullName, "secret");
        File.WriteAllText(secretFile, Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)));
        int port = FreePort();
        var host = new HostSim("--listen", $"tcp:127.0.0.1:{port}", "--secret-file", secretFile);
        host.WaitForLog($"listening on tcp:127.0.0.1:{port}", 10_000);
        return (host, port, secretFile);
    }

    static Dictionary<string, string> Env(int port, string secretFile) => new()
    {
        ["VK_DRIVER_FILES"] = HostSim.Manifest, ["GUESTICD_TRANSPORT"] = $"tcp:127.0.0.1:{port}",
        ["GUESTICD_SECRET_FILE"] = secretFile, ["VK_LOADER_LAYERS_DISABLE"] = "*",
    };

    [Fact]
    public void VulkaninfoAndTheComputeClientRunOverTcp()
    {
        var (host, port, secret) = Start();
        using var _ = host;
        var info = Repo.Run("vulkaninfo", "--summary", Env(port, secret), timeoutMs: 60_000);
        Assert.True(info.ExitCode == 0, info.Stderr + host.Log);
        Assert.Contains("deviceName         = GuestIcd: llvmpipe", info.Stdout);

        var dir = Directory.CreateTempSubdirectory("guesticd-tcp").FullName;
        var spv = Path.Combine(dir, "multiply.spv");
        Assert.Equal(0, Repo.Run("glslc", $"-o {spv} native-shim/shaders/multiply.comp").ExitCode);
        var exe = Path.Combine(dir, "compute");
        Assert.Equal(0, Repo.Run("cc", $"-std=c11 -O1 -o {exe} native-shim/clients/compute.c -lvulkan").ExitCode);
        var r = Repo.Run(exe, $"{spv} 300000", Env(port, secret), timeoutMs: 120_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        Assert.Contains("round 0: verified 300000 elements", r.Stdout);
        Assert.Contains("round 1: verified 300000 elements", r.Stdout);
        Assert.Contains("connected via tcp:127.0.0.1", host.Log);
        Assert.DoesNotContain("protocol error", host.Log);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void AWrongSecretIsRefusedBeforeAnythingIsDecodedAndNeverLogged()
    {
        var (host, port, secret) = Start();
        using var _ = host;
        var wrong = Path.Combine(Path.GetDirectoryName(secret)!, "wrong");
        File.WriteAllText(wrong, "definitely-not-the-shared-secret-0123456789");
        var env = Env(port, wrong);
        env["VK_DRIVER_FILES"] = HostSim.Manifest + ":" + HostSim.LavapipeManifest;
        var r = Repo.Run("vulkaninfo", "--summary", env, timeoutMs: 60_000);
        Assert.True(r.ExitCode == 0, r.Stderr); // the loader skips our ICD; lavapipe still answers
        Assert.Contains("deviceName         = llvmpipe", r.Stdout);
        Assert.Contains("refused the shared secret", r.Stderr);
        host.WaitForLog("wrong shared secret", 10_000);
        Assert.DoesNotContain("definitely-not-the-shared-secret", host.Log + r.Stderr);
        Assert.DoesNotContain(File.ReadAllText(secret), host.Log + r.Stderr);
        Assert.DoesNotContain("session 1 connected", host.Log);
    }
}
