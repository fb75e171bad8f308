using System.Text;

namespace GuestIcd.Generator;

/// <summary>Writes GuestIcd.Vulkan/Generated: constants, enums, handles, structs, unions, fixed arrays.</summary>
sealed class EmitTypes(Registry reg, CSharpTypes cs)
{
    public readonly SortedSet<int> FixedSizes = new();

    public IEnumerable<TypeDef> CoreStructs => reg.CoreTypes.OrderBy(x => x, StringComparer.Ordinal)
        .Select(t => reg.Types.GetValueOrDefault(t)).Where(t => t is { IsStruct: true }).Select(t => t!);

    public string Constants()
    {
        var sb = new StringBuilder(CSharpTypes.Header("Vulkan API constants."));
        sb.AppendLine("namespace GuestIcd.Vulkan;").AppendLine();
        sb.AppendLine("public static class VkConstants").AppendLine("{");
        var v = reg.HeaderVersionComplete.Split(',').Select(s => s.Trim()).ToArray();
        sb.AppendLine($"    public const uint VK_HEADER_VERSION = {reg.HeaderVersion};");
        sb.AppendLine($"    /// <summary>The registry these types were generated from: {v[1]}.{v[2]}.{reg.HeaderVersion}.</summary>");
        sb.AppendLine($"    public const uint VK_HEADER_VERSION_COMPLETE = ({v[0]}u << 29) | ({v[1]}u << 22) | ({v[2]}u << 12) | {reg.HeaderVersion}u;");
        foreach (var c in reg.Constants)
        {
            var (type, value) = c.Type switch
            {
                "float" => ("float", c.Value.Replace("F", "f")),
                "uint64_t" => ("ulong", c.Value.Replace("ULL", "UL")),
                "int32_t" => ("int", c.Value),
                _ => ("uint", c.Value),
            };
            if (value.Contains('~')) value = $"unchecked({value})";
            sb.AppendLine($"    public const {type} {c.Name} = {value};");
        }
        sb.AppendLine("}");
        return sb.ToString();
    }

    public string Enums()
    {
        var sb = new StringBuilder(CSharpTypes.Header("Vulkan enums and bitmasks."));
        sb.AppendLine("namespace GuestIcd.Vulkan;").AppendLine();
        foreach (var name in reg.CoreTypes.OrderBy(x => x, StringComparer.Ordinal))
        {
            if (!reg.Types.TryGetValue(name, out var td)) continue;
            if (td.Category == "enum")
            {
                if (!reg.Enums.TryGetValue(name, out var ed)) { sb.AppendLine($"public enum {name} : int {{ }}"); continue; }
                var under = ed.IsBitmask ? (ed.BitWidth == 64 ? "ulong" : "uint") : "int";
                WriteEnum(sb, name, under, ed.IsBitmask, ed);
            }
            else if (td.Category == "bitmask")
            {
                var under = td.BaseType == "VkFlags64" ? "ulong" : "uint";
                var ed = td.Bits is not null ? reg.Enums.GetValueOrDefault(td.Bits) : null;
                WriteEnum(sb, name, under, true, ed);
            }
        }
        return sb.ToString();
    }

    static void WriteEnum(StringBuilder sb, string name, string under, bool flags, EnumDef? ed)
    {
        if (flags) sb.AppendLine("[Flags]");
        sb.AppendLine($"public enum {name} : {under}").AppendLine("{");
        if (ed is not null)
            foreach (var v in ed.Values)
            {
                if (v.Alias is not null) { sb.AppendLine($"    {v.Name} = {v.Alias},"); continue; }
                var lit = under switch { "int" => v.Value.ToString(), "uint" => $"0x{(uint)v.Value:X}u", _ => $"0x{(ulong)v.Value:X}ul" };
                sb.AppendLine($"    {v.Name} = {lit},");
            }
        sb.AppendLine("}").AppendLine();
    }

    public string Handles()
    {
        var sb = new StringBuilder(CSharpTypes.Header("Vulkan handles: dispatchable ones are pointers, the others 64-bit values."));
        sb.AppendLine("namespace GuestIcd.Vulkan;").AppendLine();
        foreach (var name in reg.CoreTypes.OrderBy(x => x, StringComparer.Ordinal))
        {
            if (!reg.Types.TryGetValue(name, out var td) || td.Category != "handle") continue;
            var t = td.Dispatchable ? "nint" : "ulong";
            sb.AppendLine($"public readonly record struct {name}({t} Handle)").AppendLine("{");
            sb.AppendLine($"    public static readonly {name} Null = default;");
            sb.AppendLine($"    public bool IsNull => Handle == 0;");
            sb.AppendLine("}").AppendLine();
        }
        return sb.ToString();
    }

    /// <summary>Consecutive C bitfields share one storage unit; C# gets one field named after all of them.</summary>
    public static IEnumerable<(string Name, MemberDef First, List<MemberDef> Parts)> Fields(TypeDef td)
    {
        for (int i = 0; i < td.Members.Count; i++)
        {
            var m = td.Members[i];
            if (m.BitField is null) { yield return (m.Name, m, new List<MemberDef> { m }); continue; }
            var parts = new List<MemberDef> { m };
            int bits = m.BitField.Value;
            while (i + 1 < td.Members.Count && td.Members[i + 1].BitField is { } b && bits + b <= 32) { parts.Add(td.Members[++i]); bits += b; }
            yield return (string.Join("_", parts.Select(p => p.Name)), m, parts);
        }
    }

    public string Structs()
    {
        var sb = new StringBuilder(CSharpTypes.Header("Vulkan structs and unions with the C layout of vulkan_core.h."));
        sb.AppendLine("using System.Runtime.InteropServices;").AppendLine();
        sb.AppendLine("namespace GuestIcd.Vulkan;").AppendLine();
        sb.AppendLine("/// <summary>Stands for a video-codec std struct that is only ever reached through a pointer.</summary>");
        sb.AppendLine("public struct StdVideoOpaque { }").AppendLine();
        foreach (var td in CoreStructs)
        {
            sb.AppendLine(td.IsUnion ? "[StructLayout(LayoutKind.Explicit)]" : "[StructLayout(LayoutKind.Sequential)]");
            sb.AppendLine($"public unsafe partial struct {td.Name}").AppendLine("{");
            foreach (var (name, first, parts) in Fields(td))
            {
                string type;
                if (parts.Count > 1 || first.BitField is not null) type = "uint";
                else type = cs.Of(first);
                foreach (var d in first.ArrayDims) FixedSizes.Add(cs.ArrayCount(d));
                if (td.IsUnion) sb.Append("    [FieldOffset(0)] ");
                else sb.Append("    ");
                sb.AppendLine($"public {type} {CSharpTypes.Id(name)};");
            }
            sb.AppendLine("}").AppendLine();
        }
        return sb.ToString();
    }

    public string FixedArrays()
    {
        var sb = new StringBuilder(CSharpTypes.Header("Inline arrays for the fixed-size arrays of Vulkan structs."));
        sb.AppendLine("using System.Runtime.CompilerServices;").AppendLine();
        sb.AppendLine("namespace GuestIcd.Vulkan;").AppendLine();
        foreach (var n in FixedSizes)
        {
            sb.AppendLine($"[InlineArray({n})]");
            sb.AppendLine($"public struct FixedArray{n}<T> where T : unmanaged").AppendLine("{");
            sb.AppendLine("    private T _e0;");
            sb.AppendLine($"    public const int Length = {n};");
            sb.AppendLine("}").AppendLine();
        }
        return sb.ToString();
    }

    /// <summary>A C program that prints the size of every struct and the offset of every member, as gcc lays them out.</summary>
    public string LayoutC()
    {
        var sb = new StringBuilder();
        sb.AppendLine("/* Generated by src/GuestIcd.Generator. Do not edit. */");
        sb.AppendLine("#include <stdio.h>").AppendLine("#include <stddef.h>").AppendLine("#include <vulkan/vulkan_core.h>").AppendLine();
        sb.AppendLine("int main(void) {");
        foreach (var td in CoreStructs)
        {
            sb.AppendLine($"    printf(\"{td.Name} %zu\\n\", sizeof({td.Name}));");
            foreach (var (name, first, parts) in Fields(td))
            {
                if (first.BitField is not null) continue; // offsetof cannot name a bitfield; the size covers it
                sb.AppendLine($"    printf(\"{td.Name}.{name} %zu\\n\", offsetof({td.Name}, {name}));");
            }
        }
        sb.AppendLine("    return 0;").AppendLine("}");
        return sb.ToString();
    }

    /// <summary>The same listing as <see cref="LayoutC"/>, measured on the C# types by the runtime.</summary>
    public string LayoutCs()
    {
        var sb = new StringBuilder(CSharpTypes.Header("Sizes and offsets of the generated C# types, for the layout test."));
        sb.AppendLine("using GuestIcd.Vulkan;").AppendLine();
        sb.AppendLine("namespace GuestIcd.Tests;").AppendLine();
        sb.AppendLine("public static unsafe class GeneratedLayout").AppendLine("{");
        sb.AppendLine("    public static void Write(System.Collections.Generic.List<string> lines)").AppendLine("    {");
        foreach (var td in CoreStructs)
        {
            sb.AppendLine($"        {{ {td.Name} v = default; byte* b = (byte*)&v;");
            sb.AppendLine($"        lines.Add(\"{td.Name} \" + sizeof({td.Name}));");
            foreach (var (name, first, _) in Fields(td))
            {
                if (first.BitField is not null) continue;
                sb.AppendLine($"        lines.Add(\"{td.Name}.{name} \" + (nuint)((byte*)&v.{CSharpTypes.Id(name)} - b));");
            }
            sb.AppendLine("        }");
        }
        sb.AppendLine("    }").AppendLine("}");
        return sb.ToString();
    }
}
