using System.Runtime.InteropServices;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkShaderStageFlagBits;

namespace GuestIcd.HostSim.Gate;

/// <summary>What the gate keeps of one shader module: what pipelines are checked against.</summary>
internal sealed class ShaderModuleState(ulong device, (uint Set, uint Binding)[] resources, (uint Model, string Name)[] entryPoints,
    Dictionary<uint, uint> specConstantSizes)
{
    public readonly ulong Device = device;
    /// <summary>The (set, binding) of every resource variable the module declares.</summary>
    public readonly (uint Set, uint Binding)[] Resources = resources;
    /// <summary>Every OpEntryPoint: SPIR-V execution model and name.</summary>
    public readonly (uint Model, string Name)[] EntryPoints = entryPoints;
    /// <summary>SpecId → the byte size its specialization data must have (VkBool32 for booleans).</summary>
    public readonly Dictionary<uint, uint> SpecConstantSizes = specConstantSizes;
}

/// <summary>Shader code before the driver. Drivers compile what they are given and trust it to be valid
/// SPIR-V (a mutated module crashed lavapipe inside vkCreateComputePipelines), so every module — created
/// with vkCreateShaderModule or given inline to a pipeline stage — goes through SPIRV-Tools' validator for
/// the device's Vulkan version first; a stage must name an entry point of its own execution model, and its
/// specialization constants must have their declared sizes. The validator is libguesticd_spirv.so
/// (native-shim/spirv, built with hostsim); without it no module reaches the driver.</summary>
internal sealed unsafe partial class ValidUsageGate
{
    const uint SpirvMagic = 0x07230203;

    /// <summary>Checks a module's code and reads what pipelines need of it. <paramref name="validate"/>: run
    /// the validator (false only when the same code was validated a moment before, at the pipeline's check).</summary>
    static ShaderModuleState ParseSpirv(int cmd, uint* code, ulong codeSize, DeviceState dev, bool validate)
    {
        if (codeSize == 0 || codeSize % 4 != 0) Fail(cmd, "VUID-VkShaderModuleCreateInfo-codeSize-01085", $"codeSize {codeSize} is not a positive multiple of 4");
        ulong words = codeSize / 4;
        if (words < 5 || code[0] != SpirvMagic) Fail(cmd, "VUID-VkShaderModuleCreateInfo-pCode-07912", "pCode is not SPIR-V (magic number)");
        if (validate) Validate(cmd, code, words, dev);
        var sets = new Dictionary<uint, uint>();
        var bindings = new Dictionary<uint, uint>();
        var specIds = new Dictionary<uint, uint>();      // result id → SpecId
        var typeSizes = new Dictionary<uint, uint>();    // type id → bytes (int and float types)
        var specSizes = new Dictionary<uint, uint>();    // SpecId → bytes
        var entryPoints = new List<(uint, string)>();
        for (ulong i = 5; i < words;)
        {
            uint wc = code[i] >> 16, op = code[i] & 0xFFFF;
            if (wc == 0 || i + wc > words) Fail(cmd, "VUID-VkShaderModuleCreateInfo-pCode-01379", $"instruction at word {i} runs past the module");
            switch (op)
            {
                case 17 when wc >= 2: // OpCapability
                {
                    uint cap = code[i + 1];
                    if (cap is 4 or 6 or 5347) // Addresses, Kernel, PhysicalStorageBufferAddresses
                        Fail(cmd, "VUID-VkShaderModuleCreateInfo-pCode-01091", $"SPIR-V capability {cap} needs a feature hostsim never enables (shaders would address host memory)");
                    break;
                }
                case 15 when wc >= 4: // OpEntryPoint model id name...
                    entryPoints.Add((code[i + 1], LiteralString(code + i + 3, wc - 3)));
                    break;
                case 71 when wc >= 4: // OpDecorate target decoration literal
                    if (code[i + 2] == 34) sets[code[i + 1]] = code[i + 3];
                    else if (code[i + 2] == 33) bindings[code[i + 1]] = code[i + 3];
                    else if (code[i + 2] == 1) specIds[code[i + 1]] = code[i + 3];
                    break;
                case 21 or 22 when wc >= 3: // OpTypeInt / OpTypeFloat result width
                    typeSizes[code[i + 1]] = code[i + 2] / 8;
                    break;
                case 48 or 49 when wc >= 3: // OpSpecConstantTrue/False type result
                    if (specIds.TryGetValue(code[i + 2], out var boolId)) specSizes[boolId] = 4;
                    break;
                case 50 when wc >= 4: // OpSpecConstant type result value...
                    if (specIds.TryGetValue(code[i + 2], out var id) && typeSizes.TryGetValue(code[i + 1], out var size)) specSizes[id] = size;
                    break;
            }
            i += wc;
        }
        var resources = sets.Where(kv => bindings.ContainsKey(kv.Key)).Select(kv => (kv.Value, bindings[kv.Key])).Distinct().ToArray();
        return new ShaderModuleState(dev.Handle, resources, entryPoints.ToArray(), specSizes);
    }

    static string LiteralString(uint* w, ulong maxWords)
    {
        var bytes = new ReadOnlySpan<byte>(w, (int)Math.Min(maxWords * 4, int.MaxValue));
        int end = bytes.IndexOf((byte)0);
        return System.Text.Encoding.UTF8.GetString(end < 0 ? bytes : bytes[..end]);
    }

    static void Validate(int cmd, uint* code, ulong words, DeviceState dev)
    {
        var validate = Spirv.Validate;
        if (validate == null)
            Fail(cmd, "VUID-VkShaderModuleCreateInfo-pCode-01379",
                $"SPIR-V cannot be validated on this host ({Spirv.Missing}); hostsim passes no unvalidated shader code to the driver");
        // The SPIR-V versions a Vulkan version accepts (VUID-VkShaderModuleCreateInfo-pCode-01379's environment).
        uint minor = Math.Min(VkMinor(dev.ApiVersion), 3);
        int env = minor == 1 && dev.Spirv14 ? 4 : (int)minor;
        uint flags = 0;
        if (minor >= 1 || dev.RelaxedBlockLayout) flags |= 1;
        if (dev.UniformBufferStandardLayout) flags |= 2;
        if (dev.ScalarBlockLayout) flags |= 4;
        if (dev.WorkgroupScalarBlockLayout) flags |= 8;
        const int cap = 512;
        byte* msg = stackalloc byte[cap];
        int rc = validate(code, (nuint)words, env, flags, msg, cap);
        if (rc != 0)
        {
            string why = (Marshal.PtrToStringUTF8((nint)msg) ?? "").ReplaceLineEndings(" ");
            Fail(cmd, "VUID-VkShaderModuleCreateInfo-pCode-01379", rc > 0
                ? $"invalid SPIR-V for Vulkan 1.{minor}: {why}"
                : $"the SPIR-V validator failed ({why}); the module is refused");
        }
    }

    static uint VkMinor(uint version) => (version >> 12) & 0x3FF;

    /// <summary>pName must be an OpEntryPoint of the stage's execution model: the driver looks the entry up by
    /// name and model and builds the stage from what it finds.</summary>
    static void CheckEntryPoint(int cmd, VkPipelineShaderStageCreateInfo* st, ShaderModuleState module, DeviceState dev)
    {
        uint model = st->stage switch
        {
            VK_SHADER_STAGE_VERTEX_BIT => 0,
            VK_SHADER_STAGE_TESSELLATION_CONTROL_BIT => 1,
            VK_SHADER_STAGE_TESSELLATION_EVALUATION_BIT => 2,
            VK_SHADER_STAGE_GEOMETRY_BIT => 3,
            VK_SHADER_STAGE_FRAGMENT_BIT => 4,
            VK_SHADER_STAGE_COMPUTE_BIT => 5,
            _ => uint.MaxValue,
        };
        if (model == uint.MaxValue)
            Fail(cmd, "VUID-VkPipelineShaderStageCreateInfo-stage-parameter", $"stage {(uint)st->stage:X} is not one shader stage hostsim serves");
        if (st->stage == VK_SHADER_STAGE_GEOMETRY_BIT && dev.Features.geometryShader == 0)
            Fail(cmd, "VUID-VkPipelineShaderStageCreateInfo-stage-00704", "a geometry stage without the geometryShader feature");
        if (st->stage is VK_SHADER_STAGE_TESSELLATION_CONTROL_BIT or VK_SHADER_STAGE_TESSELLATION_EVALUATION_BIT && dev.Features.tessellationShader == 0)
            Fail(cmd, "VUID-VkPipelineShaderStageCreateInfo-stage-00705", "a tessellation stage without the tessellationShader feature");
        if (st->pName == null) Fail(cmd, "VUID-VkPipelineShaderStageCreateInfo-pName-parameter", "pName is NULL");
        string name = Marshal.PtrToStringUTF8((nint)st->pName) ?? "";
        bool found = false;
        foreach (var (m, n) in module.EntryPoints) found |= m == model && n == name;
        if (!found) Fail(cmd, "VUID-VkPipelineShaderStageCreateInfo-pName-00707", $"the module has no {st->stage} entry point named \"{name}\"");
        var si = st->pSpecializationInfo;
        if (si != null)
            for (uint i = 0; i < si->mapEntryCount; i++)
            {
                var e = si->pMapEntries[i];
                for (uint j = 0; j < i; j++)
                    if (si->pMapEntries[j].constantID == e.constantID)
                        Fail(cmd, "VUID-VkSpecializationInfo-constantID-04911", $"constantID {e.constantID} is specialized twice");
                if (module.SpecConstantSizes.TryGetValue(e.constantID, out var size) && e.size != size)
                    Fail(cmd, "VUID-VkSpecializationMapEntry-constantID-00776", $"constant {e.constantID} is {size} bytes, its map entry says {e.size}");
            }
    }

    /// <summary>Graphics stages: each at most once, and only graphics ones (VUID-VkGraphicsPipelineCreateInfo-stage-06897/00728).</summary>
    static void CheckGraphicsStages(int cmd, VkGraphicsPipelineCreateInfo* ci, DeviceState dev)
    {
        uint seen = 0;
        for (uint s = 0; s < ci->stageCount; s++)
        {
            var stage = ci->pStages[s].stage;
            if (stage == VK_SHADER_STAGE_COMPUTE_BIT) Fail(cmd, "VUID-VkGraphicsPipelineCreateInfo-stage-00728", "a compute stage in a graphics pipeline");
            if ((seen & (uint)stage) != 0) Fail(cmd, "VUID-VkGraphicsPipelineCreateInfo-stage-06897", $"stage {stage} named twice");
            seen |= (uint)stage;
        }
    }

    /// <summary>libguesticd_spirv.so, next to hostsim's assembly (or GUESTICD_SPIRV_LIBRARY).</summary>
    static class Spirv
    {
        public static readonly delegate* unmanaged<uint*, nuint, int, uint, byte*, nuint, int> Validate;
        public static readonly string Missing = "";

        static Spirv()
        {
            var path = Environment.GetEnvironmentVariable("GUESTICD_SPIRV_LIBRARY") is { Length: > 0 } p ? p
                : Path.Combine(AppContext.BaseDirectory, "libguesticd_spirv.so");
            if (!NativeLibrary.TryLoad(path, out var lib)) { Missing = $"{path} could not be loaded"; return; }
            if (!NativeLibrary.TryGetExport(lib, "guesticd_spirv_validate", out var fn)) { Missing = $"{path} has no guesticd_spirv_validate"; return; }
            Validate = (delegate* unmanaged<uint*, nuint, int, uint, byte*, nuint, int>)fn;
        }
    }
}
