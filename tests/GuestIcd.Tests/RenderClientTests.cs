using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;

namespace GuestIcd.Tests;

/// <summary>The C render client (native-shim/clients/render.c): an offscreen frame at 4x MSAA resolved to
/// 128x128 RGBA8 — vertex and index buffers, a staged texture through a combined image sampler, depth test,
/// alpha blending — through a VkRenderPass + framebuffer or through Vulkan 1.3 dynamic rendering (--dynamic),
/// read back through a mapped buffer and written as a PPM. Through the loader, the ICD and hostsim the image
/// must equal lavapipe's own, bit for bit (issue 3, point 6b).</summary>
public class RenderClientTests
{
    const int Width = 128, Height = 128;

    static readonly Lazy<(string Dir, string Exe, string Vert, string Frag)> Built = new(() =>
    {
        var dir = Directory.CreateTempSubdirectory("guesticd-render").FullName;
        var vert = Path.Combine(dir, "render.vert.spv");
        var frag = Path.Combine(dir, "render.frag.spv");
        foreach (var (src, spv) in new[] { ("native-shim/shaders/render.vert", vert), ("native-shim/shaders/render.frag", frag) })
        {
            var glslc = Repo.Run("glslc", $"-o {spv} {src}");
            Assert.True(glslc.ExitCode == 0, glslc.Stderr);
        }
        var exe = Path.Combine(dir, "render");
        var cc = Repo.Run("cc", $"-std=c11 -O1 -Wall -Werror -o {exe} native-shim/clients/render.c -lvulkan");
        Assert.True(cc.ExitCode == 0, cc.Stderr);
        return (dir, exe, vert, frag);
    });

    static readonly Dictionary<string, string> Lavapipe = new() { ["VK_DRIVER_FILES"] = HostSim.LavapipeManifest, ["VK_LOADER_LAYERS_DISABLE"] = "*" };

    /// <summary>lavapipe's own image for each path, rendered once.</summary>
    static readonly Lazy<byte[]> ReferenceRenderPass = new(() => RenderOnLavapipe(dynamic: false));
    static readonly Lazy<byte[]> ReferenceDynamic = new(() => RenderOnLavapipe(dynamic: true));
    static byte[] Reference(bool dynamic) => (dynamic ? ReferenceDynamic : ReferenceRenderPass).Value;

    static byte[] RenderOnLavapipe(bool dynamic)
    {
        var (r, ppm) = Render(dynamic, Lavapipe, "lavapipe");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Contains("device: llvmpipe", r.Stdout);
        return ppm;
    }

    static (Repo.Result Result, byte[] Ppm) Render(bool dynamic, IDictionary<string, string> env, string tag, string extra = "")
    {
        var (dir, exe, vert, frag) = Built.Value;
        var ppm = Path.Combine(dir, $"{tag}-{(dynamic ? "dynamic" : "renderpass")}-{Guid.NewGuid():N}.ppm");
        var r = Repo.Run(exe, $"{vert} {frag} {ppm}{(dynamic ? " --dynamic" : "")}{extra}", env, timeoutMs: 120_000);
        return (r, File.Exists(ppm) ? File.ReadAllBytes(ppm) : Array.Empty<byte>());
    }

    /// <summary>The RGB pixels of a P6 PPM written by the client, checked against the header it must have.</summary>
    static byte[] Pixels(byte[] ppm)
    {
        var header = Encoding.ASCII.GetBytes($"P6\n{Width} {Height}\n255\n");
        Assert.True(ppm.Length == header.Length + Width * Height * 3, $"PPM of {ppm.Length} bytes");
        Assert.Equal(header, ppm[..header.Length]);
        return ppm[header.Length..];
    }

    static (byte R, byte G, byte B) At(byte[] px, int x, int y) => (px[3 * (y * Width + x)], px[3 * (y * Width + x) + 1], px[3 * (y * Width + x) + 2]);

    static bool Near((byte R, byte G, byte B) c, int r, int g, int b, int tol = 2) =>
        Math.Abs(c.R - r) <= tol && Math.Abs(c.G - g) <= tol && Math.Abs(c.B - b) <= tol;

    static string Line(string stdout, string key) =>
        stdout.Split('\n').FirstOrDefault(l => l.StartsWith(key + ": "))?[(key.Length + 2)..].Trim() ?? throw new Xunit.Sdk.XunitException($"no '{key}:' line in:\n{stdout}");

    static ulong Fnv1a(byte[] data)
    {
        ulong h = 0xcbf29ce484222325;
        foreach (var b in data) h = (h ^ b) * 0x100000001b3;
        return h;
    }

    /// <summary>Fails with where and how two images differ, not with two 49 KiB arrays.</summary>
    static void AssertSameImage(byte[] expected, byte[] actual, string what)
    {
        var a = Pixels(expected);
        var b = Pixels(actual);
        int differing = 0, first = -1;
        for (int i = 0; i < Width * Height; i++)
            if (a[3 * i] != b[3 * i] || a[3 * i + 1] != b[3 * i + 1] || a[3 * i + 2] != b[3 * i + 2]) { differing++; if (first < 0) first = i; }
        if (differing > 0)
            Assert.Fail($"{what}: {differing} of {Width * Height} pixels differ; first at ({first % Width},{first / Width}): " +
                $"expected {At(a, first % Width, first / Width)}, got {At(b, first % Width, first / Width)}");
        Assert.Equal(expected, actual);   // the whole file, header included, byte for byte
    }

    [Fact]
    public void OnLavapipeBothPathsDrawTheSameSceneWithEveryFeatureVisible()
    {
        var renderPass = Reference(dynamic: false);
        var dynamic = Reference(dynamic: true);
        // The render pass's subpass resolve and dynamic rendering's resolveImageView draw the same frame.
        AssertSameImage(renderPass, dynamic, "render pass vs dynamic rendering on lavapipe");
        var px = Pixels(renderPass);
        Assert.Equal(((byte)0, (byte)0, (byte)0), At(px, 0, 0));                      // the clear colour
        Assert.Equal(((byte)230, (byte)30, (byte)30), At(px, 25, 70));                // the red triangle's near end, in front of the quad
        var behind = At(px, 83, 32);                                                 // its far end, inside the quad: depth test hides it
        Assert.False(Near(behind, 230, 30, 30, 40) || Near(behind, 0, 0, 0, 10), $"expected the texture at (83,32), got {behind}");
        Assert.True(Near(At(px, 38, 118), 10, 110, 30), $"green at alpha 0.5 over black: {At(px, 38, 118)}");
        var colours = new HashSet<(byte, byte, byte)>();
        for (int y = 0; y < Height; y++) for (int x = 0; x < Width; x++) colours.Add(At(px, x, y));
        Assert.Contains(colours, c => Near(c, 125, 125, 45));                        // green blended over the opaque red
        // 4x MSAA resolved: the red triangle's edges against the black background carry 1/4, 2/4 and 3/4 coverage.
        Assert.Contains(colours, c => Near(c, 58, 8, 8));
        Assert.Contains(colours, c => Near(c, 115, 15, 15));
        Assert.Contains(colours, c => Near(c, 173, 23, 23));
        Assert.True(colours.Count > 100, $"only {colours.Count} distinct colours: the filtered texture is missing");
    }

    [Fact]
    public void TheClientsOwnSummaryMatchesItsImage()
    {
        var (r, ppm) = Render(false, Lavapipe, "summary");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        var px = Pixels(ppm);
        Assert.Equal(Fnv1a(px).ToString("x16"), Line(r.Stdout, "checksum"));
        int nonblack = 0;
        for (int i = 0; i < Width * Height; i++) if ((px[3 * i] | px[3 * i + 1] | px[3 * i + 2]) != 0) nonblack++;
        Assert.Equal(nonblack.ToString(), Line(r.Stdout, "nonblack"));
        Assert.InRange(nonblack, Width * Height / 4, Width * Height * 3 / 4);
        Assert.True(int.Parse(Line(r.Stdout, "colours")) > 100, r.Stdout);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TheImageThroughTheIcdEqualsLavapipesBitForBit(bool dynamic)
    {
        var reference = Reference(dynamic);
        using var host = new HostSim();
        var (r, ppm) = Render(dynamic, host.ClientEnv(), "icd");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        Assert.Contains("device: GuestIcd: llvmpipe", r.Stdout);
        Assert.Contains(dynamic ? "mode: dynamic rendering" : "mode: render pass", r.Stdout);
        Assert.Contains("done", r.Stdout);
        AssertSameImage(reference, ppm, dynamic ? "dynamic rendering through the ICD" : "render pass through the ICD");
        Assert.Equal(Fnv1a(Pixels(reference)).ToString("x16"), Line(r.Stdout, "checksum"));
        host.WaitForLog("guest disconnected", 10_000);
        Assert.DoesNotContain("protocol error", host.Log);
        Assert.Contains(" 0 errors", host.Log);
    }

    /// <summary>The same frame through vkCmdDrawMultiIndexedEXT, its draws 20 bytes apart in the application's
    /// records: the ICD must read them at the application's stride and the host must hand the driver the stride
    /// of the packed array it decoded, or the second draw reads the first one's padding.</summary>
    [Fact]
    public void MultiDrawsFromAPaddedArrayDrawTheSameFrameThroughTheIcd()
    {
        var reference = Reference(dynamic: false);
        var (direct, directPpm) = Render(false, Lavapipe, "multi-lavapipe", " --multi-draw");
        Assert.True(direct.ExitCode == 0, direct.Stdout + direct.Stderr);
        AssertSameImage(reference, directPpm, "multi-draw on lavapipe");
        using var host = new HostSim();
        var (r, ppm) = Render(false, host.ClientEnv(), "multi-icd", " --multi-draw");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        AssertSameImage(reference, ppm, "multi-draw through the ICD");
        Assert.DoesNotContain("protocol error", host.Log);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TheValidationLayerSeesNoErrorInTheApplicationsUseOfTheIcd(bool dynamic)
    {
        using var host = new HostSim();
        var env = host.ClientEnv();
        env.Remove("VK_LOADER_LAYERS_DISABLE");
        env["VK_INSTANCE_LAYERS"] = "VK_LAYER_KHRONOS_validation";
        var (clean, ppm) = Render(dynamic, env, "validated");
        Assert.True(clean.ExitCode == 0, clean.Stdout + clean.Stderr + host.Log);
        Assert.DoesNotContain("Validation Error", clean.Stdout + clean.Stderr);
        AssertSameImage(Reference(dynamic), ppm, "through the validation layer and the ICD");
        // The canary: the same layer, one deliberate misuse, reported.
        var (provoked, _) = Render(dynamic, env, "provoked", " --provoke-validation");
        Assert.Contains("Validation Error", provoked.Stdout + provoked.Stderr);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TheClientIsValidationCleanOnLavapipeDirectly(bool dynamic)
    {
        var env = new Dictionary<string, string> { ["VK_DRIVER_FILES"] = HostSim.LavapipeManifest, ["VK_INSTANCE_LAYERS"] = "VK_LAYER_KHRONOS_validation" };
        var (r, _) = Render(dynamic, env, "lavapipe-validated");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.DoesNotContain("Validation Error", r.Stdout + r.Stderr);
        var (provoked, _) = Render(dynamic, env, "lavapipe-provoked", " --provoke-validation");
        Assert.Contains("Validation Error", provoked.Stdout + provoked.Stderr);
    }

    /// <summary>The other side of the boundary: the validation layer inside hostsim (serve --validation),
    /// checking the calls hostsim really makes on lavapipe for this client — the guest's calls as decoded,
    /// plus whatever hostsim adds (imported shared memory, extra extensions).</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TheHostDriversValidationLayerSeesNoErrorInWhatHostsimExecutes(bool dynamic)
    {
        using var host = new HostSim("--validation");
        var (r, ppm) = Render(dynamic, host.ClientEnv(), "host-validated");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
        host.WaitForLog(" validation: ", 1, 10_000);
        AssertSameImage(Reference(dynamic), ppm, "through the ICD and a validated hostsim");
        var errors = host.Log.Split('\n').Where(l => l.Contains("Validation Error")).ToList();
        if (errors.Count > 0)
            Assert.Fail($"{errors.Count} validation errors on the host: " + string.Join(", ",
                errors.GroupBy(l => Regex.Match(l, @"\[ (VUID-\S+) \]").Groups[1].Value).Select(g => $"{g.Key} x{g.Count()}")) +
                "\nfirst: " + errors[0]);
        Assert.Matches(@"session \d+ validation: 0 errors", host.Log);
        // The canary: the layer really runs in hostsim, and the guest's one misuse reaches the host and is reported there.
        var (provoked, _) = Render(dynamic, host.ClientEnv(), "host-provoked", " --provoke-validation");
        Assert.True(provoked.ExitCode == 0, provoked.Stdout + provoked.Stderr + host.Log);
        host.WaitForLog(" validation: ", 2, 10_000);
        Assert.Contains("VUID-VkFenceCreateInfo-flags-parameter", host.Log);
    }
}
