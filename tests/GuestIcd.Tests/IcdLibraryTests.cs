using System.Diagnostics;
using System.Text.RegularExpressions;

namespace GuestIcd.Tests;

/// <summary>The facts of DESIGN.md §5 checked on the library the build produced and inside a real application.</summary>
public class IcdLibraryTests
{
    static string Library => Path.Combine(Path.GetDirectoryName(HostSim.Manifest)!, "libguesticd.so");

    [Fact]
    public void ExportsExactlyTheThreeLoaderSymbols()
    {
        var nm = Repo.Run("nm", $"-D --defined-only {Library}");
        Assert.Equal(0, nm.ExitCode);
        var vk = Regex.Matches(nm.Stdout, @"\s(vk\w+)").Select(m => m.Groups[1].Value).OrderBy(x => x).ToArray();
        Assert.Equal(new[] { "vk_icdGetInstanceProcAddr", "vk_icdGetPhysicalDeviceProcAddr", "vk_icdNegotiateLoaderICDInterfaceVersion" }, vk);
    }

    [Fact]
    public void LinksWithNodeleteAndSymbolic()
    {
        var r = Repo.Run("readelf", $"-d {Library}");
        Assert.Equal(0, r.ExitCode);
        Assert.Matches(@"FLAGS_1\)\s+Flags:.*NODELETE", r.Stdout);
        Assert.Contains("SYMBOLIC", r.Stdout);
    }

    [Fact]
    public void InsideAnApplicationItLoadsNoIcuAndReservesLittleAddressSpace()
    {
        using var host = new HostSim();
        var exe = Path.Combine(Path.GetTempPath(), $"guesticd-device_lost-load-{Environment.ProcessId}");
        Assert.Equal(0, Repo.Run("cc", $"-std=c11 -o {exe} native-shim/clients/device_lost.c -lvulkan").ExitCode);
        var psi = new ProcessStartInfo(exe) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var (k, v) in host.ClientEnv()) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        try
        {
            string? line;
            while ((line = p.StandardOutput.ReadLine()) is not null && line != "ready") { }
            Assert.Equal("ready", line);
            var maps = File.ReadAllText($"/proc/{p.Id}/maps");
            Assert.Contains("libguesticd.so", maps);
            Assert.DoesNotContain("libicu", maps);
            var vmSizeKb = long.Parse(Regex.Match(File.ReadAllText($"/proc/{p.Id}/status"), @"VmSize:\s+(\d+) kB").Groups[1].Value);
            // Without a baked GC RegionRange the NativeAOT runtime reserves ~47 GiB in every Vulkan application.
            Assert.True(vmSizeKb < 4L * 1024 * 1024, $"the application reserves {vmSizeKb / 1024} MiB of address space");
        }
        finally
        {
            p.StandardInput.WriteLine("go");
            p.StandardInput.Close();
            p.WaitForExit(30_000);
            File.Delete(exe);
        }
        Assert.Equal(0, p.ExitCode);
    }
}
