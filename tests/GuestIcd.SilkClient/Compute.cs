using Silk.NET.Vulkan;
using static GuestIcd.SilkClient.Gpu;

namespace GuestIcd.SilkClient;

/// <summary>multiply.comp (dst[i] = src[i] * mul + i, push constants {mul, count}) over two storage buffers in
/// HOST_VISIBLE|HOST_COHERENT memory, checked element by element through the mapping.</summary>
public static unsafe class Compute
{
    public static int Run(Gpu gpu, uint count, uint mul)
    {
        var vk = gpu.Vk;
        var device = gpu.Device;
        ulong bytes = count * 4UL;
        var src = gpu.CreateHostBuffer(bytes, BufferUsageFlags.StorageBufferBit, "src");
        var dst = gpu.CreateHostBuffer(bytes, BufferUsageFlags.StorageBufferBit, "dst");
        var s = (uint*)src.Mapped;
        var d = (uint*)dst.Mapped;
        for (uint i = 0; i < count; i++) { s[i] = i * 7u + 3u; d[i] = 0xDEADBEEF; }

        var bindings = stackalloc DescriptorSetLayoutBinding[2];
        for (uint b = 0; b < 2; b++)
            bindings[b] = new DescriptorSetLayoutBinding
            {
                Binding = b, DescriptorType = DescriptorType.StorageBuffer, DescriptorCount = 1, StageFlags = ShaderStageFlags.ComputeBit,
            };
        var dslci = new DescriptorSetLayoutCreateInfo { SType = StructureType.DescriptorSetLayoutCreateInfo, BindingCount = 2, PBindings = bindings };
        DescriptorSetLayout dsl;
        Check(vk.CreateDescriptorSetLayout(device, &dslci, null, &dsl), "vkCreateDescriptorSetLayout");

        var pcr = new PushConstantRange { StageFlags = ShaderStageFlags.ComputeBit, Offset = 0, Size = 8 };
        var plci = new PipelineLayoutCreateInfo
        {
            SType = StructureType.PipelineLayoutCreateInfo, SetLayoutCount = 1, PSetLayouts = &dsl, PushConstantRangeCount = 1, PPushConstantRanges = &pcr,
        };
        PipelineLayout layout;
        Check(vk.CreatePipelineLayout(device, &plci, null, &layout), "vkCreatePipelineLayout(compute)");

        var module = gpu.LoadShader("multiply.comp.spv");
        var cpci = new ComputePipelineCreateInfo
        {
            SType = StructureType.ComputePipelineCreateInfo,
            Layout = layout,
            Stage = new PipelineShaderStageCreateInfo
            {
                SType = StructureType.PipelineShaderStageCreateInfo, Stage = ShaderStageFlags.ComputeBit, Module = module, PName = EntryMain,
            },
        };
        Pipeline pipeline;
        Check(vk.CreateComputePipelines(device, default, 1, &cpci, null, &pipeline), "vkCreateComputePipelines");

        var ps = new DescriptorPoolSize { Type = DescriptorType.StorageBuffer, DescriptorCount = 2 };
        var dpci = new DescriptorPoolCreateInfo { SType = StructureType.DescriptorPoolCreateInfo, MaxSets = 1, PoolSizeCount = 1, PPoolSizes = &ps };
        DescriptorPool pool;
        Check(vk.CreateDescriptorPool(device, &dpci, null, &pool), "vkCreateDescriptorPool");
        var dsai = new DescriptorSetAllocateInfo { SType = StructureType.DescriptorSetAllocateInfo, DescriptorPool = pool, DescriptorSetCount = 1, PSetLayouts = &dsl };
        DescriptorSet set;
        Check(vk.AllocateDescriptorSets(device, &dsai, &set), "vkAllocateDescriptorSets");
        var infos = stackalloc DescriptorBufferInfo[2];
        infos[0] = new DescriptorBufferInfo { Buffer = src.Buffer, Offset = 0, Range = Vk.WholeSize };
        infos[1] = new DescriptorBufferInfo { Buffer = dst.Buffer, Offset = 0, Range = Vk.WholeSize };
        var writes = stackalloc WriteDescriptorSet[2];
        for (uint b = 0; b < 2; b++)
            writes[b] = new WriteDescriptorSet
            {
                SType = StructureType.WriteDescriptorSet, DstSet = set, DstBinding = b, DescriptorCount = 1,
                DescriptorType = DescriptorType.StorageBuffer, PBufferInfo = &infos[b],
            };
        vk.UpdateDescriptorSets(device, 2, writes, 0, null);

        // Copies: a local whose address was taken cannot be captured by the recording lambda.
        var (pl, lay, ds) = (pipeline, layout, set);
        gpu.RunOnce("compute", cmd =>
        {
            vk.CmdBindPipeline(cmd, PipelineBindPoint.Compute, pl);
            var setCopy = ds;
            vk.CmdBindDescriptorSets(cmd, PipelineBindPoint.Compute, lay, 0, 1, &setCopy, 0, null);
            var pushed = stackalloc uint[2] { mul, count };
            vk.CmdPushConstants(cmd, lay, ShaderStageFlags.ComputeBit, 0, 8, pushed);
            vk.CmdDispatch(cmd, (count + 63) / 64, 1, 1);
            var barrier = new BufferMemoryBarrier
            {
                SType = StructureType.BufferMemoryBarrier, SrcAccessMask = AccessFlags.ShaderWriteBit, DstAccessMask = AccessFlags.HostReadBit,
                SrcQueueFamilyIndex = Vk.QueueFamilyIgnored, DstQueueFamilyIndex = Vk.QueueFamilyIgnored,
                Buffer = dst.Buffer, Offset = 0, Size = Vk.WholeSize,
            };
            vk.CmdPipelineBarrier(cmd, PipelineStageFlags.ComputeShaderBit, PipelineStageFlags.HostBit, 0, 0, null, 1, &barrier, 0, null);
        });

        uint bad = 0;
        for (uint i = 0; i < count; i++)
        {
            uint want = (i * 7u + 3u) * mul + i;
            if (d[i] != want && bad++ < 5) Console.WriteLine($"compute: element {i}: got {d[i]}, want {want}");
        }

        vk.DestroyDescriptorPool(device, pool, null);
        vk.DestroyPipeline(device, pipeline, null);
        vk.DestroyShaderModule(device, module, null);
        vk.DestroyPipelineLayout(device, layout, null);
        vk.DestroyDescriptorSetLayout(device, dsl, null);
        gpu.Destroy(src);
        gpu.Destroy(dst);

        if (bad != 0) { Console.WriteLine($"compute: {bad} of {count} elements wrong"); return 1; }
        Console.WriteLine($"compute: verified {count} elements");
        return 0;
    }
}
