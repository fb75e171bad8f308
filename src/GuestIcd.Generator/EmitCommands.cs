using System.Text;

namespace GuestIcd.Generator;

/// <summary>Writes the codec tables (Protocol), the ICD entry points and the host trampolines.</summary>
sealed partial class EmitCommands(Registry reg, CSharpTypes cs)
{
    /// <summary>Guest-side semantics that the tables cannot express; the ICD implements these in Icd/*.cs as Entry.vkX.</summary>
    static readonly HashSet<string> HandWritten = new()
    {
        "vkGetInstanceProcAddr", "vkGetDeviceProcAddr", "vkEnumerateInstanceVersion", "vkEnumerateInstanceExtensionProperties",
        "vkEnumerateInstanceLayerProperties", "vkEnumerateDeviceLayerProperties", "vkEnumerateDeviceExtensionProperties",
        "vkCreateInstance", "vkDestroyInstance", "vkCreateDevice", "vkDestroyDevice",
        "vkGetPhysicalDeviceProperties", "vkGetPhysicalDeviceProperties2", "vkGetPhysicalDeviceFeatures2",
        "vkAllocateMemory", "vkFreeMemory", "vkMapMemory", "vkUnmapMemory",
        "vkCreateDescriptorUpdateTemplate", "vkDestroyDescriptorUpdateTemplate", "vkUpdateDescriptorSetWithTemplate",
        "vkCmdPushDescriptorSetWithTemplateKHR",
        "vkCreateFence", "vkDestroyFence", "vkGetFenceStatus", "vkResetFences", "vkWaitForFences", "vkQueueSubmit", "vkQueueSubmit2",
        "vkQueueBindSparse", "vkCreateSemaphore", "vkDestroySemaphore", "vkGetSemaphoreCounterValue", "vkWaitSemaphores",
        // Command buffers record guest-side (CommandBuffer.cs).
        "vkAllocateCommandBuffers", "vkFreeCommandBuffers", "vkResetCommandPool", "vkDestroyCommandPool",
        "vkBeginCommandBuffer", "vkEndCommandBuffer", "vkResetCommandBuffer",
    };

    /// <summary>Window-system integration lives in the guest (Surface.cs, Swapchain.cs): the host has no window
    /// system for the guest, so these are hand-written and never travel as themselves (not on the wire, no host
    /// trampoline). The platform surfaces (xcb, xlib) are outside vulkan_core.h and looked up by hand.</summary>
    static readonly HashSet<string> GuestOnly = new()
    {
        "vkDestroySurfaceKHR", "vkGetPhysicalDeviceSurfaceSupportKHR", "vkGetPhysicalDeviceSurfaceCapabilitiesKHR",
        "vkGetPhysicalDeviceSurfaceFormatsKHR", "vkGetPhysicalDeviceSurfacePresentModesKHR",
        "vkGetPhysicalDeviceSurfaceCapabilities2KHR", "vkGetPhysicalDeviceSurfaceFormats2KHR", "vkCreateHeadlessSurfaceEXT",
        "vkCreateSwapchainKHR", "vkDestroySwapchainKHR", "vkGetSwapchainImagesKHR", "vkAcquireNextImageKHR", "vkAcquireNextImage2KHR",
        "vkQueuePresentKHR", "vkGetDeviceGroupPresentCapabilitiesKHR", "vkGetDeviceGroupSurfacePresentModesKHR",
        "vkGetPhysicalDevicePresentRectanglesKHR",
    };

    static bool IsHandWritten(string name) => HandWritten.Contains(name) || GuestOnly.Contains(name);

    /// <summary>Creations whose failure applications are expected to handle on the spot.</summary>
    static readonly HashSet<string> SynchronousCreates = new()
    {
        "vkAllocateDescriptorSets", // VK_ERROR_OUT_OF_POOL_MEMORY / FRAGMENTED_POOL drive pool growth in real engines
        "vkCreateDeferredOperationKHR", "vkCreateValidationCacheEXT", "vkCreatePipelineCache", "vkCreateQueryPool",
    };

    /// <summary>Pointer members that are only meaningful for some values of another member (noautovalidity):
    /// an application may leave garbage in them otherwise, so the codec asks Selectors before following them.</summary>
    static readonly HashSet<string> Selected = new()
    {
        "VkWriteDescriptorSet.pImageInfo", "VkWriteDescriptorSet.pBufferInfo", "VkWriteDescriptorSet.pTexelBufferView",
        "VkDescriptorSetLayoutBinding.pImmutableSamplers",
    };

    /// <summary>Extensions whose objects cannot live on the far side of a VM boundary (callbacks into the
    /// application, file descriptors, host pointers); they are never advertised.</summary>
    static readonly HashSet<string> NeverCarried = new()
    {
        "VK_EXT_debug_report", "VK_EXT_debug_utils", "VK_EXT_debug_marker", "VK_KHR_external_memory_fd",
        "VK_KHR_external_semaphore_fd", "VK_KHR_external_fence_fd", "VK_EXT_external_memory_dma_buf",
        "VK_EXT_external_memory_host", "VK_EXT_image_drm_format_modifier", "VK_EXT_device_memory_report",
        "VK_EXT_physical_device_drm", "VK_EXT_acquire_drm_display", "VK_KHR_portability_enumeration",
        // A device address is a host pointer on a CPU driver; hostsim's gate never enables the feature.
        "VK_KHR_buffer_device_address", "VK_EXT_buffer_device_address",
        // A library without fragment output state leaves VkPipelineRenderingCreateInfo's colorAttachmentCount and
        // pColorAttachmentFormats undefined (Zink does), and the codec would follow them.
        "VK_EXT_graphics_pipeline_library",
    };

    readonly List<TypeDef> _types = new();
    readonly Dictionary<string, int> _typeIndex = new();
    readonly List<string> _fieldLines = new();
    readonly Dictionary<string, (int Size, int Align, List<int> Offsets)> _layout = new();
    readonly List<(CommandDef Cmd, int Index, string Carry, string Level, string Ret, bool Reply, string Feature)> _cmds = new();
    readonly Dictionary<string, (bool In, bool Out)> _can = new();

    public static uint Fnv1a(string s)
    {
        uint h = 2166136261;
        foreach (var ch in Encoding.ASCII.GetBytes(s)) { h ^= ch; h *= 16777619; }
        return h;
    }

    // ---- C layout (x86-64 System V), checked against gcc by the layout test ----
    (int Size, int Align) SizeAlign(MemberDef m)
    {
        int count = 1;
        foreach (var d in m.ArrayDims) count *= cs.ArrayCount(d);
        if (m.PointerDepth > 0) return (8 * count, 8);
        var (s, a) = ValueSizeAlign(m.Type);
        return (s * count, a);
    }

    (int, int) ValueSizeAlign(string type)
    {
        var v = cs.Value(type);
        switch (v)
        {
            case "byte": case "sbyte": return (1, 1);
            case "ushort": case "short": return (2, 2);
            case "uint": case "int": case "float": return (4, 4);
            case "ulong": case "long": case "double": case "nuint": case "nint": case "void*": return (8, 8);
        }
        var td = cs.Def(type)!;
        switch (td.Category)
        {
            case "handle": return (8, 8);
            case "enum": return reg.Enums.TryGetValue(td.Name, out var ed) && ed.BitWidth == 64 ? (8, 8) : (4, 4);
            case "bitmask": return td.BaseType == "VkFlags64" ? (8, 8) : (4, 4);
        }
        var l = Layout(td);
        return (l.Size, l.Align);
    }

    public (int Size, int Align, List<int> Offsets) Layout(TypeDef td)
    {
        if (_layout.TryGetValue(td.Name, out var l)) return l;
        int off = 0, align = 1, size = 0;
        var offsets = new List<int>();
        foreach (var (_, first, parts) in EmitTypes.Fields(td))
        {
            var (s, a) = parts.Count > 1 || first.BitField is not null ? (4, 4) : SizeAlign(first);
            align = Math.Max(align, a);
            if (td.IsUnion) { offsets.Add(0); size = Math.Max(size, s); continue; }
            off = (off + a - 1) / a * a;
            offsets.Add(off);
            off += s;
            size = off;
        }
        size = (size + align - 1) / align * align;
        return _layout[td.Name] = (size, align, offsets);
    }

    // ---- Codec descriptors ----
    int TypeIndex(TypeDef td)
    {
        if (_typeIndex.TryGetValue(td.Name, out var i)) return i;
        i = _types.Count;
        _typeIndex[td.Name] = i;
        _types.Add(td);
        return i;
    }

    bool IsPod(string type, int pointerDepth)
    {
        if (pointerDepth > 0) return false;
        var td = cs.Def(type);
        if (td is null) return true;
        if (td.Category == "handle" || td.Category == "funcpointer") return false;
        if (td.Category == "basetype") return td.BaseType != "void*";
        if (!td.IsStruct) return true;
        return td.Members.All(m => IsPod(m.Type, m.PointerDepth));
    }

    string? StructStype(TypeDef td)
    {
        var st = td.Members.FirstOrDefault(m => m.Name == "sType");
        return st?.Values;
    }

    /// <summary>Builds the descriptors of one struct; records whether it can travel in each direction.</summary>
    (bool In, bool Out) Describe(TypeDef td)
    {
        if (_can.TryGetValue(td.Name, out var c)) return c;
        _can[td.Name] = (false, false); // breaks cycles through pNext-free self references
        var lines = new List<string>();
        bool canIn = true, canOut = true;
        var layout = Layout(td);
        var fields = EmitTypes.Fields(td).ToList();
        for (int fi = 0; fi < fields.Count; fi++)
        {
            var (name, m, parts) = fields[fi];
            int off = layout.Offsets[fi];
            var (size, _) = parts.Count > 1 || m.BitField is not null ? (4, 4) : SizeAlign(m);
            int count = 1;
            foreach (var d in m.ArrayDims) count *= cs.ArrayCount(d);
            var mtd = cs.Def(m.Type);
            // A noautovalidity handle may be VK_NULL_HANDLE where other members say it is ignored; the host's gate decides.
            string flags = m.IsOptional || m.NoAutoValidity && mtd?.Category == "handle" ? "FieldFlags.Optional" : "FieldFlags.None";
            if (Selected.Contains(td.Name + "." + name)) flags = "FieldFlags.Optional | FieldFlags.Selected";
            if (m.PointerDepth == 1 && mtd?.Category == "handle" && m.ElementsOptional) flags += " | FieldFlags.NullElements";
            // The owner's type: a chained struct must name it in its structextends.
            if (name == "pNext") { lines.Add(F("PNext", "Pod", "None", flags, off, 8, 1, OwnerMark, 0, 0, 0, name)); continue; }
            if (parts.Count > 1 || IsPod(m.Type, m.PointerDepth))
            {
                if (td.IsUnion && !IsPod(td.Name, 0)) { canIn = canOut = false; }
                var (elem, checkType) = parts.Count > 1 || m.BitField is not null || m.ArrayDims.Count > 0 || m.NoAutoValidity || name == "sType" || td.IsUnion
                    ? ("Pod", -1) : EnumCheck(m.Type);
                lines.Add(F("Pod", elem, "None", flags, off, size, 1, checkType, 0, 0, 0, name));
                continue;
            }
            if (td.IsUnion) { canIn = canOut = false; break; }
            if (m.PointerDepth == 0 && mtd?.Category == "handle")
            {
                lines.Add(F("Handle", "Pod", "None", flags, off, 8, count, ObjType(mtd), 0, 0, 0, name));
                continue;
            }
            if (m.PointerDepth == 0 && mtd is { IsStruct: true })
            {
                var sc = Describe(mtd);
                canIn &= sc.In; canOut &= sc.Out;
                lines.Add(F("Struct", "Pod", "None", flags, off, Layout(mtd).Size, count, TypeIndex(mtd), 0, 0, 0, name));
                continue;
            }
            // Pointers.
            canOut = false; // an output struct that points elsewhere would need guest memory the host cannot see
            var len = Len(m, td.Members, fields, layout.Offsets, out var lenMode, out var lenOff, out var lenSize);
            if (!len) { canIn = false; continue; }
            if (m.Type == "char" && m.PointerDepth == 1)
            {
                if (m.Len is not null && m.Len.Split(',')[0] != "null-terminated") { canIn = false; continue; }
                lines.Add(F("String", "Pod", "None", flags, off, 1, 1, -1, 0, 0, 0, name));
                continue;
            }
            if (m.Type == "char" && m.PointerDepth == 2)
            {
                lines.Add(F("StringArray", "Pod", lenMode, flags, off, 8, 1, -1, lenOff, lenSize, 0, name));
                continue;
            }
            if (m.PointerDepth != 1) { canIn = false; continue; }
            if (m.Type == "void")
            {
                if (lenMode == "None") { canIn = false; continue; }
                lines.Add(F("Pointer", "Pod", lenMode, flags, off, 1, 1, -1, lenOff, lenSize, 0, name));
                continue;
            }
            if (mtd?.Category == "handle")
            {
                lines.Add(F("Pointer", "Handle", lenMode, flags, off, 8, 1, ObjType(mtd), lenOff, lenSize, 0, name));
                continue;
            }
            if (mtd is { IsStruct: true })
            {
                var sc = Describe(mtd);
                if (!sc.In) { canIn = false; continue; }
                lines.Add(F("Pointer", "Struct", lenMode, flags, off, Layout(mtd).Size, 1, TypeIndex(mtd), lenOff, lenSize, 0, name));
                continue;
            }
            if (m.Type.StartsWith("StdVideo") || mtd?.Category == "funcpointer" || mtd?.Category == "basetype" && mtd.BaseType is null)
            { canIn = false; continue; }
            var (es, _) = ValueSizeAlign(m.Type);
            if (lenMode == "Bytes") { es = 1; lenMode = "Field"; }
            lines.Add(F("Pointer", "Pod", lenMode, flags, off, es, 1, -1, lenOff, lenSize, 0, name));
        }
        if (td.Members.Any(m => m.Type == "void" && m.PointerDepth == 1 && m.Name != "pNext" && m.Len is null)) canIn = false;
        if (td.Members.Any(m => cs.Def(m.Type)?.Category == "funcpointer")) canIn = canOut = false;
        int idx = TypeIndex(td); // after the members: indices stay in the order types are first completed
        _typeFields[idx] = lines.Select(l => l.Replace($", {OwnerMark}, ", $", {idx}, ")).ToList();
        return _can[td.Name] = (canIn, canOut);
    }

    readonly Dictionary<int, List<string>> _typeFields = new();
    /// <summary>Stands for the owner's type index in its pNext line until the index is known.</summary>
    const int OwnerMark = -99999;

    Dictionary<string, List<string>>? _typeFeatures;

    /// <summary>Every core version and extension that brings a struct in (under any of its alias names): the
    /// host's gate accepts the struct in a device's pNext chains only where one of them is there.</summary>
    List<string> TypeFeatures(string name)
    {
        if (_typeFeatures is null)
        {
            _typeFeatures = new();
            foreach (var fd in reg.Features.Where(f => f.InCoreHeader))
                foreach (var t in fd.Types.Concat(fd.ConditionalTypes))
                {
                    var canon = reg.Resolve(t);
                    if (!_typeFeatures.TryGetValue(canon, out var l)) _typeFeatures[canon] = l = new();
                    if (!l.Contains(fd.Name)) l.Add(fd.Name);
                }
        }
        return _typeFeatures.GetValueOrDefault(name) ?? new List<string>();
    }

    readonly List<string> _checkedEnums = new();

    /// <summary>What the host checks in a plain-data member: an enum's value (Elem Pod, Type = enum index), or a
    /// nested plain struct that holds enums (Elem Struct, Type = struct index); nothing otherwise (-1).</summary>
    (string Elem, int Type) EnumCheck(string type)
    {
        var td = cs.Def(type);
        if (td is null) return ("Pod", -1);
        if (td.Category == "enum" && reg.Enums.TryGetValue(td.Name, out var ed) && !ed.IsBitmask && ed.Values.Count > 0)
        {
            int i = _checkedEnums.IndexOf(td.Name);
            if (i < 0) { i = _checkedEnums.Count; _checkedEnums.Add(td.Name); }
            return ("Pod", i);
        }
        if (td.IsStruct && !td.IsUnion && HasEnums(td)) { Describe(td); return ("Struct", TypeIndex(td)); }
        return ("Pod", -1);
    }

    bool HasEnums(TypeDef td) => td.Members.Any(m => m.PointerDepth == 0 && m.ArrayDims.Count == 0 && !m.NoAutoValidity && m.BitField is null && m.Name != "sType"
        && cs.Def(m.Type) is { } mt && (mt.Category == "enum" && reg.Enums.TryGetValue(mt.Name, out var e) && !e.IsBitmask || mt.IsStruct && !mt.IsUnion && HasEnums(mt)));

    /// <summary>An enum value by name, following aliases (an alias entry has no value of its own).</summary>
    long EnumValue(string enumName, string valueName)
    {
        var v = reg.Enums[enumName].Values.First(x => x.Name == valueName);
        return v.Alias is null ? v.Value : EnumValue(enumName, v.Alias);
    }

    int ObjType(TypeDef handle)
    {
        return (int)EnumValue("VkObjectType", handle.ObjType!);
    }

    static string F(string kind, string elem, string len, string flags, int off, int size, int count, int type, int lenOff, int lenSize, int lenMember, string name)
        => $"new(FieldKind.{kind}, ElemKind.{elem}, LenMode.{len}, {flags}, {off}, {size}, {count}, {type}, {lenOff}, {lenSize}, {lenMember}, \"{name}\")";

    bool Len(MemberDef m, List<MemberDef> members, List<(string, MemberDef, List<MemberDef>)> fields, List<int> offsets,
        out string mode, out int lenOff, out int lenSize)
    {
        mode = "None"; lenOff = 0; lenSize = 0;
        var len = m.Len;
        if (len is null) return true;
        var first = len.Split(',')[0];
        if (first == "null-terminated") return true;
        if (first.StartsWith("latexmath"))
        {
            var words = SampleMaskLen(m.AltLen);
            if (words is not null) { first = words; mode = "SampleMask"; }
            else if (m.AltLen is not null && m.AltLen.Replace(" ", "").EndsWith("/4") ) { first = m.AltLen.Split("/")[0].Trim(); }
            else return false;
        }
        int idx = fields.FindIndex(f => f.Item1 == first);
        if (idx < 0) return false;
        if (fields.FindIndex(f => f.Item1 == m.Name) < idx) return false; // the count must be decoded first
        var lm = fields[idx].Item2;
        if (lm.PointerDepth != 0) return false;
        lenOff = offsets[idx];
        lenSize = SizeAlign(lm).Size;
        if (mode == "None") mode = m.AltLen is not null && m.AltLen.Replace(" ", "").EndsWith("/4") ? "Bytes" : "Field";
        return lenSize is 4 or 8;
    }

    /// <summary>altlen "(samples + 31) / 32": a sample mask of one bit per sample, in 32-bit words.</summary>
    static string? SampleMaskLen(string? altlen)
    {
        var mm = altlen is null ? null : System.Text.RegularExpressions.Regex.Match(altlen, @"^\((\w+) \+ 31\) / 32$");
        return mm is { Success: true } ? mm.Groups[1].Value : null;
    }

    // ---- Commands ----
    static string LevelOf(CommandDef c, Registry reg)
    {
        if (c.Name is "vkGetInstanceProcAddr" or "vkCreateInstance" || c.Params.Count == 0) return "Global";
        var t = reg.Resolve(c.Params[0].Type);
        return t switch
        {
            "VkInstance" => "Instance",
            "VkPhysicalDevice" => "PhysicalDevice",
            "VkDevice" or "VkQueue" or "VkCommandBuffer" => "Device",
            _ => "Global",
        };
    }

    /// <summary>Describes a command's parameters as fields of an 8-byte-slot argument block.</summary>
    (bool Ok, List<string> Lines) DescribeParams(CommandDef c)
    {
        var lines = new List<string>();
        bool ok = true;
        var ps = c.Params;
        bool creates = c.Name.StartsWith("vkCreate") || c.Name.StartsWith("vkAllocate");
        bool destroys = c.Name.StartsWith("vkDestroy") || c.Name.StartsWith("vkFree");
        for (int i = 0; i < ps.Count; i++)
        {
            var p = ps[i];
            int off = 8 * i;
            var ptd = cs.Def(p.Type);
            string flags = p.IsOptional ? "FieldFlags.Optional" : "FieldFlags.None";
            if (p.Name == "pAllocator") { lines.Add(F("Skip", "Pod", "None", "FieldFlags.None", off, 8, 1, -1, 0, 0, 0, p.Name)); continue; }
            if (p.PointerDepth == 0 && p.ArrayDims.Count == 0)
            {
                if (ptd?.Category == "handle")
                {
                    var hf = destroys && i == ps.Count - 2 + (ps[^1].Name == "pAllocator" ? 0 : 1) ? flags + " | FieldFlags.Destroy" : flags;
                    lines.Add(F("Handle", "Pod", "None", hf, off, 8, 1, ObjType(ptd), 0, 0, 0, p.Name));
                }
                else if (ptd?.Category == "funcpointer" || ptd?.IsStruct == true) { ok = false; }
                else
                {
                    var (elem, checkType) = p.NoAutoValidity ? ("Pod", -1) : EnumCheck(p.Type);
                    lines.Add(F("Pod", elem, "None", flags, off, ValueSizeAlign(p.Type).Item1, 1, checkType, 0, 0, 0, p.Name));
                }
                continue;
            }
            if (p.ArrayDims.Count > 0) // const float blendConstants[4]
            {
                int n = p.ArrayDims.Aggregate(1, (a, d) => a * cs.ArrayCount(d));
                lines.Add(F("Pointer", "Pod", "None", flags, off, n * ValueSizeAlign(p.Type).Item1, 1, -1, 0, 0, 0, p.Name));
                continue;
            }
            // Length of a pointer parameter.
            string mode = "None"; int lenOff = 0, lenSize = 0, lenMember = 0;
            if (p.Len is not null && p.Len.Split(',')[0] != "null-terminated")
            {
                var first = p.Len.Split(',')[0];
                if (first.StartsWith("latexmath") && SampleMaskLen(p.AltLen) is { } words)
                {
                    int j = ps.FindIndex(x => x.Name == words);
                    if (j < 0 || j > i) { ok = false; continue; }
                    mode = "SampleMask"; lenOff = 8 * j; lenSize = 4;
                }
                else if (first.Contains("->"))
                {
                    var parts = first.Split("->");
                    int j = ps.FindIndex(x => x.Name == parts[0]);
                    var std = j >= 0 ? cs.Def(ps[j].Type) : null;
                    if (std is null || !std.IsStruct) { ok = false; continue; }
                    var lay = Layout(std);
                    int k = EmitTypes.Fields(std).ToList().FindIndex(f => f.Name == parts[1]);
                    if (k < 0) { ok = false; continue; }
                    mode = "Member"; lenOff = 8 * j; lenMember = lay.Offsets[k]; lenSize = SizeAlign(std.Members.First(x => x.Name == parts[1])).Size;
                }
                else
                {
                    int j = ps.FindIndex(x => x.Name == first);
                    if (j < 0 || j > i) { ok = false; continue; }
                    lenOff = 8 * j;
                    if (ps[j].PointerDepth == 1) { mode = "Deref"; lenSize = ValueSizeAlign(ps[j].Type).Item1; }
                    else { mode = "Field"; lenSize = ValueSizeAlign(ps[j].Type).Item1; }
                }
            }
            if (p.Stride is not null)
            {
                int j = ps.FindIndex(x => x.Name == p.Stride);
                if (j < 0 || mode != "Field") { ok = false; continue; }
                flags += " | FieldFlags.Strided";
                lenMember = 8 * j;
            }
            bool isConst = p.IsConst;
            bool referencedAsCount = ps.Any(x => x.Len is not null && x.Len.Split(',')[0] == p.Name);
            if (!isConst && referencedAsCount && p.PointerDepth == 1)
            {
                lines.Add(F("Pointer", "Pod", "None", "FieldFlags.InOut" + (p.IsOptional ? " | FieldFlags.Optional" : ""), off, ValueSizeAlign(p.Type).Item1, 1, -1, 0, 0, 0, p.Name));
                continue;
            }
            string dir = isConst ? "" : " | FieldFlags.Out";
            if (p.Type == "char" && p.PointerDepth == 1 && isConst) { lines.Add(F("String", "Pod", "None", flags, off, 1, 1, -1, 0, 0, 0, p.Name)); continue; }
            if (p.PointerDepth != 1) { ok = false; continue; }
            if (p.Type == "void")
            {
                if (mode == "None") { ok = false; continue; }
                lines.Add(F("Pointer", "Pod", mode, flags + dir, off, 1, 1, -1, lenOff, lenSize, lenMember, p.Name));
                continue;
            }
            if (ptd?.Category == "handle")
            {
                string hf = flags + dir + (p.ElementsOptional ? " | FieldFlags.NullElements" : "");
                if (!isConst && creates) hf += " | FieldFlags.Create";
                if (isConst && destroys) hf += " | FieldFlags.Destroy";
                lines.Add(F("Pointer", "Handle", mode, hf, off, 8, 1, ObjType(ptd), lenOff, lenSize, lenMember, p.Name));
                continue;
            }
            if (ptd is { IsStruct: true })
            {
                var can = Describe(ptd);
                if (isConst ? !can.In : !can.Out) { ok = false; continue; }
                lines.Add(F("Pointer", "Struct", mode, flags + dir, off, Layout(ptd).Size, 1, TypeIndex(ptd), lenOff, lenSize, lenMember, p.Name));
                continue;
            }
            if (ptd?.Category == "funcpointer" || p.Type.StartsWith("StdVideo") || ptd?.Category == "basetype" && ptd.BaseType is null) { ok = false; continue; }
            if (cs.Value(p.Type) == "void*") { ok = false; continue; }
            lines.Add(F("Pointer", "Pod", mode, flags + dir, off, ValueSizeAlign(p.Type).Item1, 1, -1, lenOff, lenSize, lenMember, p.Name));
        }
        return (ok, lines);
    }

    static string RetKind(string t) => t switch
    {
        "void" => "Void", "VkResult" => "VkResult", "uint32_t" or "VkBool32" => "U32",
        "uint64_t" or "VkDeviceAddress" or "VkDeviceSize" => "U64", _ => "Other",
    };

    public IEnumerable<(string, string)> All()
    {
        // Which feature or extension brings each command in (the first one wins).
        var owner = new Dictionary<string, FeatureDef>();
        foreach (var f in reg.Features.Where(f => f.InCoreHeader))
            foreach (var c in f.Commands.Concat(f.ConditionalCommands)) owner.TryAdd(c, f);

        var names = reg.CoreCommands.Where(n => !reg.CommandAliases.ContainsKey(n)).OrderBy(n => n, StringComparer.Ordinal).ToList();
        var paramLines = new List<string>();
        var cmdLines = new List<string>();
        var carried = new Dictionary<string, bool>();
        foreach (var name in names)
        {
            var c = reg.Commands[name];
            var (ok, lines) = DescribeParams(c);
            var ret = RetKind(c.ReturnType);
            string carry = IsHandWritten(name) ? "HandWritten" : ok && ret != "Other" ? "Generic" : "None";
            var feature = owner.TryGetValue(name, out var fd) ? fd : null;
            if (feature is not null && feature.IsExtension && !ExtensionCarriable(feature)) carry = IsHandWritten(name) ? carry : "None";
            carried[name] = carry != "None";
            bool reply = ret != "Void" || lines.Any(l => l.Contains("FieldFlags.Out") || l.Contains("FieldFlags.InOut"));
            // Creating an object does not wait for the host (as Venus does): the guest picked the id, and a host-side
            // failure surfaces as a lost device at the object's first use. Kept synchronous: results applications
            // branch on (pool exhaustion, pipeline compile-required) and the objects that set up a connection.
            bool onlyCreates = lines.Where(l => l.Contains("FieldFlags.Out") || l.Contains("FieldFlags.InOut")).All(l => l.Contains("FieldFlags.Create"));
            if ((carry == "Generic" || name == "vkAllocateCommandBuffers") && ret == "VkResult" && onlyCreates && (name.StartsWith("vkCreate") || name.StartsWith("vkAllocate"))
                && !name.EndsWith("Pipelines") && !SynchronousCreates.Contains(name))
                reply = false;
            // A hand-written command whose parameters the codec cannot describe never travels as itself.
            bool onWire = ok && ret != "Other" && carry != "None" && !GuestOnly.Contains(name);
            int first = paramLines.Count;
            if (onWire) paramLines.AddRange(lines);
            if (onWire) _paramLinesOf[name] = lines;
            var level = LevelOf(c, reg);
            cmdLines.Add($"new(\"{name}\", 0x{Fnv1a(name):X8}u, CommandLevel.{level}, ReturnKind.{ret}, Carry.{carry}, {first}, {paramLines.Count - first}, {(reply ? "true" : "false")}, \"{feature?.Name ?? ""}\", {(onWire ? "true" : "false")})");
            _cmds.Add((c, _cmds.Count, carry, level, ret, reply, feature?.Name ?? ""));
        }
        var ids = names.Select(Fnv1a).ToList();
        if (ids.Distinct().Count() != ids.Count) throw new InvalidOperationException("command id collision: change the hash");
        if (ids.Any(i => i < 0x100)) throw new InvalidOperationException("command id collides with the reserved protocol range");
        // Describe every struct so that pNext chains can carry any of them.
        foreach (var td in new EmitTypes(reg, cs).CoreStructs) Describe(td);

        yield return ("src/GuestIcd.Vulkan/Generated/Commands.cs", CommandInfo());
        yield return ("native-shim/Generated/prototypes_check.c", PrototypesC());
        yield return ("src/GuestIcd.Protocol/Generated/Tables.cs", Tables(cmdLines, paramLines, carried));
        yield return ("src/GuestIcd.Protocol/Generated/FastCommands.cs", FastCommands());
        yield return ("src/GuestIcd.Icd/Generated/Entrypoints.cs", Entrypoints());
        yield return ("hostsim/GuestIcd.HostSim/Generated/Trampolines.cs", Trampolines());
    }

    bool ExtensionCarriable(FeatureDef f)
    {
        if (NeverCarried.Contains(f.Name) || !f.InCoreHeader) return false;
        if (DependsOnWsi(f.Name)) return false;
        return true;
    }

    bool DependsOnWsi(string ext)
    {
        if (ext is "VK_KHR_surface" or "VK_KHR_display") return true;
        var x = reg.Features.FirstOrDefault(f => f.Name == ext);
        var xml = x is null ? null : reg.ExtensionXml.GetValueOrDefault(ext);
        var requires = (string?)xml?.Attribute("requires");
        return requires is not null && requires.Split(',').Any(DependsOnWsi);
    }

    string Tables(List<string> cmdLines, List<string> paramLines, Dictionary<string, bool> carried)
    {
        var sb = new StringBuilder(CSharpTypes.Header("Codec tables: how every struct and command travels on the wire."));
        sb.AppendLine("using GuestIcd.Protocol.Codec;").AppendLine();
        sb.AppendLine("namespace GuestIcd.Protocol;").AppendLine();
        sb.AppendLine("public static partial class Tables").AppendLine("{");
        sb.AppendLine($"    public const uint RegistryVersion = {reg.HeaderVersion};");
        // Types and their fields.
        var fieldLines = new List<string>();
        var typeLines = new List<string>();
        for (int i = 0; i < _types.Count; i++)
        {
            var td = _types[i];
            var (can, lay) = (_can[td.Name], Layout(td));
            var f = _typeFields.GetValueOrDefault(i) ?? new List<string>();
            var stype = StructStype(td);
            long stv = stype is null ? -1 : EnumValue("VkStructureType", stype);
            typeLines.Add($"new(\"{td.Name}\", {lay.Size}, {stv}, {(IsPod(td.Name, 0) ? "true" : "false")}, {(can.In ? "true" : "false")}, {(can.Out ? "true" : "false")}, {fieldLines.Count}, {f.Count}, \"{string.Join(",", TypeFeatures(td.Name))}\")");
            fieldLines.AddRange(f);
        }
        sb.AppendLine("    public static readonly TypeDesc[] Types =").AppendLine("    [");
        foreach (var l in typeLines) sb.AppendLine("        " + l + ",");
        sb.AppendLine("    ];").AppendLine();
        // Which owners each struct may be chained into (structextends), as sorted type indices.
        sb.AppendLine("    /// <summary>For each type, the types whose pNext chain it may extend (registry structextends), sorted.</summary>");
        sb.AppendLine("    public static readonly int[][] Extends =").AppendLine("    [");
        foreach (var td in _types)
        {
            var parents = td.StructExtends.Select(n => cs.Def(n)).Where(d => d is not null && _typeIndex.ContainsKey(d.Name))
                .Select(d => _typeIndex[d!.Name]).Distinct().OrderBy(x => x);
            sb.AppendLine($"        [{string.Join(", ", parents)}],");
        }
        sb.AppendLine("    ];").AppendLine();
        sb.AppendLine("    public static readonly FieldDesc[] Fields =").AppendLine("    [");
        foreach (var l in fieldLines) sb.AppendLine("        " + l + ",");
        sb.AppendLine("    ];").AppendLine();
        sb.AppendLine("    /// <summary>Parameters of every command, as fields of an argument block of 8-byte slots.</summary>");
        sb.AppendLine("    public static readonly FieldDesc[] Params =").AppendLine("    [");
        foreach (var l in paramLines) sb.AppendLine("        " + l + ",");
        sb.AppendLine("    ];").AppendLine();
        sb.AppendLine("    public static readonly CommandDesc[] Commands =").AppendLine("    [");
        foreach (var l in cmdLines) sb.AppendLine("        " + l + ",");
        sb.AppendLine("    ];").AppendLine();
        // sType -> type index.
        sb.AppendLine("    /// <summary>The type index of the struct with this sType, or -1.</summary>");
        sb.AppendLine("    public static int TypeOfSType(int sType) => sType switch").AppendLine("    {");
        for (int i = 0; i < _types.Count; i++)
        {
            var st = StructStype(_types[i]);
            if (st is null) continue;
            var v = EnumValue("VkStructureType", st);
            sb.AppendLine($"        {v} => {i},");
        }
        sb.AppendLine("        _ => -1,").AppendLine("    };").AppendLine();
        // Command id -> index.
        sb.AppendLine("    /// <summary>The command index of a wire id, or -1.</summary>");
        sb.AppendLine("    public static int CommandOfId(uint id) => id switch").AppendLine("    {");
        for (int i = 0; i < _cmds.Count; i++) sb.AppendLine($"        0x{Fnv1a(_cmds[i].Cmd.Name):X8}u => {i},");
        sb.AppendLine("        _ => -1,").AppendLine("    };").AppendLine();
        foreach (var (c, i, _, _, _, _, _) in _cmds) sb.AppendLine($"    public const int {c.Name} = {i};");
        sb.AppendLine();
        // Extensions.
        sb.AppendLine("    /// <summary>Valid values of each enum the host checks, sorted (binary search).</summary>");
        sb.AppendLine("    public static readonly string[] CheckedEnumNames = [" + string.Join(", ", _checkedEnums.Select(e => $"\"{e}\"")) + "];");
        sb.AppendLine("    public static readonly int[][] CheckedEnumValues =").AppendLine("    [");
        foreach (var e in _checkedEnums)
        {
            var vals = reg.Enums[e].Values.Select(v => EnumValue(e, v.Name)).Distinct().OrderBy(v => v).Select(v => v.ToString());
            sb.AppendLine($"        [{string.Join(", ", vals)}],");
        }
        sb.AppendLine("    ];").AppendLine();
        sb.AppendLine("    public static readonly ExtensionDesc[] Extensions =").AppendLine("    [");
        foreach (var f in reg.Features.Where(f => f.IsExtension && f.InCoreHeader))
        {
            bool ok = ExtensionCarriable(f) && f.Commands.All(c => carried.GetValueOrDefault(reg.CommandAliases.GetValueOrDefault(c, c)))
                && f.Types.All(t => cs.Def(t) is not { IsStruct: true } td || (td.ReturnedOnly ? _can.GetValueOrDefault(td.Name).Out : _can.GetValueOrDefault(td.Name).In));
            sb.AppendLine($"        new(\"{f.Name}\", {f.SpecVersion}, {(f.ExtType == "device" ? "true" : "false")}, {(ok ? "true" : "false")}),");
        }
        sb.AppendLine("    ];");
        sb.AppendLine("}");
        return sb.ToString();
    }

    // ---- Command metadata and C signatures ----
    static string CParam(MemberDef p)
    {
        var stars = p.PointerDepth switch { 0 => "", 1 => "*", _ => p.PointeeConst ? "* const*" : "**" };
        var dims = string.Concat(p.ArrayDims.Select(d => $"[{d}]"));
        return $"{(p.IsConst ? "const " : "")}{p.Type}{stars} {p.Name}{dims}";
    }

    static string CSignature(CommandDef c) => $"{c.ReturnType} {c.Name}({string.Join(", ", c.Params.Select(CParam))})";

    string CommandInfo()
    {
        var sb = new StringBuilder(CSharpTypes.Header("Every command of vulkan_core.h: its C signature, dispatch level, aliases and where it comes from."));
        sb.AppendLine("namespace GuestIcd.Vulkan;").AppendLine();
        sb.AppendLine("public enum VkCommandLevel { Global, Instance, PhysicalDevice, Device }").AppendLine();
        sb.AppendLine("public readonly record struct VkCommandInfo(string Name, string CSignature, VkCommandLevel Level, string[] Aliases, string Feature);").AppendLine();
        sb.AppendLine("public static class VkCommands").AppendLine("{");
        sb.AppendLine("    public static readonly VkCommandInfo[] All =").AppendLine("    [");
        foreach (var (c, _, _, level, _, _, feature) in _cmds)
        {
            var aliases = reg.CommandAliases.Where(kv => kv.Value == c.Name && reg.CoreCommands.Contains(kv.Key)).Select(kv => $"\"{kv.Key}\"").OrderBy(x => x);
            sb.AppendLine($"        new(\"{c.Name}\", \"{CSignature(c)}\", VkCommandLevel.{level}, [{string.Join(", ", aliases)}], \"{feature}\"),");
        }
        sb.AppendLine("    ];").AppendLine("}");
        return sb.ToString();
    }

    /// <summary>Redeclares every command with the signature the generator derived; gcc rejects any that
    /// conflicts with vulkan_core.h's own prototype.</summary>
    string PrototypesC()
    {
        var sb = new StringBuilder("/* Generated by src/GuestIcd.Generator. Do not edit. */\n#include <vulkan/vulkan_core.h>\n\n");
        foreach (var (c, _, _, _, _, _, _) in _cmds) sb.AppendLine($"extern VKAPI_ATTR {CSignature(c).Replace(c.Name + "(", "VKAPI_CALL " + c.Name + "(")};");
        return sb.ToString();
    }

    // ---- ICD entry points ----
    string Sig(CommandDef c) => string.Join(", ", c.Params.Select(p => $"{ParamType(p)} {CSharpTypes.Id(p.Name)}"));
    string ParamType(MemberDef p) => p.ArrayDims.Count > 0 ? cs.Value(p.Type) + "*" : cs.Of(p);
    string RetType(CommandDef c) => c.ReturnType == "PFN_vkVoidFunction" ? "nint" : cs.Value(c.ReturnType);
    string FnPtrType(CommandDef c) => $"delegate* unmanaged<{string.Concat(c.Params.Select(p => ParamType(p) + ", "))}{RetType(c)}>";

    string ToSlot(MemberDef p)
    {
        var n = CSharpTypes.Id(p.Name);
        var t = ParamType(p);
        if (t.EndsWith("*")) return $"(ulong){n}";
        var td = cs.Def(p.Type);
        if (td?.Category == "handle") return $"(ulong){n}.Handle";
        if (td?.Category is "enum" or "bitmask")
        {
            var under = ValueSizeAlign(p.Type).Item1 == 8 ? "ulong" : td.Category == "enum" && !(reg.Enums.GetValueOrDefault(td.Name)?.IsBitmask ?? false) ? "int" : "uint";
            return under == "int" ? $"(ulong)(uint)(int){n}" : $"(ulong)({under}){n}";
        }
        return t switch
        {
            "float" => $"(ulong)BitConverter.SingleToUInt32Bits({n})",
            "int" => $"(ulong)(uint){n}",
            _ => $"(ulong){n}",
        };
    }

    string FromSlot(MemberDef p, string slot)
    {
        var t = ParamType(p);
        if (t.EndsWith("*")) return $"({t}){slot}";
        var td = cs.Def(p.Type);
        if (td?.Category == "handle") return td.Dispatchable ? $"new {t}((nint){slot})" : $"new {t}({slot})";
        if (td?.Category is "enum" or "bitmask")
        {
            var under = ValueSizeAlign(p.Type).Item1 == 8 ? "ulong" : td.Category == "enum" && !(reg.Enums.GetValueOrDefault(td.Name)?.IsBitmask ?? false) ? "int" : "uint";
            return $"({t})({under}){slot}";
        }
        return t switch
        {
            "float" => $"BitConverter.UInt32BitsToSingle((uint){slot})",
            _ => $"({t}){slot}",
        };
    }

    string Entrypoints()
    {
        var sb = new StringBuilder(CSharpTypes.Header("The ICD's entry points: one [UnmanagedCallersOnly] thunk per carried command, and the name lookup."));
        sb.AppendLine("using System.Runtime.CompilerServices;").AppendLine("using System.Runtime.InteropServices;").AppendLine("using GuestIcd.Vulkan;").AppendLine("using GuestIcd.Protocol;").AppendLine();
        sb.AppendLine("namespace GuestIcd.Icd;").AppendLine();
        sb.AppendLine("internal static unsafe partial class Entrypoints").AppendLine("{");
        foreach (var (c, idx, carry, _, ret, _, _) in _cmds)
        {
            if (carry == "None") continue;
            var rt = RetType(c);
            sb.AppendLine("    [UnmanagedCallersOnly]");
            sb.AppendLine($"    static {rt} {c.Name}({Sig(c)})").AppendLine("    {");
            sb.AppendLine("        try").AppendLine("        {");
            if (carry == "HandWritten")
            {
                var call = $"Entry.{c.Name}({string.Join(", ", c.Params.Select(p => CSharpTypes.Id(p.Name)))})";
                sb.AppendLine(rt == "void" ? $"            {call};" : $"            return {call};");
            }
            else if (FastEntry(sb, c)) { }
            else
            {
                sb.AppendLine($"            ulong* a = stackalloc ulong[{Math.Max(1, c.Params.Count)}];");
                for (int i = 0; i < c.Params.Count; i++) sb.AppendLine($"            a[{i}] = {ToSlot(c.Params[i])};");
                // vkCmd* go into their command buffer's own recording, never to the connection directly.
                var call = c.Name.StartsWith("vkCmd") ? $"CommandBuffers.Record(Tables.{c.Name}, a)" : $"Generic.Call(Tables.{c.Name}, a)";
                sb.AppendLine(ret switch
                {
                    "Void" => $"            {call};",
                    "VkResult" => $"            return (VkResult)(int){call};",
                    _ => $"            return ({rt}){call};",
                });
            }
            sb.AppendLine("        }");
            sb.AppendLine("        catch (Exception e)").AppendLine("        {");
            sb.AppendLine(rt switch
            {
                "void" => $"            Entry.Fail(Tables.{c.Name}, e);",
                "VkResult" => $"            return Entry.Fail(Tables.{c.Name}, e);",
                _ => $"            Entry.Fail(Tables.{c.Name}, e);\n            return default;",
            });
            sb.AppendLine("        }").AppendLine("    }").AppendLine();
            FastGeneric(sb, c);
        }
        // Name lookup: FNV-1a of the name, then a byte comparison; no allocation.
        var byHash = new SortedDictionary<uint, List<(string Name, CommandDef Cmd, int Idx)>>();
        foreach (var (c, idx, carry, _, _, _, _) in _cmds)
        {
            if (carry == "None") continue;
            var all = new List<string> { c.Name };
            all.AddRange(reg.CommandAliases.Where(kv => kv.Value == c.Name && reg.CoreCommands.Contains(kv.Key)).Select(kv => kv.Key));
            foreach (var n in all)
            {
                var h = Fnv1a(n);
                if (!byHash.TryGetValue(h, out var l)) byHash[h] = l = new();
                l.Add((n, c, idx));
            }
        }
        sb.AppendLine("    /// <summary>The entry point for a command name (aliases included) and its command index; 0 when not carried.</summary>");
        sb.AppendLine("    public static nint Lookup(ReadOnlySpan<byte> name, out int index)").AppendLine("    {");
        sb.AppendLine("        uint h = 2166136261;");
        sb.AppendLine("        foreach (var b in name) { h ^= b; h *= 16777619; }");
        sb.AppendLine("        switch (h)").AppendLine("        {");
        foreach (var (h, l) in byHash)
        {
            sb.AppendLine($"            case 0x{h:X8}u:");
            foreach (var (n, c, idx) in l)
                sb.AppendLine($"                if (name.SequenceEqual(\"{n}\"u8)) {{ index = {idx}; return (nint)({FnPtrType(c)})&{c.Name}; }}");
            sb.AppendLine("                break;");
        }
        sb.AppendLine("        }");
        sb.AppendLine("        index = -1;").AppendLine("        return 0;");
        sb.AppendLine("    }").AppendLine("}");
        return sb.ToString();
    }

    string Trampolines()
    {
        var sb = new StringBuilder(CSharpTypes.Header("Calls into the host driver through function pointers typed by the registry's signatures."));
        sb.AppendLine("using GuestIcd.Vulkan;").AppendLine("using GuestIcd.Protocol;").AppendLine();
        sb.AppendLine("namespace GuestIcd.HostSim;").AppendLine();
        sb.AppendLine("internal static unsafe class Trampolines").AppendLine("{");
        sb.AppendLine("    /// <summary>Calls <paramref name=\"fn\"/> as command <paramref name=\"index\"/> with the decoded argument slots; returns the result's bits.</summary>");
        sb.AppendLine("    public static ulong Invoke(int index, nint fn, ulong* a)").AppendLine("    {");
        sb.AppendLine("        switch (index)").AppendLine("        {");
        foreach (var (c, idx, carry, _, ret, _, _) in _cmds)
        {
            if (carry == "None" || ret == "Other" || GuestOnly.Contains(c.Name)) continue;
            var args = string.Join(", ", c.Params.Select((p, i) => FromSlot(p, $"a[{i}]")));
            var call = $"(({FnPtrType(c)})fn)({args})";
            sb.AppendLine($"            case Tables.{c.Name}:");
            sb.AppendLine(ret switch
            {
                "Void" => $"                {call}; return 0;",
                "VkResult" => $"                return (ulong)(uint)(int){call};",
                _ => $"                return (ulong){call};",
            });
        }
        sb.AppendLine("            default: throw new ArgumentOutOfRangeException(nameof(index));");
        sb.AppendLine("        }").AppendLine("    }").AppendLine("}");
        return sb.ToString();
    }
}
