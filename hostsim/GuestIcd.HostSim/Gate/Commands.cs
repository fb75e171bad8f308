using GuestIcd.Protocol;
using GuestIcd.Vulkan;

namespace GuestIcd.HostSim.Gate;

/// <summary>Which family checks and records each device-level command that is not recorded into a
/// command buffer.</summary>
internal sealed unsafe partial class ValidUsageGate
{
    ShaderModuleState? _pendingModule;

    bool CheckDeviceCommand(int cmd, ulong* a, DeviceState dev, ref ulong result)
    {
        if (s_drains[cmd]) Drain(dev);
        switch (cmd)
        {
            case Tables.vkAllocateMemory: return CheckAllocateMemory(cmd, a, dev, ref result);
            case Tables.vkCreateSampler: CheckCreateSampler(cmd, (VkSamplerCreateInfo*)a[1], dev); break;
            case Tables.vkFreeMemory:
                if (!CheckFreeMemory(cmd, a, dev)) { result = 0; return false; }
                break;
            case Tables.vkBindBufferMemory: CheckBindBuffer(cmd, a[1], a[2], a[3], "VUID-vkBindBufferMemory-"); break;
            case Tables.vkBindImageMemory: CheckBindImage(cmd, a[1], a[2], a[3], "VUID-vkBindImageMemory-", null); break;
            case Tables.vkBindBufferMemory2:
            {
                var infos = (VkBindBufferMemoryInfo*)a[2];
                for (uint i = 0; i < (uint)a[1]; i++) CheckBindBuffer(cmd, infos[i].buffer.Handle, infos[i].memory.Handle, infos[i].memoryOffset, "VUID-VkBindBufferMemoryInfo-");
                for (uint i = 0; i < (uint)a[1]; i++)
                    for (uint j = i + 1; j < (uint)a[1]; j++)
                        if (infos[i].buffer.Handle == infos[j].buffer.Handle) Fail(cmd, "VUID-VkBindBufferMemoryInfo-buffer-07459", "the same buffer is bound twice");
                break;
            }
            case Tables.vkBindImageMemory2:
            {
                var infos = (VkBindImageMemoryInfo*)a[2];
                for (uint i = 0; i < (uint)a[1]; i++)
                {
                    if (infos[i].memory.Handle == 0) Fail(cmd, "VUID-VkBindImageMemoryInfo-image-07736", "memory is VK_NULL_HANDLE (swapchain binds are not served)");
                    CheckBindImage(cmd, infos[i].image.Handle, infos[i].memory.Handle, infos[i].memoryOffset, "VUID-VkBindImageMemoryInfo-", infos[i].pNext);
                }
                for (uint i = 0; i < (uint)a[1]; i++)
                    for (uint j = i + 1; j < (uint)a[1]; j++)
                        if (infos[i].image.Handle == infos[j].image.Handle) Fail(cmd, "VUID-VkBindImageMemoryInfo-image-07460", "the same image is bound twice");
                break;
            }
            case Tables.vkFlushMappedMemoryRanges or Tables.vkInvalidateMappedMemoryRanges: CheckMappedRanges(cmd, a); break;
            case Tables.vkGetDeviceMemoryCommitment: LiveMemory(cmd, a[1], "memory"); break;
            case Tables.vkCreateBuffer: CheckCreateBuffer(cmd, a, dev); break;
            case Tables.vkCreateBufferView: CheckCreateBufferView(cmd, a, dev); break;
            case Tables.vkCreateImage:
            {
                CheckCreateImage(cmd, a, dev, ref result, out bool refuse);
                if (refuse) return false;
                break;
            }
            case Tables.vkCreateImageView: CheckCreateImageView(cmd, a); break;
            case Tables.vkGetImageSubresourceLayout: CheckImageSubresourceLayout(cmd, a); break;
            case Tables.vkCreateShaderModule:
            {
                var ci = (VkShaderModuleCreateInfo*)a[1];
                _pendingModule = ParseSpirv(cmd, ci->pCode, ci->codeSize, dev, validate: true);
                break;
            }
            case Tables.vkCreateDescriptorSetLayout: if (!CheckCreateSetLayout(cmd, a, ref result)) return false; break;
            case Tables.vkCreatePipelineLayout: CheckCreatePipelineLayout(cmd, a, dev); break;
            case Tables.vkAllocateDescriptorSets: CheckAllocateSets(cmd, a); break;
            case Tables.vkUpdateDescriptorSets: CheckUpdateSets(cmd, a, dev); break;
            case Tables.vkCreateComputePipelines: CheckComputePipelines(cmd, a, dev); break;
            case Tables.vkCreateGraphicsPipelines: CheckGraphicsPipelines(cmd, a, dev, record: false); break;
            case Tables.vkCreateRenderPass: CheckCreateRenderPass(cmd, a, dev, record: false); break;
            case Tables.vkCreateRenderPass2: CheckCreateRenderPass2(cmd, a, dev, record: false); break;
            case Tables.vkCreateFramebuffer: CheckCreateFramebuffer(cmd, a, dev, record: false); break;
            case Tables.vkCreateQueryPool:
            {
                var ci = (VkQueryPoolCreateInfo*)a[1];
                if (ci->queryCount == 0) Fail(cmd, "VUID-VkQueryPoolCreateInfo-queryCount-02763", "queryCount is 0");
                if (ci->queryType == VkQueryType.VK_QUERY_TYPE_PIPELINE_STATISTICS && dev.Features.pipelineStatisticsQuery == 0)
                    Fail(cmd, "VUID-VkQueryPoolCreateInfo-queryType-00791", "pipeline statistics without the pipelineStatisticsQuery feature");
                break;
            }
            case Tables.vkGetQueryPoolResults:
            {
                var q = Query(cmd, a[1], (uint)a[2], (uint)a[3], "VUID-vkGetQueryPoolResults-firstQuery-00816");
                ulong dataSize = a[4], stride = a[6];
                var flags = (VkQueryResultFlags)(uint)a[7];
                ulong elem = QueryElement(q, flags);
                if ((flags & VkQueryResultFlags.VK_QUERY_RESULT_64_BIT) != 0 ? stride % 8 != 0 : stride % 4 != 0)
                    Fail(cmd, "VUID-vkGetQueryPoolResults-flags-02828", $"stride {stride} is not aligned to the result size");
                if ((uint)a[3] > 0 && (UInt128)((uint)a[3] - 1) * stride + elem > dataSize)
                    Fail(cmd, "VUID-vkGetQueryPoolResults-dataSize-00817", $"{(uint)a[3]} results of stride {stride} do not fit in {dataSize} bytes");
                break;
            }
            case Tables.vkResetQueryPool: Query(cmd, a[1], (uint)a[2], (uint)a[3], "VUID-vkResetQueryPool-firstQuery-02667"); break;
            case Tables.vkGetDeviceQueue or Tables.vkGetDeviceQueue2:
            {
                uint family = cmd == Tables.vkGetDeviceQueue ? (uint)a[1] : ((VkDeviceQueueInfo2*)a[1])->queueFamilyIndex;
                uint index = cmd == Tables.vkGetDeviceQueue ? (uint)a[2] : ((VkDeviceQueueInfo2*)a[1])->queueIndex;
                bool ok = false;
                foreach (var (f, c) in dev.Queues) if (f == family && index < c) ok = true;
                if (!ok) Fail(cmd, "VUID-vkGetDeviceQueue-queueIndex-00385", $"queue {index} of family {family} was not created with the device");
                break;
            }
            case Tables.vkQueueSubmit or Tables.vkQueueSubmit2: CheckSubmit(cmd, a); break;
            case Tables.vkQueueBindSparse: Fail(cmd, "VUID-vkQueueBindSparse-queuetype", "sparse binding is not served by hostsim"); break;
            case Tables.vkFreeCommandBuffers:
            {
                var list = (ulong*)a[3];
                for (uint i = 0; i < (uint)a[2]; i++)
                    if (list[i] != 0 && Lookup(_commandBuffers, cmd, list[i], "pCommandBuffers").Pool != a[1])
                        Fail(cmd, "VUID-vkFreeCommandBuffers-pCommandBuffers-parent", "a command buffer of another pool");
                break;
            }
            case Tables.vkFreeDescriptorSets:
            {
                var list = (ulong*)a[3];
                for (uint i = 0; i < (uint)a[2]; i++)
                    if (list[i] != 0 && Lookup(_sets, cmd, list[i], "pDescriptorSets").Pool != a[1])
                        Fail(cmd, "VUID-vkFreeDescriptorSets-pDescriptorSets-parent", "a descriptor set of another pool");
                break;
            }
            case Tables.vkBeginCommandBuffer: CheckBegin(cmd, a); break;
            case Tables.vkEndCommandBuffer: CheckEnd(cmd, a); break;
        }
        return true;
    }

    void RecordDeviceCommand(int cmd, ulong* a, DeviceState dev)
    {
        switch (cmd)
        {
            case Tables.vkAllocateMemory: RecordAllocateMemory(a, dev); break;
            case Tables.vkBindBufferMemory: RecordBindBuffer(a[1], a[2]); break;
            case Tables.vkBindImageMemory: RecordBindImage(a[1], a[2]); break;
            case Tables.vkBindBufferMemory2:
                for (uint i = 0; i < (uint)a[1]; i++) RecordBindBuffer(((VkBindBufferMemoryInfo*)a[2])[i].buffer.Handle, ((VkBindBufferMemoryInfo*)a[2])[i].memory.Handle);
                break;
            case Tables.vkBindImageMemory2:
                for (uint i = 0; i < (uint)a[1]; i++) RecordBindImage(((VkBindImageMemoryInfo*)a[2])[i].image.Handle, ((VkBindImageMemoryInfo*)a[2])[i].memory.Handle);
                break;
            case Tables.vkCreateBuffer: RecordCreateBuffer(a, dev); break;
            case Tables.vkCreateBufferView: RecordCreateBufferView(a, dev); break;
            case Tables.vkCreateImage: RecordCreateImage(a, dev); break;
            case Tables.vkCreateImageView: RecordCreateImageView(a, dev); break;
            case Tables.vkCreateShaderModule:
                if (*(ulong*)a[3] != 0 && _pendingModule != null) _modules[*(ulong*)a[3]] = _pendingModule;
                _pendingModule = null;
                break;
            case Tables.vkCreateDescriptorSetLayout: RecordCreateSetLayout(a, dev); break;
            case Tables.vkCreatePipelineLayout: RecordCreatePipelineLayout(a, dev); break;
            case Tables.vkAllocateDescriptorSets: RecordAllocateSets(a, dev); break;
            case Tables.vkCreateComputePipelines: RecordComputePipelines(a, dev); break;
            case Tables.vkCreateGraphicsPipelines: CheckGraphicsPipelines(cmd, a, dev, record: true); break;
            case Tables.vkCreateRenderPass: CheckCreateRenderPass(cmd, a, dev, record: true); break;
            case Tables.vkCreateRenderPass2: CheckCreateRenderPass2(cmd, a, dev, record: true); break;
            case Tables.vkCreateFramebuffer: CheckCreateFramebuffer(cmd, a, dev, record: true); break;
            case Tables.vkCreateQueryPool:
            {
                ulong h = *(ulong*)a[3];
                var ci = (VkQueryPoolCreateInfo*)a[1];
                if (h != 0) _queryPools[h] = new QueryPoolState(dev.Handle, ci->queryCount, ci->queryType, System.Numerics.BitOperations.PopCount((uint)ci->pipelineStatistics));
                break;
            }
            case Tables.vkGetDeviceQueue: if (*(ulong*)a[3] != 0) _owner[(TypeQueue, *(ulong*)a[3])] = dev.Handle; break;
            case Tables.vkGetDeviceQueue2: if (*(ulong*)a[2] != 0) _owner[(TypeQueue, *(ulong*)a[2])] = dev.Handle; break;
            case Tables.vkQueueSubmit or Tables.vkQueueSubmit2: RecordSubmit(cmd, a, dev); break;
            case Tables.vkDeviceWaitIdle: dev.Busy = false; break;
            case Tables.vkAllocateCommandBuffers: RecordAllocateCommandBuffers(a, dev); break;
            case Tables.vkBeginCommandBuffer: RecordBegin(a); break;
            case Tables.vkEndCommandBuffer:
            {
                var cb = _commandBuffers[a[0]];
                if (cb.State == RecordState.Recording) cb.State = RecordState.Executable;
                break;
            }
            case Tables.vkResetCommandBuffer:
                Invalidate(TypeCommandBuffer, a[0], dev.Handle);
                _commandBuffers[a[0]].Reset(RecordState.Initial);
                break;
            case Tables.vkResetCommandPool:
                foreach (var (h, cb) in _commandBuffers)
                    if (cb.Pool == a[1]) { Invalidate(TypeCommandBuffer, h, dev.Handle); cb.Reset(RecordState.Initial); }
                break;
            case Tables.vkResetDescriptorPool: ForgetChildren(TypeDescriptorSet, a[1], dev); break;
            case Tables.vkDestroyDevice: ForgetDevice(dev); break;
        }
    }
}
