using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace GuestIcd.Generator;

/// <summary>The parts of vk.xml the generator needs, restricted to what vulkan_core.h declares.</summary>
sealed class Registry
{
    public string HeaderVersion = "";
    public string HeaderVersionComplete = "";
    public readonly Dictionary<string, TypeDef> Types = new();
    public readonly Dictionary<string, EnumDef> Enums = new();
    public readonly List<ConstDef> Constants = new();
    public readonly Dictionary<string, CommandDef> Commands = new();
    public readonly Dictionary<string, string> CommandAliases = new();   // alias -> target
    public readonly Dictionary<string, string> TypeAliases = new();      // alias -> target
    public readonly List<FeatureDef> Features = new();                  // versions then extensions, core header only
    public readonly HashSet<string> CoreTypes = new();                   // types vulkan_core.h defines
    public readonly HashSet<string> CoreCommands = new();
    public readonly HashSet<string> VideoEnums = new();                  // StdVideo* enums: C enums, 4 bytes
    public readonly Dictionary<string, XElement> ExtensionXml = new();

    static bool ApiIsVulkan(XElement e)
    {
        var api = (string?)e.Attribute("api");
        return api is null || api.Split(',').Contains("vulkan");
    }

    public static Registry Load(string path)
    {
        var doc = XDocument.Load(path);
        var r = new Registry();
        var root = doc.Root!;
        foreach (var t in root.Element("types")!.Elements("type"))
        {
            if (!ApiIsVulkan(t)) continue;
            var cat = (string?)t.Attribute("category") ?? "";
            var name = (string?)t.Attribute("name") ?? (string?)t.Element("name") ?? "";
            if (t.Attribute("alias") is { } alias) { r.TypeAliases[name] = alias.Value; continue; }
            if (cat == "define")
            {
                var text = t.Value;
                if (name == "VK_HEADER_VERSION") r.HeaderVersion = Regex.Match(text, @"VK_HEADER_VERSION\s+(\d+)").Groups[1].Value;
                if (name == "VK_HEADER_VERSION_COMPLETE")
                    r.HeaderVersionComplete = Regex.Match(text, @"VK_MAKE_API_VERSION\(([^)]*)\)").Groups[1].Value;
                continue;
            }
            var td = new TypeDef { Name = name, Category = cat, Xml = t };
            switch (cat)
            {
                case "basetype":
                    td.BaseType = (string?)t.Element("type");
                    if (t.Value.Contains('*')) td.BaseType = "void*";
                    break;
                case "bitmask":
                    td.BaseType = (string?)t.Element("type");
                    td.Bits = (string?)t.Attribute("requires") ?? (string?)t.Attribute("bitvalues");
                    break;
                case "handle":
                    td.Dispatchable = (string?)t.Element("type") == "VK_DEFINE_HANDLE";
                    td.ObjType = (string?)t.Attribute("objtypeenum");
                    td.Parent = (string?)t.Attribute("parent");
                    break;
                case "struct":
                case "union":
                    td.ReturnedOnly = (string?)t.Attribute("returnedonly") == "true";
                    td.StructExtends = ((string?)t.Attribute("structextends"))?.Split(',').ToList() ?? new();
                    foreach (var m in t.Elements("member"))
                    {
                        if (!ApiIsVulkan(m)) continue;
                        td.Members.Add(ParseMember(m));
                    }
                    break;
            }
            if (name.Length > 0) r.Types[name] = td;
        }
        foreach (var e in root.Elements("enums"))
        {
            var name = (string)e.Attribute("name")!;
            if (name == "API Constants")
            {
                foreach (var c in e.Elements("enum"))
                {
                    if (c.Attribute("alias") is not null) continue;
                    r.Constants.Add(new ConstDef((string)c.Attribute("name")!, (string)c.Attribute("value")!, (string?)c.Attribute("type") ?? "uint32_t"));
                }
                continue;
            }
            var ed = new EnumDef { Name = name, IsBitmask = (string?)e.Attribute("type") == "bitmask", BitWidth = (int?)e.Attribute("bitwidth") ?? 32 };
            foreach (var v in e.Elements("enum"))
            {
                if (!ApiIsVulkan(v)) continue;
                AddEnumValue(ed, v, 0);
            }
            r.Enums[name] = ed;
        }
        foreach (var c in root.Element("commands")!.Elements("command"))
        {
            if (!ApiIsVulkan(c)) continue;
            if (c.Attribute("alias") is { } a) { r.CommandAliases[(string)c.Attribute("name")!] = a.Value; continue; }
            var proto = c.Element("proto")!;
            var cd = new CommandDef
            {
                Name = (string)proto.Element("name")!,
                ReturnType = (string)proto.Element("type")!,
                SuccessCodes = ((string?)c.Attribute("successcodes"))?.Split(',').ToList() ?? new(),
                ErrorCodes = ((string?)c.Attribute("errorcodes"))?.Split(',').ToList() ?? new(),
            };
            foreach (var p in c.Elements("param"))
            {
                if (!ApiIsVulkan(p)) continue;
                cd.Params.Add(ParseMember(p));
            }
            r.Commands[cd.Name] = cd;
        }
        // Features (core versions) and extensions, in registry order.
        foreach (var f in root.Elements("feature"))
        {
            if (!ApiIsVulkan(f)) continue;
            r.Features.Add(ParseFeature(r, f, false));
        }
        foreach (var x in root.Element("extensions")!.Elements("extension"))
        {
            var supported = ((string?)x.Attribute("supported") ?? "").Split(',');
            if (!supported.Contains("vulkan")) continue;
            r.Features.Add(ParseFeature(r, x, true));
            r.ExtensionXml[(string)x.Attribute("name")!] = x;
        }
        r.ComputeCoreSet();
        return r;
    }

    static FeatureDef ParseFeature(Registry r, XElement f, bool isExtension)
    {
        var fd = new FeatureDef
        {
            Name = (string)f.Attribute("name")!,
            IsExtension = isExtension,
            Number = isExtension ? (int?)f.Attribute("number") ?? 0 : 0,
            ExtType = (string?)f.Attribute("type"),
            Platform = (string?)f.Attribute("platform"),
            Provisional = (string?)f.Attribute("provisional") == "true",
            Promotedto = (string?)f.Attribute("promotedto"),
        };
        foreach (var req in f.Elements("require"))
        {
            if (!ApiIsVulkan(req)) continue;
            // Commands that exist only together with another extension do not decide whether this one is carried.
            bool conditional = req.Attribute("extension") is not null || req.Attribute("depends") is not null || req.Attribute("feature") is not null;
            foreach (var c in req.Elements("command"))
                (conditional ? fd.ConditionalCommands : fd.Commands).Add((string)c.Attribute("name")!);
            foreach (var t in req.Elements("type"))
                (conditional ? fd.ConditionalTypes : fd.Types).Add((string)t.Attribute("name")!);
            foreach (var e in req.Elements("enum"))
            {
                if (!ApiIsVulkan(e)) continue;
                var ext = (string?)e.Attribute("extends");
                var name = (string)e.Attribute("name")!;
                if (name.EndsWith("_SPEC_VERSION") && e.Attribute("value") is { } sv) fd.SpecVersion = int.TryParse(sv.Value, out var n) ? n : 0;
                if (ext is null) continue;
                if (!r.Enums.TryGetValue(ext, out var ed)) continue;
                var extnumber = (int?)e.Attribute("extnumber") ?? fd.Number;
                AddEnumValue(ed, e, extnumber);
            }
        }
        return fd;
    }

    static void AddEnumValue(EnumDef ed, XElement v, int extnumber)
    {
        var name = (string)v.Attribute("name")!;
        if (ed.Values.Any(x => x.Name == name)) return;
        if (v.Attribute("alias") is { } alias) { ed.Values.Add(new EnumValue(name, 0, alias.Value)); return; }
        long value;
        if (v.Attribute("bitpos") is { } bp) value = 1L << int.Parse(bp.Value);
        else if (v.Attribute("offset") is { } off)
        {
            value = 1000000000L + (extnumber - 1) * 1000L + long.Parse(off.Value);
            if ((string?)v.Attribute("dir") == "-") value = -value;
        }
        else if (v.Attribute("value") is { } val) value = ParseNumber(val.Value);
        else return;
        ed.Values.Add(new EnumValue(name, value, null));
    }

    public static long ParseNumber(string s)
    {
        s = s.Trim();
        bool neg = s.StartsWith('-');
        if (neg) s = s[1..];
        long v = s.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? Convert.ToInt64(s[2..], 16) : long.Parse(s);
        return neg ? -v : v;
    }

    static MemberDef ParseMember(XElement m)
    {
        var md = new MemberDef
        {
            Name = (string)m.Element("name")!,
            Type = (string)m.Element("type")!,
            Len = (string?)m.Attribute("len"),
            AltLen = (string?)m.Attribute("altlen"),
            Stride = (string?)m.Attribute("stride"),
            Optional = (string?)m.Attribute("optional"),
            Values = (string?)m.Attribute("values"),
            Selector = (string?)m.Attribute("selector"),
            NoAutoValidity = (string?)m.Attribute("noautovalidity") == "true",
        };
        // Text outside <comment>, in document order, decides const, pointers, arrays and bitfields.
        var text = string.Concat(m.Nodes().Where(n => n is not XElement { Name.LocalName: "comment" })
            .Select(n => n is XElement el ? (el.Name.LocalName == "enum" ? "[" + el.Value + "]" : " " + el.Value + " ") : ((XText)n).Value));
        text = text.Replace("[[", "[").Replace("]]", "]");
        var typePos = text.IndexOf(" " + md.Type + " ", StringComparison.Ordinal);
        var namePos = text.IndexOf(" " + md.Name + " ", typePos + 1, StringComparison.Ordinal);
        md.IsConst = text[..Math.Max(0, typePos)].Contains("const");
        var between = text[(typePos + md.Type.Length + 2)..namePos];
        md.PointerDepth = between.Count(ch => ch == '*');
        md.PointeeConst = between.Contains("const"); // e.g. const char* const*
        var after = text[(namePos + md.Name.Length + 2)..];
        foreach (Match am in Regex.Matches(after, @"\[\s*([A-Za-z0-9_]+)\s*\]")) md.ArrayDims.Add(am.Groups[1].Value);
        var bf = Regex.Match(after, @":\s*(\d+)");
        if (bf.Success) md.BitField = int.Parse(bf.Groups[1].Value);
        return md;
    }

    void ComputeCoreSet()
    {
        var queue = new Queue<string>();
        foreach (var f in Features)
        {
            f.InCoreHeader = !f.IsExtension || (f.Platform is null && !f.Provisional);
            if (!f.InCoreHeader) continue;
            foreach (var t in f.Types.Concat(f.ConditionalTypes)) queue.Enqueue(t);
            foreach (var c in f.Commands.Concat(f.ConditionalCommands))
            {
                var target = CommandAliases.GetValueOrDefault(c, c);
                CoreCommands.Add(c);
                if (!Commands.TryGetValue(target, out var cd)) continue;
                queue.Enqueue(cd.ReturnType);
                foreach (var p in cd.Params) queue.Enqueue(p.Type);
            }
        }
        while (queue.Count > 0)
        {
            var t = queue.Dequeue();
            if (!CoreTypes.Add(t)) continue;
            if (TypeAliases.TryGetValue(t, out var target)) { queue.Enqueue(target); continue; }
            if (!Types.TryGetValue(t, out var td)) continue;
            foreach (var m in td.Members) queue.Enqueue(m.Type);
            if (td.Category == "bitmask" && td.Bits is not null) queue.Enqueue(td.Bits);
            if (td.Category == "handle" && td.Parent is not null) { /* parents are declared on their own */ }
        }
    }

    public string Resolve(string type) => TypeAliases.TryGetValue(type, out var t) ? Resolve(t) : type;
}

sealed class TypeDef
{
    public string Name = "", Category = "";
    public XElement? Xml;
    public string? BaseType, Bits, ObjType, Parent;
    public bool Dispatchable, ReturnedOnly;
    public List<string> StructExtends = new();
    public List<MemberDef> Members = new();
    public bool IsUnion => Category == "union";
    public bool IsStruct => Category is "struct" or "union";
}

sealed class MemberDef
{
    public string Name = "", Type = "";
    public string? Len, AltLen, Optional, Values, Selector;
    /// <summary>The parameter holding the byte distance between array elements (vkCmdDrawMultiEXT), where it is not the element size.</summary>
    public string? Stride;
    public bool IsConst, PointeeConst, NoAutoValidity;
    public int PointerDepth;
    public int? BitField;
    public List<string> ArrayDims = new();
    public bool IsOptional => Optional is not null && Optional.Split(',')[0] == "true";
    /// <summary>The elements an array pointer points to may be VK_NULL_HANDLE (optional="…,true", or noautovalidity:
    /// explicit valid-usage rules decide, and the host's gate checks them).</summary>
    public bool ElementsOptional => NoAutoValidity || Optional is not null && Optional.Split(',') is { Length: > 1 } o && o[1] == "true";
}

sealed class EnumDef
{
    public string Name = "";
    public bool IsBitmask;
    public int BitWidth = 32;
    public List<EnumValue> Values = new();
}

sealed record EnumValue(string Name, long Value, string? Alias);
sealed record ConstDef(string Name, string Value, string Type);

sealed class CommandDef
{
    public string Name = "", ReturnType = "";
    public List<MemberDef> Params = new();
    public List<string> SuccessCodes = new(), ErrorCodes = new();
}

sealed class FeatureDef
{
    public string Name = "";
    public bool IsExtension, Provisional, InCoreHeader;
    public int Number, SpecVersion;
    public string? ExtType, Platform, Promotedto;
    public List<string> Types = new(), Commands = new(), ConditionalCommands = new(), ConditionalTypes = new();
}
