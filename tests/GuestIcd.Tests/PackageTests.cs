using Xunit.Abstractions;

namespace GuestIcd.Tests;

/// <summary>
/// The Debian packages (scripts/package.sh) installed with dpkg into a throw-away copy of this machine
/// (tests/packages/install-test.sh: an overlay over / in a private mount namespace), hostsim started with its
/// installed unit's command line, user and environment, and vulkaninfo and the compute client run with an empty
/// environment: the loader finds the ICD by its manifest in /usr/share/vulkan/icd.d, the ICD its transport in
/// /etc/guesticd.conf.
/// </summary>
public class PackageTests(ITestOutputHelper output)
{
    static readonly Lazy<Repo.Result> Packaged = new(() =>
    {
        // scripts/test.sh builds the packages before the tests; a test run on its own builds them here.
        var debs = Directory.Exists(Repo.PathOf("out/packages")) ? Directory.GetFiles(Repo.PathOf("out/packages"), "guesticd*.deb") : [];
        return debs.Length >= 2 ? new Repo.Result(0, "", "")
            : Repo.Run("bash", "scripts/package.sh --reuse-icd --no-lintian", timeoutMs: 900_000);
    });

    [SkippableFact]
    public void InstalledPackagesServeVulkaninfoAndTheComputeClientWithoutEnvironment()
    {
        Skip.If(Environment.GetEnvironmentVariable("GUESTICD_SKIP_PACKAGE_TEST") == "1", "GUESTICD_SKIP_PACKAGE_TEST=1");
        var built = Packaged.Value;
        Assert.True(built.ExitCode == 0, "scripts/package.sh failed:\n" + built.Stdout + built.Stderr);
        var r = Repo.Run("bash", "tests/packages/install-test.sh", timeoutMs: 300_000);
        output.WriteLine(r.Stdout);
        output.WriteLine(r.Stderr);
        Skip.If(r.ExitCode == 77 && Environment.GetEnvironmentVariable("CI") != "true", r.Stderr.Trim());
        Assert.True(r.ExitCode == 0, $"exit {r.ExitCode}\n{r.Stdout}\n{r.Stderr}");
        string Section(string name)
        {
            int start = r.Stdout.IndexOf("== " + name + "\n", StringComparison.Ordinal);
            Assert.True(start >= 0, $"no section {name} in:\n{r.Stdout}");
            int end = r.Stdout.IndexOf("\n== ", start + 3, StringComparison.Ordinal);
            return end < 0 ? r.Stdout[start..] : r.Stdout[start..end];
        }
        Assert.Contains("guesticd-hostsim 0.1.0-1 install ok installed", Section("dpkg -i"));
        Assert.Contains("ExecStart=/usr/bin/guesticd-hostsim serve --config /etc/guesticd/hostsim.conf", Section("unit"));
        Assert.Contains("hostsim runs as: guesticd-hostsim", Section("hostsim"));
        // The socket's group is the service's, and others have no access (UMask=0007).
        Assert.Matches(@"srwxrwx--- 1 guesticd-hostsim guesticd .* /run/guesticd/hostsim\.sock", Section("hostsim"));
        var info = Section("vulkaninfo");
        Assert.Contains("deviceName         = GuestIcd: llvmpipe", info);
        Assert.Contains("PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU", info);
        var compute = Section("compute");
        // The loader sorts the virtual GPU before lavapipe's CPU device: the client's first device is ours.
        Assert.Contains("device: GuestIcd: llvmpipe", compute);
        Assert.Contains("round 1: verified 100000 elements", compute);
        var log = Section("hostsim log");
        // Under journald (JOURNAL_STREAM set) each line carries its syslog level and no timestamp of its own.
        Assert.Matches(@"(?m)^<6>hostsim\[0\] listening on unix:/run/guesticd/hostsim\.sock", log);
        Assert.Contains("session 2 ended (guest disconnected)", log);
        Assert.DoesNotContain("protocol error", log);
        Assert.Contains("purged", Section("dpkg --purge"));
    }
}
