using System.Buffers.Binary;
using System.Text;
using System.Text.RegularExpressions;

namespace GuestIcd.Tests;

/// <summary>
/// `serve --capture` and `replay` (issue 12, point 5): a real guest (the C compute and render clients through
/// the loader and the ICD) against a capturing hostsim, then its capture replayed on lavapipe by
/// `guesticd-hostsim replay --dump-memory`: the shared-heap ranges the replay ends with must hold the bytes
/// the guest read. That depends on the capture's memory snapshots (the guest writes its input into mapped
/// memory, which is not in the stream); with them turned off (GUESTICD_CAPTURE_NO_MEMORY=1) the replayed
/// output differs, which the negative test shows. Damaged captures are refused with what is wrong and where.
/// </summary>
public class CaptureReplayTests
{
    const int Elements = 65536;
    const int Width = 128, Height = 128;

    static readonly Lazy<(string Dir, string Compute, string Spv, string Render, string Vert, string Frag)> Built = new(() =>
    {
        var dir = Directory.CreateTempSubdirectory("guesticd-capture").FullName;
        var spv = Path.Combine(dir, "multiply.spv");
        var vert = Path.Combine(dir, "render.vert.spv");
        var frag = Path.Combine(dir, "render.frag.spv");
        foreach (var (src, dst) in new[] { ("native-shim/shaders/multiply.comp", spv), ("native-shim/shaders/render.vert", vert), ("native-shim/shaders/render.frag", frag) })
        {
            var glslc = Repo.Run("glslc", $"-o {dst} {src}");
            Assert.True(glslc.ExitCode == 0, glslc.Stderr);
        }
        var compute = Path.Combine(dir, "compute");
        var render = Path.Combine(dir, "render");
        foreach (var (src, exe) in new[] { ("compute.c", compute), ("render.c", render) })
        {
            var cc = Repo.Run("cc", $"-std=c11 -O1 -Wall -Werror -o {exe} native-shim/clients/{src} -lvulkan");
            Assert.True(cc.ExitCode == 0, cc.Stderr);
        }
        return (dir, compute, spv, render, vert, frag);
    });

    /// <summary>Runs a client against a capturing hostsim and returns the capture of its instance's session
    /// (the largest: the loader's probe sessions hold a hello and little else).</summary>
    static string Capture(string exe, string args, IDictionary<string, string>? hostEnv = null)
    {
        var dir = Directory.CreateTempSubdirectory("guesticd-cap").FullName;
        using (var host = new HostSim(hostEnv, "--capture", dir))
        {
            var r = Repo.Run(exe, args, host.ClientEnv(), timeoutMs: 120_000);
            Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + host.Log);
            host.WaitForLog("guest disconnected", 10_000);
            // The capture is finished (its end record written) when the session's worker disposes it.
            var sw = System.Diagnostics.Stopwatch.StartNew();
            while (!Directory.GetFiles(dir, "*.gicd").Any(Complete) && sw.ElapsedMilliseconds < 10_000) Thread.Sleep(50);
        }
        var files = Directory.GetFiles(dir, "*.gicd");
        Assert.NotEmpty(files);
        return files.OrderByDescending(f => new FileInfo(f).Length).First();
    }

    /// <summary>The file ends with an end record (kind 3, 20 bytes, then its CRC).</summary>
    internal static bool Complete(string file)
    {
        var b = File.ReadAllBytes(file);
        return b.Length >= 24 + 32 && BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(b.Length - 32)) == 3 && BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(b.Length - 28)) == 20;
    }

    static (Repo.Result Result, byte[][] Ranges) Replay(string capture, string extra = "")
    {
        var dump = Directory.CreateTempSubdirectory("guesticd-dump").FullName;
        var r = Repo.Run(HostSim.Executable, $"replay {capture} --log-level Warning --dump-memory {dump} {extra}", timeoutMs: 120_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Contains(", 0 errors; ended: guest disconnected", r.Stdout);
        return (r, Directory.GetFiles(dump, "heap-*.bin").Order().Select(File.ReadAllBytes).ToArray());
    }

    /// <summary>What the compute client reads back after its last round, and checks element by element.</summary>
    static byte[] ComputeOutput()
    {
        var b = new byte[Elements * 4];
        for (uint i = 0; i < Elements; i++) BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan((int)i * 4), (i * 7u + 3u) * 11u + i);
        return b;
    }

    static bool Holds(byte[] range, byte[] want) => range.Length >= want.Length && range.AsSpan(0, want.Length).SequenceEqual(want);

    [Fact]
    public void TheComputeClientsReplayedSessionWritesTheSameOutputBytes()
    {
        var (_, exe, spv, _, _, _) = Built.Value;
        var capture = Capture(exe, $"{spv} {Elements}");
        var (r, ranges) = Replay(capture);
        Assert.Matches(new Regex(@"capture: version 2, \d+ records, [1-9]\d* memory snapshots"), r.Stdout);
        var want = ComputeOutput();
        Assert.True(ranges.Any(x => Holds(x, want)),
            $"no replayed heap range holds the guest's output; ranges: {string.Join(", ", ranges.Select(x => $"{x.Length} bytes starting {Convert.ToHexString(x.AsSpan(0, 16))}"))}\n{r.Stdout}");
    }

    [Fact]
    public void WithoutMemorySnapshotsTheReplayedComputeOutputDiffers()
    {
        // The negative control for the test above: the same session captured with the snapshots off. The guest
        // still verifies its output live; the replay, which never sees the input the guest wrote into mapped
        // memory, computes from zeros.
        var (_, exe, spv, _, _, _) = Built.Value;
        var capture = Capture(exe, $"{spv} {Elements}", new Dictionary<string, string> { ["GUESTICD_CAPTURE_NO_MEMORY"] = "1" });
        var (r, ranges) = Replay(capture);
        Assert.Contains(" 0 memory snapshots", r.Stdout);
        Assert.NotEmpty(ranges);
        Assert.False(ranges.Any(x => Holds(x, ComputeOutput())), "the replay reproduced the output without the guest's input: the comparison proves nothing");
    }

    [Fact]
    public void TheRenderClientsReplayedSessionWritesTheSameImage()
    {
        var (dir, _, _, exe, vert, frag) = Built.Value;
        var ppm = Path.Combine(dir, $"capture-{Guid.NewGuid():N}.ppm");
        var capture = Capture(exe, $"{vert} {frag} {ppm}");
        var header = Encoding.ASCII.GetBytes($"P6\n{Width} {Height}\n255\n");
        var image = File.ReadAllBytes(ppm);
        Assert.Equal(header, image[..header.Length]);
        var pixels = image[header.Length..];
        var (r, ranges) = Replay(capture);
        // The readback buffer holds RGBA; the client wrote its RGB.
        static byte[] Rgb(byte[] rgba)
        {
            var rgb = new byte[Width * Height * 3];
            for (int i = 0; i < Width * Height; i++) { rgb[3 * i] = rgba[4 * i]; rgb[3 * i + 1] = rgba[4 * i + 1]; rgb[3 * i + 2] = rgba[4 * i + 2]; }
            return rgb;
        }
        var readbacks = ranges.Where(x => x.Length >= Width * Height * 4).Select(Rgb).ToArray();
        Assert.True(readbacks.Any(x => x.AsSpan().SequenceEqual(pixels)),
            $"no replayed heap range holds the guest's image ({ranges.Length} ranges)\n{r.Stdout}");
        // And the image is a drawing, not the clear colour a replay without the vertex and texture data would give.
        Assert.True(pixels.Count(b => b != 0) > Width * Height, "the guest's image is nearly black");
    }

    /// <summary>A small real capture (the committed corpus' compute session, tests/fuzz/capture-corpus.sh).</summary>
    static byte[] CorpusCapture()
    {
        var b = File.ReadAllBytes(Repo.PathOf("tests/fuzz/corpus/compute.gicd"));
        Assert.Equal("GICDCAP\0", Encoding.ASCII.GetString(b, 0, 8));
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(8)));
        return b;
    }

    static Repo.Result ReplayBytes(byte[] file, string extra = "")
    {
        var path = Path.Combine(Directory.CreateTempSubdirectory("guesticd-bad").FullName, "capture.gicd");
        File.WriteAllBytes(path, file);
        return Repo.Run(HostSim.Executable, $"replay {path} --log-level Warning {extra}", timeoutMs: 60_000);
    }

    static void AssertRefused(Repo.Result r, string message)
    {
        Assert.True(r.ExitCode == 2, $"exit {r.ExitCode}\n{r.Stdout}{r.Stderr}");
        Assert.Contains(message, r.Stderr);
        Assert.DoesNotContain("Unhandled exception", r.Stderr);
        Assert.DoesNotContain("commands,", r.Stdout);   // nothing ran
    }

    [Fact]
    public void ADamagedCaptureIsRefusedWithWhatIsWrong()
    {
        var good = CorpusCapture();
        var ok = ReplayBytes(good);
        Assert.True(ok.ExitCode == 0, ok.Stdout + ok.Stderr);
        Assert.Contains(", 0 errors; ended: guest disconnected", ok.Stdout);

        AssertRefused(ReplayBytes(good[..(good.Length - 100)]), "capture truncated: record ");
        AssertRefused(ReplayBytes(good[..20]), "capture truncated: 20 bytes, shorter than its 24-byte header");

        var magic = (byte[])good.Clone();
        magic[6] = (byte)'X';
        AssertRefused(ReplayBytes(magic), "not a capture: the file starts with neither the capture magic");

        var version = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(version.AsSpan(8), 99);
        AssertRefused(ReplayBytes(version), "capture version 99; this hostsim reads versions 1 and 2");

        // A byte inside a record's data: its checksum. The largest record's middle, found by walking the framing.
        int at = 24, largest = 0, largestAt = 0;
        while (at < good.Length)
        {
            int len = (int)BinaryPrimitives.ReadUInt32LittleEndian(good.AsSpan(at + 4));
            if (len > largest) { largest = len; largestAt = at; }
            at += 8 + len + 4;
        }
        var flipped = (byte[])good.Clone();
        flipped[largestAt + 8 + largest / 2] ^= 0x40;
        AssertRefused(ReplayBytes(flipped), "fails its checksum");

        // A byte of the first record's length: the framing.
        var length = (byte[])good.Clone();
        length[24 + 7] ^= 0x10;
        AssertRefused(ReplayBytes(length), "capture corrupted: record 1 at byte 24 claims");
    }

    [Fact]
    public void ACaptureCutAtARecordBoundaryReplaysWithPartialOnly()
    {
        // What a hostsim that died mid-session leaves: whole records, no end record.
        var good = CorpusCapture();
        var cut = good[..(good.Length - 32)];
        AssertRefused(ReplayBytes(cut), "without its end record");
        var r = ReplayBytes(cut, "--partial");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Contains("replaying the whole records it holds (--partial)", r.Stderr);
        Assert.Contains(", 0 errors; ended: guest disconnected", r.Stdout);
    }

    [Fact]
    public void ReplayPrintsProgressLinesWhenStderrIsNotATerminal()
    {
        var r = ReplayBytes(CorpusCapture(), "--progress-every-ms 1");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Matches(new Regex(@"replay: \d+% \(\d+ of \d+ KiB, \d+ commands"), r.Stderr);
        Assert.Contains("replay: 100%", r.Stderr);
        // stdout keeps only the result, for scripts.
        Assert.DoesNotContain("%", r.Stdout);
        var quiet = ReplayBytes(CorpusCapture(), "--progress-every-ms 1 --no-progress");
        Assert.DoesNotContain("replay: ", quiet.Stderr);
    }

    [Fact]
    public void AReplayOnADeviceTheHostLacksIsRefused()
    {
        var r = ReplayBytes(CorpusCapture(), "--device no-such-gpu");
        AssertRefused(r, "no host device matches --device no-such-gpu");
    }
}
