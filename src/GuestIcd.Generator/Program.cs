using System.Xml.Linq;
using GuestIcd.Generator;

// guesticd-generator [--registry vk.xml] [--video video.xml] [--out REPO_ROOT] [--allow-any-version]
// Writes every Generated/ folder of the repository. The registry version is pinned: the layout check and
// the wire ids were verified against it, and a silent upgrade would change what the ICD exposes.
const string PinnedVersion = "239";
string registry = "/usr/share/vulkan/registry/vk.xml";
string? video = null;
string outDir = Directory.GetCurrentDirectory();
bool anyVersion = false;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--registry": registry = args[++i]; break;
        case "--video": video = args[++i]; break;
        case "--out": outDir = args[++i]; break;
        case "--allow-any-version": anyVersion = true; break;
        default: Console.Error.WriteLine($"unknown argument {args[i]}"); return 2;
    }
}
if (!File.Exists(registry)) { Console.Error.WriteLine($"registry not found: {registry} (install libvulkan-dev)"); return 2; }
var reg = Registry.Load(registry);
if (reg.HeaderVersion != PinnedVersion && !anyVersion)
{
    Console.Error.WriteLine($"registry {registry} is version 1.3.{reg.HeaderVersion}; this generator is pinned to 1.3.{PinnedVersion}. Pass --allow-any-version to generate anyway.");
    return 3;
}
video ??= Path.Combine(Path.GetDirectoryName(registry)!, "video.xml");
if (File.Exists(video))
    foreach (var t in XDocument.Load(video).Root!.Element("types")!.Elements("type"))
        if ((string?)t.Attribute("category") == "enum") reg.VideoEnums.Add((string)t.Attribute("name")!);

var cs = new CSharpTypes(reg);
var types = new EmitTypes(reg, cs);
var files = new Dictionary<string, string>
{
    ["src/GuestIcd.Vulkan/Generated/Constants.cs"] = types.Constants(),
    ["src/GuestIcd.Vulkan/Generated/Enums.cs"] = types.Enums(),
    ["src/GuestIcd.Vulkan/Generated/Handles.cs"] = types.Handles(),
    ["src/GuestIcd.Vulkan/Generated/Structs.cs"] = types.Structs(),
};
files["src/GuestIcd.Vulkan/Generated/FixedArrays.cs"] = types.FixedArrays();
files["native-shim/Generated/layout_check.c"] = types.LayoutC();
files["tests/GuestIcd.Tests/Generated/GeneratedLayout.cs"] = types.LayoutCs();
foreach (var (k, v) in new EmitCommands(reg, cs).All()) files[k] = v;
files["hostsim/GuestIcd.HostSim/Generated/Formats.cs"] = EmitFormats.Formats(registry, reg);

foreach (var (rel, text) in files)
{
    var path = Path.Combine(outDir, rel);
    Directory.CreateDirectory(Path.GetDirectoryName(path)!);
    File.WriteAllText(path, text.ReplaceLineEndings("\n"));
}
Console.WriteLine($"registry 1.3.{reg.HeaderVersion}: {types.CoreStructs.Count()} structs/unions, {reg.CoreCommands.Count} commands; wrote {files.Count} files to {outDir}");
return 0;
