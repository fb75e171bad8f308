using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace GuestIcd.Tests;

/// <summary>Headless presentation (issue 9 points 1 and 5): the C client native-shim/clients/swapchain.c through
/// the real loader, the ICD and hostsim, with no display at all. The surface queries, the swapchain's
/// acquire/present cycle with semaphores and fences, timeouts, retired swapchains and bad input are checked by
/// the client; every presented frame is written by the ICD (GUESTICD_PRESENT_DUMP) and compared here, pixel by
/// pixel, with what the client drew.</summary>
public class PresentationTests
{
    internal static readonly Lazy<string> Client = new(() =>
    {
        var exe = Path.Combine(Directory.CreateTempSubdirectory("guesticd-swapchain").FullName, "swapchain");
        var cc = Repo.Run("cc", $"-std=c11 -O1 -Wall -Werror -o {exe} native-shim/clients/swapchain.c -lvulkan");
        Assert.True(cc.ExitCode == 0, cc.Stderr);
        return exe;
    });

    /// <summary>Reads a binary PPM (P6, maxval 255) as (width, height, RGB bytes).</summary>
    internal static (int W, int H, byte[] Rgb) ReadPpm(string path)
    {
        var d = File.ReadAllBytes(path);
        int pos = 0;
        string Token()
        {
            while (char.IsWhiteSpace((char)d[pos])) pos++;
            int s = pos;
            while (!char.IsWhiteSpace((char)d[pos])) pos++;
            return System.Text.Encoding.ASCII.GetString(d, s, pos - s);
        }
        Assert.Equal("P6", Token());
        int w = int.Parse(Token()), h = int.Parse(Token());
        Assert.Equal("255", Token());
        pos++;
        return (w, h, d[pos..(pos + w * h * 3)]);
    }

    static void CheckFrames(string stdout, string dumpDir, int frames)
    {
        var lines = Regex.Matches(stdout, @"frame (\d+): image (\d+) rgb (\d+),(\d+),(\d+)");
        Assert.Equal(frames, lines.Count);
        var images = new HashSet<int>();
        foreach (Match m in lines)
        {
            int f = int.Parse(m.Groups[1].Value);
            images.Add(int.Parse(m.Groups[2].Value));
            byte r = byte.Parse(m.Groups[3].Value), g = byte.Parse(m.Groups[4].Value), b = byte.Parse(m.Groups[5].Value);
            var (w, h, rgb) = ReadPpm(Path.Combine(dumpDir, $"frame-{f}.ppm"));
            Assert.Equal((64, 48), (w, h));
            int wrong = 0;
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                {
                    // The clear colour, and the 16x8 gradient the client copied to (8,4): R 200, G 32*y, B 16*x.
                    bool inRect = x >= 8 && x < 24 && y >= 4 && y < 12;
                    var want = inRect ? (200, 32 * (y - 4), 16 * (x - 8)) : (r, g, b);
                    int i = (y * w + x) * 3;
                    if ((rgb[i], rgb[i + 1], rgb[i + 2]) != want) wrong++;
                }
            Assert.True(wrong == 0, $"frame {f}: {wrong} of {w * h} pixels differ from what the client drew");
        }
        // Acquire hands the images out in turn: a 3-image swapchain used all of them.
        Assert.True(images.Count >= 3, $"images used: {string.Join(",", images)}");
        Assert.False(File.Exists(Path.Combine(dumpDir, $"frame-{frames}.ppm")), "more frames presented than the client presented");
    }

    [Fact]
    public void HeadlessSwapchainPresentsWhatTheHostRenderedIntoSharedMemory()
    {
        using var host = new HostSim();
        var dump = Directory.CreateTempSubdirectory("guesticd-present").FullName;
        var env = host.ClientEnv();
        env["GUESTICD_PRESENT_DUMP"] = dump;
        env["GUESTICD_LOG"] = "info";
        var r = Repo.Run(Client.Value, "5 --misuse", env, timeoutMs: 120_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        Assert.Contains("device: GuestIcd: llvmpipe", r.Stdout);
        Assert.Contains("protected: 0", r.Stdout);
        Assert.Contains("misuse: swapchain -3, present of an image never acquired -13", r.Stdout);
        Assert.Contains($"replaced: old swapchain {-1000001004}, a second one {-1000000001}", r.Stdout);
        Assert.Contains("all 2 images held: timeout 0 gives 1, 20 ms gives 2", r.Stdout);
        Assert.Contains("done", r.Stdout);
        CheckFrames(r.Stdout, dump, 5);
        Assert.Matches(@"swapchain 0x[0-9A-F]+ destroyed: 5 presents, present-to-present mean", r.Stderr);
        host.WaitForLog("guest disconnected", 1, 10_000); // one session: the loader's probe became the instance's
        // The host never heard of the window-system extensions, nor saw a protocol error.
        Assert.DoesNotContain("protocol error", host.Log);
        Assert.DoesNotContain("not offered", host.Log);
        Assert.DoesNotContain("not supported by the device", host.Log);
    }

    /// <summary>VK_KHR_swapchain_mutable_format and VK_KHR_incremental_present are the guest's (like the swapchain):
    /// the swapchain's images reach the host created MUTABLE_FORMAT with the format list, so an SRGB view of a UNORM
    /// image is valid to the host's validation layer too, and present regions ride along. The application's own
    /// validation layer sees no error either.</summary>
    [Fact]
    public void MutableFormatSwapchainsAndPresentRegionsAreValidOnBothSides()
    {
        using var host = new HostSim("--validation");
        var dump = Directory.CreateTempSubdirectory("guesticd-present").FullName;
        var env = host.ClientEnv();
        env.Remove("VK_LOADER_LAYERS_DISABLE");
        env["VK_INSTANCE_LAYERS"] = "VK_LAYER_KHRONOS_validation";
        env["GUESTICD_PRESENT_DUMP"] = dump;
        var r = Repo.Run(Client.Value, "3", env, timeoutMs: 120_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        Assert.Contains("wsi extras: mutable-format swapchain with an SRGB view, present regions", r.Stdout);
        Assert.DoesNotContain("Validation Error", r.Stdout + r.Stderr);
        CheckFrames(r.Stdout, dump, 3);
        host.WaitForLog(" guest objects left", 1, 10_000);
        Assert.Matches(@"session \d+ validation: 0 errors", host.Log);
        Assert.DoesNotContain("not offered", host.Log);
    }

    static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    [Fact]
    public void HeadlessSwapchainOverTcpBringsTheRenderedPagesBack()
    {
        var secret = Path.Combine(Directory.CreateTempSubdirectory("guesticd-secret").FullName, "secret");
        File.WriteAllText(secret, Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)));
        int port = FreePort();
        using var host = new HostSim("--listen", $"tcp:127.0.0.1:{port}", "--secret-file", secret);
        host.WaitForLog($"listening on tcp:127.0.0.1:{port}", 10_000);
        var dump = Directory.CreateTempSubdirectory("guesticd-present").FullName;
        var env = new Dictionary<string, string>
        {
            ["VK_DRIVER_FILES"] = HostSim.Manifest, ["GUESTICD_TRANSPORT"] = $"tcp:127.0.0.1:{port}",
            ["GUESTICD_SECRET_FILE"] = secret, ["VK_LOADER_LAYERS_DISABLE"] = "*", ["GUESTICD_PRESENT_DUMP"] = dump,
        };
        var r = Repo.Run(Client.Value, "4", env, timeoutMs: 120_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        CheckFrames(r.Stdout, dump, 4);
    }

    [Fact]
    public void TheValidationLayerSeesNoErrorInTheHeadlessClient()
    {
        using var host = new HostSim();
        var env = host.ClientEnv();
        env.Remove("VK_LOADER_LAYERS_DISABLE");
        env["VK_INSTANCE_LAYERS"] = "VK_LAYER_KHRONOS_validation";
        var r = Repo.Run(Client.Value, "3", env, timeoutMs: 120_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        Assert.DoesNotContain("Validation Error", r.Stdout + r.Stderr);
    }
}
