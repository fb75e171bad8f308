using System.Diagnostics;
using System.Net.Sockets;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Wire;
using GuestIcd.Transport;

namespace GuestIcd.Tests;

/// <summary>No host, the wrong version, a dead host, a hostile guest: a clear VkResult and log line, never a hang or crash.</summary>
public class BadInputTests
{
    static string Client(string name)
    {
        var exe = Path.Combine(Path.GetTempPath(), $"guesticd-{name}-{Environment.ProcessId}");
        if (!File.Exists(exe))
        {
            var cc = Repo.Run("cc", $"-std=c11 -O1 -o {exe} native-shim/clients/{name}.c -lvulkan");
            Assert.True(cc.ExitCode == 0, cc.Stderr);
        }
        return exe;
    }

    [Fact]
    public void WithoutHostsimTheLoaderSkipsTheIcdAndOtherDriversStillWork()
    {
        var env = new Dictionary<string, string>
        {
            ["VK_DRIVER_FILES"] = HostSim.Manifest + ":" + HostSim.LavapipeManifest,
            ["GUESTICD_TRANSPORT"] = "unix:/nonexistent/guesticd/hostsim.sock",
            ["VK_LOADER_LAYERS_DISABLE"] = "*",
        };
        var r = Repo.Run("vulkaninfo", "--summary", env, timeoutMs: 60_000);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("deviceName         = llvmpipe", r.Stdout);
        Assert.DoesNotContain("GuestIcd: llvmpipe", r.Stdout);
        Assert.Contains("GuestIcd error: no hostsim reachable at unix:/nonexistent/guesticd/hostsim.sock", r.Stderr);
    }

    [Fact]
    public void WithoutHostsimAndNoOtherDriverInstanceCreationFailsCleanly()
    {
        var env = new Dictionary<string, string>
        {
            ["VK_DRIVER_FILES"] = HostSim.Manifest,
            ["GUESTICD_TRANSPORT"] = "unix:/nonexistent/guesticd/hostsim.sock",
        };
        var r = Repo.Run(Client("device_lost"), "", env, timeoutMs: 60_000);
        Assert.Equal(2, r.ExitCode); // the client's "vkCreateInstance failed" exit, not a signal
        Assert.Contains("vkCreateInstance=-9", r.Stdout); // VK_ERROR_INCOMPATIBLE_DRIVER
    }

    [Fact]
    public void AHostThatNeverAnswersTheHandshakeTimesOut()
    {
        var dir = Directory.CreateTempSubdirectory("guesticd-silent").FullName;
        var path = Path.Combine(dir, "silent.sock");
        using var silent = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        silent.Bind(new UnixDomainSocketEndPoint(path));
        silent.Listen(16); // accepts at the kernel level, never answers
        var env = new Dictionary<string, string>
        {
            ["VK_DRIVER_FILES"] = HostSim.Manifest, ["GUESTICD_TRANSPORT"] = "unix:" + path, ["GUESTICD_CONNECT_TIMEOUT_MS"] = "1000",
        };
        var r = Repo.Run(Client("device_lost"), "", env, timeoutMs: 60_000);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("vkCreateInstance=-9", r.Stdout);
        Assert.Contains("handshake with hostsim", r.Stderr);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void ADifferentMajorVersionIsRefusedWithBothVersionsNamed()
    {
        using var host = new HostSim("--protocol-version", "2.0");
        var r = Repo.Run("vulkaninfo", "--summary", host.ClientEnv(withLavapipe: true), timeoutMs: 60_000);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("deviceName         = llvmpipe", r.Stdout);
        Assert.Contains("hostsim refused protocol 1.2 (host speaks 2.0)", r.Stderr);
        host.WaitForLog("no common major version", 10_000);
    }

    [Fact]
    public void TheSameMajorSpeaksTheLowerMinor()
    {
        using var host = new HostSim("--protocol-version", "1.7");
        var env = host.ClientEnv();
        var r = Repo.Run("vulkaninfo", "--summary", env, timeoutMs: 60_000);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("GuestIcd: llvmpipe", r.Stdout);
        Assert.Contains("protocol 1.2 agreed", host.Log);

        env["GUESTICD_PROTOCOL_VERSION"] = "1.9";
        r = Repo.Run("vulkaninfo", "--summary", env, timeoutMs: 60_000);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("protocol 1.7 agreed", host.Log);
    }

    [Fact]
    public async Task HostsimDyingMidSessionGivesDeviceLostNotACrash()
    {
        using var host = new HostSim();
        var psi = new ProcessStartInfo(Client("device_lost"))
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var (k, v) in host.ClientEnv()) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.Equal("vkCreateInstance=0", p.StandardOutput.ReadLine());
        Assert.Equal("vkEnumeratePhysicalDevices=0 count=1", p.StandardOutput.ReadLine());
        Assert.Equal("ready", p.StandardOutput.ReadLine());
        host.Kill();
        p.StandardInput.WriteLine("go");
        p.StandardInput.Close();
        var rest = p.StandardOutput.ReadToEndAsync();
        using var cts = new CancellationTokenSource(30_000);
        await p.WaitForExitAsync(cts.Token); // throws if the client hung after hostsim died
        Assert.Equal(0, p.ExitCode);
        var output = await rest;
        Assert.Contains("vkCreateDevice=-4", output); // VK_ERROR_DEVICE_LOST
        Assert.Contains("done", output);
        Assert.Contains("connection to hostsim lost", await stderr);
    }

    /// <summary>A hand-rolled guest that says hello properly, then misbehaves.</summary>
    static UnixRingTransport HostileGuest(HostSim host)
    {
        var t = UnixRingTransport.Connect(host.SocketPath, 5000);
        using var w = new WireWriter();
        Handshake.Write(new Hello(Handshake.ProtocolMajor, Handshake.ProtocolMinor, Tables.RegistryVersion, "hostile", [], []), w);
        t.Write(w.Written);
        t.Flush();
        Span<byte> hdr = stackalloc byte[ReplyHeader.Size];
        Assert.True(t.ReadExactly(hdr, 5000));
        var h = ReplyHeader.Read(hdr);
        var payload = new byte[MessageHeader.Padded((int)h.ByteLength)];
        Assert.True(t.ReadExactly(payload, 5000));
        Assert.True(Handshake.ReadReply(payload.AsSpan(0, (int)h.ByteLength)).Accepted);
        return t;
    }

    static void Send(UnixRingTransport t, uint command, ReadOnlySpan<byte> payload, MessageFlags flags = MessageFlags.ReplyWanted)
    {
        using var w = new WireWriter();
        int at = w.BeginMessage(command, flags);
        w.Bytes(payload);
        w.EndMessage(at);
        t.Write(w.Written);
        t.Flush();
    }

    [Theory]
    [InlineData("unknown command", "unknown command id")]
    [InlineData("forged handle", "unknown object id")]
    [InlineData("truncated", "message truncated")]
    [InlineData("oversized", "exceeds the")]
    [InlineData("null dispatchable", "with a NULL dispatchable handle")]
    public void AMisbehavingGuestLosesOnlyItsOwnSession(string what, string logged)
    {
        using var host = new HostSim();
        using (var bad = HostileGuest(host))
        {
            switch (what)
            {
                case "unknown command": Send(bad, 0xDEADBEEF, new byte[8]); break;
                case "forged handle":
                {
                    // vkGetPhysicalDeviceProperties(physicalDevice = an id this session never had, pProperties)
                    var p = new byte[12];
                    BitConverter.TryWriteBytes(p, 0x1234UL);
                    BitConverter.TryWriteBytes(p.AsSpan(8), 1u);
                    Send(bad, Tables.Commands[Tables.vkGetPhysicalDeviceProperties].Id, p);
                    break;
                }
                case "truncated": Send(bad, Tables.Commands[Tables.vkCreateInstance].Id, new byte[3]); break;
                case "oversized":
                {
                    Span<byte> h = stackalloc byte[MessageHeader.Size];
                    BitConverter.TryWriteBytes(h, Tables.Commands[Tables.vkCreateInstance].Id);
                    BitConverter.TryWriteBytes(h[8..], 200u << 20);
                    bad.Write(h);
                    bad.Flush();
                    break;
                }
                case "null dispatchable":
                {
                    var p = new byte[8];
                    Send(bad, Tables.Commands[Tables.vkDeviceWaitIdle].Id, p);
                    break;
                }
            }
            host.WaitForLog(logged, 10_000);
            // The session is over: the host closed our end.
            Span<byte> b = stackalloc byte[1];
            Assert.Throws<TransportClosedException>(() => { var x = new byte[1]; bad.ReadExactly(x, 10_000); });
        }
        Assert.Contains("ended by a protocol error", host.Log);
        // Other guests are untouched.
        var r = Repo.Run("vulkaninfo", "--summary", host.ClientEnv(), timeoutMs: 60_000);
        Assert.True(r.ExitCode == 0, r.Stderr + host.Log);
        Assert.Contains("GuestIcd: llvmpipe", r.Stdout);
    }

    [Fact]
    public void RealClientCreatesDevicesAndStableQueues()
    {
        using var host = new HostSim();
        var r = Repo.Run(Client("create_device"), "", host.ClientEnv(), timeoutMs: 60_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        Assert.Contains("device=GuestIcd: llvmpipe", r.Stdout);
        for (int i = 0; i < 3; i++) Assert.Contains($"round {i}: queue stable, vkQueueWaitIdle=0, vkDeviceWaitIdle=0", r.Stdout);
        Assert.Contains("2000 repeated queries agree", r.Stdout);
        host.WaitForLog("guest disconnected", 1, 10_000);
        // Fixed answers come from the guest's cache: 2,000 queries cost about a hundred distinct round trips.
        var commands = System.Text.RegularExpressions.Regex.Matches(host.Log, @"ended \(guest disconnected\): (\d+) commands").Select(m => int.Parse(m.Groups[1].Value)).Max();
        Assert.InRange(commands, 10, 300);
        Assert.Contains("0 guest objects left", host.Log);
    }
}

public class ConcurrentGuestTests
{
    /// <summary>Two guests at once on one hostsim: one works, the other binds memory far outside its
    /// allocation. The hostile one loses its session (VK_ERROR_DEVICE_LOST, a logged reason); the other
    /// finishes with every element right.</summary>
    [Fact]
    public async Task AHostileGuestDoesNotDisturbAWorkingOne()
    {
        using var host = new HostSim();
        var dir = Directory.CreateTempSubdirectory("guesticd-two").FullName;
        var spv = Path.Combine(dir, "multiply.spv");
        Assert.Equal(0, Repo.Run("glslc", $"-o {spv} native-shim/shaders/multiply.comp").ExitCode);
        Assert.Equal(0, Repo.Run("cc", $"-std=c11 -O1 -o {dir}/compute native-shim/clients/compute.c -lvulkan").ExitCode);
        Assert.Equal(0, Repo.Run("cc", $"-std=c11 -O1 -o {dir}/hostile native-shim/clients/hostile.c -lvulkan").ExitCode);

        var good = Task.Run(() => Repo.Run($"{dir}/compute", $"{spv} 2000000", host.ClientEnv(), timeoutMs: 180_000));
        var bad = Task.Run(() => Repo.Run($"{dir}/hostile", "", host.ClientEnv(), timeoutMs: 60_000));
        var b = await bad;
        var g = await good;
        Assert.True(b.ExitCode == 0, b.Stdout + b.Stderr + host.Log);
        Assert.Contains("vkBindBufferMemory(offset 1 GiB)=0", b.Stdout); // protocol 1.2 does not wait for a bind (AsyncResults)
        Assert.Contains("vkDeviceWaitIdle=-4", b.Stdout);
        Assert.Contains("vkBindBufferMemory: offset 1073741824 is outside the 4096-byte allocation", host.Log);
        Assert.True(g.ExitCode == 0, g.Stdout + g.Stderr + host.Log);
        Assert.Contains("round 1: verified 2000000 elements", g.Stdout);
        Directory.Delete(dir, true);
    }
}
