namespace GuestIcd.Tests;

/// <summary>Every generated struct must have gcc's size and member offsets, or the ICD corrupts application memory.</summary>
public class LayoutTests
{
    [Fact]
    public void GeneratedStructsMatchTheSystemHeaderLayout()
    {
        var exe = Path.Combine(Path.GetTempPath(), "guesticd-layout-" + Environment.ProcessId);
        var cc = Repo.Run("cc", $"-std=c11 -O0 -o {exe} native-shim/Generated/layout_check.c");
        Assert.True(cc.ExitCode == 0, "compiling the layout check failed: " + cc.Stderr);
        var c = Repo.Run(exe, "");
        File.Delete(exe);
        Assert.Equal(0, c.ExitCode);
        var expected = c.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);

        var actual = new List<string>();
        GeneratedLayout.Write(actual);

        var mismatches = expected.Zip(actual).Where(p => p.First != p.Second).Select(p => $"C: {p.First}  C#: {p.Second}").ToList();
        Assert.True(mismatches.Count == 0, $"{mismatches.Count} layout differences:\n" + string.Join("\n", mismatches.Take(40)));
        Assert.Equal(expected.Length, actual.Count);
        // The registry pinned by the generator has 790 structs/unions and over 4,200 member offsets.
        Assert.Equal(790, expected.Count(l => !l.Split(' ')[0].Contains('.')));
        Assert.True(expected.Count(l => l.Split(' ')[0].Contains('.')) > 4200);
    }

    [Fact]
    public void GeneratedCommandSignaturesAreTheHeadersOwn()
    {
        var obj = Path.Combine(Path.GetTempPath(), "guesticd-protos-" + Environment.ProcessId + ".o");
        // -Werror: a redeclaration that differs from vulkan_core.h in any parameter fails to compile.
        var cc = Repo.Run("cc", $"-std=c11 -Werror -c -o {obj} native-shim/Generated/prototypes_check.c");
        File.Delete(obj);
        Assert.True(cc.ExitCode == 0, cc.Stderr);
        Assert.Equal(578, GuestIcd.Vulkan.VkCommands.All.Length + GuestIcd.Vulkan.VkCommands.All.Sum(c => c.Aliases.Length));
        Assert.Contains(GuestIcd.Vulkan.VkCommands.All, c => c.Name == "vkGetPhysicalDeviceProperties2" && c.Aliases.Contains("vkGetPhysicalDeviceProperties2KHR")
            && c.Level == GuestIcd.Vulkan.VkCommandLevel.PhysicalDevice && c.Feature == "VK_VERSION_1_1");
    }
}
