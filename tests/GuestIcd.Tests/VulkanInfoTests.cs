using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using GuestIcd.Protocol;

namespace GuestIcd.Tests;

/// <summary>Debian's unmodified vulkaninfo, through the Khronos loader, our ICD and hostsim on lavapipe,
/// against vulkaninfo on lavapipe directly.</summary>
public class VulkanInfoTests
{
    /// <summary>Every difference the comparison tolerates, with its reason. Anything else fails the test.</summary>
    static readonly Dictionary<string, string> NotCarried = new()
    {
        // Presentation is the guest's (Surface.cs, Swapchain.cs): these are what it does not offer, or offers beyond lavapipe.
        ["VK_KHR_wayland_surface"] = "WSI: no Wayland presentation in the guest yet",
        ["VK_EXT_headless_surface"] = "WSI: the guest offers it, Mesa 22.3's lavapipe does not",
        ["VK_KHR_swapchain_mutable_format"] = "WSI: not offered by the guest's swapchains", ["VK_KHR_incremental_present"] = "WSI: not offered",
        ["VK_KHR_external_memory_fd"] = "a guest's file descriptor means nothing to the host",
        ["VK_EXT_external_memory_host"] = "a guest pointer means nothing to the host",
        ["VK_EXT_graphics_pipeline_library"] = "a library without fragment output state leaves members of VkPipelineRenderingCreateInfo undefined, which the codec would follow",
        ["VK_KHR_buffer_device_address"] = "a device address is a host pointer on a CPU driver: not served to guests",
        ["VK_EXT_buffer_device_address"] = "a device address is a host pointer: not served",
    };

    /// <summary>Structs vulkaninfo prints only with an extension the ICD does not carry (see NotCarried).</summary>
    static readonly HashSet<string> SectionsNotCarried =
    [
        "VkPhysicalDeviceGraphicsPipelineLibraryFeaturesEXT", "VkPhysicalDeviceGraphicsPipelineLibraryPropertiesEXT",
        "VkPhysicalDeviceBufferDeviceAddressFeaturesEXT",
    ];

    /// <summary>Extensions the guest offers that the host's driver does not (presentation is the guest's).</summary>
    static readonly HashSet<string> GuestOnly = ["VK_EXT_headless_surface"];

    static string Normalize(string text, bool viaIcd)
    {
        var lines = text.Replace("\r", "").Split('\n').ToList();
        var outLines = new List<string>();
        for (int i = 0; i < lines.Count; i++)
        {
            var l = lines[i];
            // The device is presented as a virtual GPU named after the host's device (issue 2, point 8).
            if (viaIcd) l = l.Replace("GuestIcd: ", "").Replace("PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU", "PHYSICAL_DEVICE_TYPE_CPU");
            var ext = Regex.Match(l, @"^\s*(VK_\w+)\s*: extension revision");
            if (ext.Success && NotCarried.ContainsKey(ext.Groups[1].Value)) continue;
            // Counts of lists we filtered are recomputed, not compared.
            l = Regex.Replace(l, @"(Extensions: count = )\d+", "$1N");
            if (Regex.IsMatch(l, "^=+$|^-+$")) l = "----";
            // Sections that exist only with an extension that is not carried.
            if (l.StartsWith("VkPhysicalDeviceExternalMemoryHostPropertiesEXT:")) { i += 3; continue; }
            if (SectionsNotCarried.Contains(l.TrimEnd(':')))
            {
                while (i + 1 < lines.Count && lines[i + 1].Length > 0) i++;
                i++;
                continue;
            }
            // Buffer device addresses are not served to guests (hostsim's gate), so the ICD does not report them (Features.cs).
            if (Regex.IsMatch(l, @"^\s*bufferDeviceAddress\w*\s*= ")) continue;
            // Device-group present capabilities: vulkaninfo creates a device with VK_KHR_swapchain for them (WSI).
            if (l.Contains("Present Capabilities"))
            {
                while (i + 1 < lines.Count && lines[i + 1].StartsWith("\t\t")) i++;
                continue;
            }
            outLines.Add(l);
        }
        return string.Join("\n", outLines);
    }

    static void AssertSameText(string native, string viaIcd)
    {
        var a = Normalize(native, false).Split('\n');
        var b = Normalize(viaIcd, true).Split('\n');
        for (int i = 0; i < Math.Min(a.Length, b.Length); i++)
            if (a[i] != b[i])
                Assert.Fail($"line {i} differs:\n  lavapipe: {a[i]}\n  via ICD : {b[i]}\ncontext (lavapipe):\n{string.Join("\n", a.Skip(Math.Max(0, i - 5)).Take(10))}");
        Assert.Equal(a.Length, b.Length);
    }

    static Repo.Result Native(string args) => Repo.Run("vulkaninfo", args, new Dictionary<string, string> { ["VK_DRIVER_FILES"] = HostSim.LavapipeManifest, ["VK_LOADER_LAYERS_DISABLE"] = "*" });

    [Fact]
    public void SummaryListsTheHostDeviceAsAVirtualGpu()
    {
        using var host = new HostSim();
        var r = Repo.Run("vulkaninfo", "--summary", host.ClientEnv());
        Assert.True(r.ExitCode == 0, r.Stderr + "\n" + host.Log);
        Assert.Contains("deviceName         = GuestIcd: llvmpipe", r.Stdout);
        Assert.Contains("PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU", r.Stdout);
        var native = Native("--summary");
        string Api(string s) => Regex.Match(s, @"apiVersion\s+= (\S+)").Groups[1].Value;
        Assert.Equal(Api(native.Stdout), Api(r.Stdout));
        Assert.Contains("protocol 1.2 agreed", host.Log);
    }

    [Fact]
    public void FullOutputMatchesLavapipeSectionBySection()
    {
        using var host = new HostSim();
        // --show-formats adds the properties of every format to the full output.
        var via = Repo.Run("vulkaninfo", "--show-formats", host.ClientEnv());
        Assert.True(via.ExitCode == 0, via.Stderr + "\n" + host.Log);
        var native = Native("--show-formats");
        Assert.Equal(0, native.ExitCode);
        // Sanity: the comparison really covers limits, features, formats, memory and queues.
        foreach (var section in new[] { "VkPhysicalDeviceLimits:", "VkPhysicalDeviceSparseProperties:", "VkPhysicalDeviceVulkan13Features:",
                     "VkPhysicalDeviceMemoryProperties:", "VkQueueFamilyProperties:", "Common Format Group[", "FORMAT_ASTC_12x12_SRGB_BLOCK" })
            Assert.Contains(section, via.Stdout);
        AssertSameText(native.Stdout, via.Stdout);
    }

    [Fact]
    public void JsonProfileMatchesLavapipe()
    {
        using var host = new HostSim();
        var dir = Directory.CreateTempSubdirectory("guesticd-json").FullName;
        try
        {
            var via = Repo.Run("vulkaninfo", $"--json=0 -o {dir}/via.json", host.ClientEnv());
            Assert.True(via.ExitCode == 0, via.Stderr + "\n" + host.Log);
            var native = Native($"--json=0 -o {dir}/native.json");
            Assert.Equal(0, native.ExitCode);
            var a = Clean(JsonNode.Parse(File.ReadAllText($"{dir}/native.json"))!, false);
            var b = Clean(JsonNode.Parse(File.ReadAllText($"{dir}/via.json"))!, true);
            Assert.Equal(a, b);
            Assert.True(a.Length > 100_000, "the profile should hold every format and feature");
        }
        finally { Directory.Delete(dir, true); }

        static string Clean(JsonNode n, bool viaIcd)
        {
            var text = n.ToJsonString();
            if (viaIcd) text = text.Replace("GuestIcd: ", "").Replace("GuestIcd:_", "").Replace("VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU", "VK_PHYSICAL_DEVICE_TYPE_CPU");
            var node = JsonNode.Parse(text)!;
            Strip(node);
            return node.ToJsonString();
        }

        static void Strip(JsonNode? n)
        {
            if (n is JsonObject o)
            {
                foreach (var k in o.Select(kv => kv.Key).ToList())
                    if (NotCarried.ContainsKey(k) || k == "VkPhysicalDeviceExternalMemoryHostPropertiesEXT" || SectionsNotCarried.Contains(k)
                        || k.StartsWith("bufferDeviceAddress", StringComparison.Ordinal)) o.Remove(k); // not served (Features.cs)
                foreach (var kv in o.ToList()) Strip(kv.Value);
            }
            else if (n is JsonArray arr) foreach (var e in arr) Strip(e);
        }
    }

    [Fact]
    public void TwentyRunsInARowNeverCrash()
    {
        using var host = new HostSim();
        for (int i = 0; i < 20; i++)
        {
            var r = Repo.Run("vulkaninfo", i % 2 == 0 ? "--summary" : "", host.ClientEnv(), timeoutMs: 60_000);
            Assert.True(r.ExitCode == 0, $"run {i}: exit {r.ExitCode}\n{r.Stderr}\n{host.Log}");
            Assert.Contains("GuestIcd: llvmpipe", r.Stdout);
        }
        Assert.DoesNotContain("protocol error", host.Log);
    }

    [Fact]
    public void EveryCarriedDeviceExtensionIsOneTheHostHas()
    {
        using var host = new HostSim();
        var via = Repo.Run("vulkaninfo", "", host.ClientEnv());
        var native = Native("");
        var ours = Regex.Matches(via.Stdout, @"^\s+(VK_\w+)\s+: extension revision", RegexOptions.Multiline).Select(m => m.Groups[1].Value).ToHashSet();
        var theirs = Regex.Matches(native.Stdout, @"^\s+(VK_\w+)\s+: extension revision", RegexOptions.Multiline).Select(m => m.Groups[1].Value).ToHashSet();
        Assert.Subset(theirs, ours.Except(GuestOnly).ToHashSet());
        // What is hidden is exactly what the generator marked uncarried and the test lists with a reason.
        var carried = Tables.Extensions.Where(e => e.Carried).Select(e => e.Name).ToHashSet();
        foreach (var hidden in theirs.Except(ours))
        {
            Assert.DoesNotContain(hidden, carried);
            Assert.True(NotCarried.ContainsKey(hidden), $"{hidden} is hidden by the ICD but the test gives no reason");
        }
    }
}
