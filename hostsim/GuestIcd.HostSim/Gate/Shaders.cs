using System.Runtime.InteropServices;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkShaderStageFlagBits;

namespace GuestIcd.HostSim.Gate;

/// <summary>What the gate keeps of one shader module: what pipelines are checked against.</summary>
internal sealed class ShaderModuleState(ulong device, (uint Set, uint Binding)[] resources, (uint Model, string Name)[] entryPoints,
    Dictionary<uint, uint> specConstantSizes)
{
    /// <summary>Per entry point (index into <see cref="EntryPoints"/>): its workgroup size, each dimension a
    /// literal or a specialization constant (SpecId, default). Null: the module declares none.</summary>
    public WorkgroupDim[]?[] LocalSizes = [];

    public readonly ulong Device = device;
    /// <summary>The (set, binding) of every resource variable the module declares.</summary>
    public readonly (uint Set, uint Binding)[] Resources = resources;
    /// <summary>Every OpEntryPoint: SPIR-V execution model and name.</summary>
    public readonly (uint Model, string Name)[] EntryPoints = entryPoints;
    /// <summary>SpecId → the byte size its specialization data must have (VkBool32 for booleans).</summary>
    public readonly Dictionary<uint, uint> SpecConstantSizes = specConstantSizes;
}

/// <summary>One workgroup dimension: <see cref="Value"/>, or specialization constant <see cref="SpecId"/> (&gt;= 0) defaulting to it.</summary>
internal readonly record struct WorkgroupDim(uint Value, int SpecId);

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
        var specSizes = new Dictionary<uint, uint>();    // SpecId → bytes
        var entryPoints = new List<(uint, string)>();
        var entryIds = new List<uint>();
        // Sizes in bytes of the types the module declares (int, float, bool, vectors, matrices, arrays, structs),
        // its 32-bit constants (literal or specialization), and its composite constants: enough to know the
        // workgroup size and how much memory a workgroup and an invocation declare.
        var typeSizes = new Dictionary<uint, ulong>();
        var pointee = new Dictionary<uint, (uint Class, uint Type)>();
        var constants = new Dictionary<uint, WorkgroupDim>();
        var composites = new Dictionary<uint, uint[]>();
        var localSizes = new Dictionary<uint, uint[]>();   // entry id → 3 literals
        var localSizeIds = new Dictionary<uint, uint[]>(); // entry id → 3 constant ids
        uint workgroupSizeBuiltin = 0;
        ulong workgroupBytes = 0, invocationBytes = 0;
        for (ulong i = 5; i < words;)
        {
            uint wc = code[i] >> 16, op = code[i] & 0xFFFF;
            if (wc == 0 || i + wc > words) Fail(cmd, "VUID-VkShaderModuleCreateInfo-pCode-01379", $"instruction at word {i} runs past the module");
            uint* w = code + i;
            switch (op)
            {
                case 17 when wc >= 2: // OpCapability
                {
                    uint cap = w[1];
                    if (cap is 4 or 6 or 5347) // Addresses, Kernel, PhysicalStorageBufferAddresses
                        Fail(cmd, "VUID-VkShaderModuleCreateInfo-pCode-01091", $"SPIR-V capability {cap} needs a feature hostsim never enables (shaders would address host memory)");
                    break;
                }
                case 15 when wc >= 4: // OpEntryPoint model id name...
                    entryPoints.Add((w[1], LiteralString(w + 3, wc - 3)));
                    entryIds.Add(w[2]);
                    break;
                case 16 when wc >= 6 && w[2] == 17: // OpExecutionMode entry LocalSize x y z
                    localSizes[w[1]] = [w[3], w[4], w[5]];
                    break;
                case 331 when wc >= 6 && w[2] == 38: // OpExecutionModeId entry LocalSizeId x y z
                    localSizeIds[w[1]] = [w[3], w[4], w[5]];
                    break;
                case 71 when wc >= 4: // OpDecorate target decoration literal
                    if (w[2] == 34) sets[w[1]] = w[3];
                    else if (w[2] == 33) bindings[w[1]] = w[3];
                    else if (w[2] == 1) specIds[w[1]] = w[3];
                    else if (w[2] == 11 && w[3] == 25) workgroupSizeBuiltin = w[1]; // BuiltIn WorkgroupSize
                    break;
                case 20 when wc >= 2: typeSizes[w[1]] = 4; break; // OpTypeBool (as VkBool32)
                case 21 or 22 when wc >= 3: typeSizes[w[1]] = w[2] / 8; break; // OpTypeInt / OpTypeFloat
                case 23 or 24 when wc >= 4: // OpTypeVector / OpTypeMatrix result component count
                    if (typeSizes.TryGetValue(w[2], out var component)) typeSizes[w[1]] = component * w[3];
                    break;
                case 28 when wc >= 4: // OpTypeArray result element length
                    if (typeSizes.TryGetValue(w[2], out var element) && constants.TryGetValue(w[3], out var length))
                        typeSizes[w[1]] = Math.Min(element * length.Value, 1UL << 48);
                    break;
                case 30: // OpTypeStruct result members...
                {
                    ulong sum = 0;
                    for (uint m = 2; m < wc; m++) sum += typeSizes.TryGetValue(w[m], out var ms) ? ms : 0;
                    typeSizes[w[1]] = Math.Min(sum, 1UL << 48);
                    break;
                }
                case 32 when wc >= 4: pointee[w[1]] = (w[2], w[3]); break; // OpTypePointer result class type
                case 43 when wc >= 4: constants[w[2]] = new WorkgroupDim(w[3], -1); break; // OpConstant type result value
                case 48 or 49 when wc >= 3: // OpSpecConstantTrue/False type result
                    if (specIds.TryGetValue(w[2], out var boolId)) specSizes[boolId] = 4;
                    break;
                case 50 when wc >= 4: // OpSpecConstant type result value...
                    if (specIds.TryGetValue(w[2], out var id))
                    {
                        if (typeSizes.TryGetValue(w[1], out var size)) specSizes[id] = (uint)size;
                        constants[w[2]] = new WorkgroupDim(w[3], (int)Math.Min(id, int.MaxValue));
                    }
                    else constants[w[2]] = new WorkgroupDim(w[3], -1);
                    break;
                case 44 or 51 when wc >= 3: // OpConstantComposite / OpSpecConstantComposite type result constituents...
                    composites[w[2]] = new ReadOnlySpan<uint>(w + 3, (int)wc - 3).ToArray();
                    break;
                case 59 when wc >= 4: // OpVariable type result class
                    if (pointee.TryGetValue(w[1], out var pt) && typeSizes.TryGetValue(pt.Type, out var bytes))
                    {
                        if (w[3] == 4) workgroupBytes += bytes;                  // Workgroup
                        else if (w[3] is 6 or 7) invocationBytes += bytes;       // Private, Function
                    }
                    break;
            }
            i += wc;
        }
        // Each invocation's Private and Function variables live on the stack of the CPU driver's threads (a
        // fuzzed shader with a huge array overflowed it); workgroup memory is bounded by the device's limit.
        if (invocationBytes > MaxInvocationBytes)
            Fail(cmd, "VUID-VkShaderModuleCreateInfo-pCode-01379", $"the module declares {invocationBytes} bytes of Private and Function variables per invocation; hostsim serves at most {MaxInvocationBytes}");
        if (workgroupBytes > dev.Limits.maxComputeSharedMemorySize)
            Fail(cmd, "VUID-RuntimeSpirv-Workgroup-06530", $"{workgroupBytes} bytes of Workgroup variables exceed maxComputeSharedMemorySize {dev.Limits.maxComputeSharedMemorySize}");
        var resources = sets.Where(kv => bindings.ContainsKey(kv.Key)).Select(kv => (kv.Value, bindings[kv.Key])).Distinct().ToArray();
        var state = new ShaderModuleState(dev.Handle, resources, entryPoints.ToArray(), specSizes);
        WorkgroupDim[]? Dims(uint[] ids) => ids.Length >= 3 && ids.All(constants.ContainsKey) ? ids.Take(3).Select(c => constants[c]).ToArray() : null;
        state.LocalSizes = new WorkgroupDim[]?[entryIds.Count];
        for (int e = 0; e < entryIds.Count; e++)
        {
            // The WorkgroupSize built-in wins over the execution modes (SPIR-V 1.6 §3.21).
            if (workgroupSizeBuiltin != 0 && composites.TryGetValue(workgroupSizeBuiltin, out var c)) state.LocalSizes[e] = Dims(c);
            else if (localSizeIds.TryGetValue(entryIds[e], out var ids)) state.LocalSizes[e] = Dims(ids);
            else if (localSizes.TryGetValue(entryIds[e], out var lit)) state.LocalSizes[e] = [new(lit[0], -1), new(lit[1], -1), new(lit[2], -1)];
        }
        return state;
    }

    /// <summary>The most Private + Function variable bytes one invocation may declare: far above what real
    /// shaders use, far below the driver threads' stacks (lavapipe runs 8 invocations per SIMD lane group).</summary>
    const ulong MaxInvocationBytes = 64 << 10;

    static readonly string[] s_workgroupVuids = ["VUID-RuntimeSpirv-x-06429", "VUID-RuntimeSpirv-y-06430", "VUID-RuntimeSpirv-z-06431"];

    /// <summary>The workgroup size a compute stage runs with, specialization applied: within the device's limits.</summary>
    static void CheckWorkgroupSize(int cmd, VkPipelineShaderStageCreateInfo* st, WorkgroupDim[]? dims, DeviceState dev)
    {
        if (dims == null) return; // the validator requires a size for GLCompute entry points
        ref readonly var l = ref dev.Limits;
        var si = st->pSpecializationInfo;
        ulong product = 1;
        for (int d = 0; d < 3; d++)
        {
            uint v = dims[d].Value;
            if (dims[d].SpecId >= 0 && si != null)
                for (uint k = 0; k < si->mapEntryCount; k++)
                {
                    var e = si->pMapEntries[k];
                    if (e.constantID != (uint)dims[d].SpecId || e.size == 0) continue;
                    uint raw = 0;
                    Buffer.MemoryCopy((byte*)si->pData + e.offset, &raw, 4, Math.Min((long)e.size, 4));
                    v = raw;
                }
            if (v == 0 || v > l.maxComputeWorkGroupSize[d])
                Fail(cmd, s_workgroupVuids[d], $"workgroup size {"xyz"[d]} = {v} is outside [1, maxComputeWorkGroupSize[{d}] {l.maxComputeWorkGroupSize[d]}]");
            product *= v;
        }
        if (product > l.maxComputeWorkGroupInvocations)
            Fail(cmd, "VUID-RuntimeSpirv-x-06432", $"{product} invocations per workgroup exceed maxComputeWorkGroupInvocations {l.maxComputeWorkGroupInvocations}");
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
        int found = -1;
        for (int e = 0; e < module.EntryPoints.Length && found < 0; e++)
            if (module.EntryPoints[e].Model == model && module.EntryPoints[e].Name == name) found = e;
        if (found < 0) Fail(cmd, "VUID-VkPipelineShaderStageCreateInfo-pName-00707", $"the module has no {st->stage} entry point named \"{name}\"");
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
        if (model == 5) CheckWorkgroupSize(cmd, st, module.LocalSizes[found], dev);
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

    /// <summary>The validator: libguesticd_spirv.so next to hostsim's assembly (or GUESTICD_SPIRV_LIBRARY), else
    /// SPIRV-Tools' own shared library through its C API (GUESTICD_SPIRV_TOOLS_LIBRARY, else
    /// <see cref="SpirvTools.DefaultLibrary"/>: the Vulkan SDK's on a Windows host).</summary>
    static class Spirv
    {
        public static readonly delegate* unmanaged<uint*, nuint, int, uint, byte*, nuint, int> Validate;
        public static readonly string Missing = "";

        static Spirv()
        {
            var path = Environment.GetEnvironmentVariable("GUESTICD_SPIRV_LIBRARY") is { Length: > 0 } p ? p
                : Path.Combine(AppContext.BaseDirectory, "libguesticd_spirv.so");
            string shim;
            if (!NativeLibrary.TryLoad(path, out var lib)) shim = $"{path} could not be loaded";
            else if (!NativeLibrary.TryGetExport(lib, "guesticd_spirv_validate", out var fn)) shim = $"{path} has no guesticd_spirv_validate";
            else
            {
                Validate = (delegate* unmanaged<uint*, nuint, int, uint, byte*, nuint, int>)fn;
                return;
            }
            var tools = Environment.GetEnvironmentVariable("GUESTICD_SPIRV_TOOLS_LIBRARY") is { Length: > 0 } t ? t : SpirvTools.DefaultLibrary;
            if (SpirvTools.Load(tools) is { } why) { Missing = $"{shim}, and {why}"; return; }
            Validate = &SpirvTools.Validate;
        }
    }
}
