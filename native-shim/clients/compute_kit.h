/* What multi_instance.c, stress.c, cmdbuf_churn.c and compute_loop.c share (static inline: a client uses what it needs): a storage-buffer compute job (multiply.comp: dst[i] = src[i] * mul
 * + i) on one device, its buffers in mapped HOST_VISIBLE memory, and the check of every element. */
#ifndef COMPUTE_KIT_H
#define COMPUTE_KIT_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vulkan/vulkan.h>

#define KCHECK(call) do { VkResult r_ = (call); if (r_ != VK_SUCCESS) { fprintf(stderr, "FAILED %s = %d (%s:%d)\n", #call, r_, __FILE__, __LINE__); return 1; } } while (0)

typedef struct { uint32_t *code; size_t size; } spirv;

static inline int load_spirv(const char *path, spirv *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return 1; }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    out->code = malloc((size_t)n);
    out->size = (size_t)n;
    int bad = fread(out->code, 1, (size_t)n, f) != (size_t)n;
    fclose(f);
    return bad;
}

static inline uint32_t kit_memory_type(VkPhysicalDevice pd, uint32_t bits, VkMemoryPropertyFlags want)
{
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(pd, &mp);
    for (uint32_t i = 0; i < mp.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (mp.memoryTypes[i].propertyFlags & want) == want) return i;
    return UINT32_MAX;
}

static inline uint32_t kit_compute_family(VkPhysicalDevice pd, uint32_t *queueCount)
{
    uint32_t n = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, NULL);
    VkQueueFamilyProperties qfs[16];
    if (n > 16) n = 16;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, qfs);
    for (uint32_t i = 0; i < n; i++)
        if (qfs[i].queueFlags & VK_QUEUE_COMPUTE_BIT) { if (queueCount) *queueCount = qfs[i].queueCount; return i; }
    return UINT32_MAX;
}

/* The pipeline side of the job, shared by every job on a device. */
typedef struct {
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkShaderModule module;
    VkPipeline pipeline;
} kit_pipeline;

static inline int kit_pipeline_create(VkDevice device, const spirv *spv, kit_pipeline *p)
{
    VkDescriptorSetLayoutBinding bindings[2] = {
        { .binding = 0, .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = 1, .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT },
        { .binding = 1, .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = 1, .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT },
    };
    VkDescriptorSetLayoutCreateInfo dslci = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO, .bindingCount = 2, .pBindings = bindings };
    KCHECK(vkCreateDescriptorSetLayout(device, &dslci, NULL, &p->dsl));
    VkPushConstantRange pcr = { .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .offset = 0, .size = 8 };
    VkPipelineLayoutCreateInfo plci = { .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, .setLayoutCount = 1, .pSetLayouts = &p->dsl,
                                        .pushConstantRangeCount = 1, .pPushConstantRanges = &pcr };
    KCHECK(vkCreatePipelineLayout(device, &plci, NULL, &p->layout));
    VkShaderModuleCreateInfo smci = { .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, .codeSize = spv->size, .pCode = spv->code };
    KCHECK(vkCreateShaderModule(device, &smci, NULL, &p->module));
    VkComputePipelineCreateInfo cpci = { .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO, .layout = p->layout,
        .stage = { .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, .stage = VK_SHADER_STAGE_COMPUTE_BIT, .module = p->module, .pName = "main" } };
    KCHECK(vkCreateComputePipelines(device, VK_NULL_HANDLE, 1, &cpci, NULL, &p->pipeline));
    return 0;
}

static inline void kit_pipeline_destroy(VkDevice device, kit_pipeline *p)
{
    vkDestroyPipeline(device, p->pipeline, NULL);
    vkDestroyShaderModule(device, p->module, NULL);
    vkDestroyPipelineLayout(device, p->layout, NULL);
    vkDestroyDescriptorSetLayout(device, p->dsl, NULL);
}

/* One job's data: an input and an output buffer, mapped, and the descriptor set naming them. */
typedef struct {
    uint32_t count;
    VkBuffer buffers[2];
    VkDeviceMemory memories[2];
    uint32_t *mapped[2];
    VkDescriptorPool pool;
    VkDescriptorSet set;
} kit_job;

static inline int kit_job_create(VkPhysicalDevice pd, VkDevice device, const kit_pipeline *p, uint32_t count, kit_job *j)
{
    j->count = count;
    for (int b = 0; b < 2; b++) {
        VkBufferCreateInfo bci = { .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = (VkDeviceSize)count * 4, .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT };
        KCHECK(vkCreateBuffer(device, &bci, NULL, &j->buffers[b]));
        VkMemoryRequirements req;
        vkGetBufferMemoryRequirements(device, j->buffers[b], &req);
        uint32_t type = kit_memory_type(pd, req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
        if (type == UINT32_MAX) { fprintf(stderr, "no host-visible coherent memory\n"); return 1; }
        VkMemoryAllocateInfo mai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = req.size, .memoryTypeIndex = type };
        KCHECK(vkAllocateMemory(device, &mai, NULL, &j->memories[b]));
        KCHECK(vkBindBufferMemory(device, j->buffers[b], j->memories[b], 0));
        KCHECK(vkMapMemory(device, j->memories[b], 0, VK_WHOLE_SIZE, 0, (void **)&j->mapped[b]));
    }
    VkDescriptorPoolSize ps = { .type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = 2 };
    VkDescriptorPoolCreateInfo dpci = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, .maxSets = 1, .poolSizeCount = 1, .pPoolSizes = &ps };
    KCHECK(vkCreateDescriptorPool(device, &dpci, NULL, &j->pool));
    VkDescriptorSetAllocateInfo dsai = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO, .descriptorPool = j->pool, .descriptorSetCount = 1, .pSetLayouts = &p->dsl };
    KCHECK(vkAllocateDescriptorSets(device, &dsai, &j->set));
    return 0;
}

/* Points the job's set at its two buffers (a client that writes it through a template does not call this). */
static inline void kit_job_write(VkDevice device, const kit_job *j)
{
    VkDescriptorBufferInfo infos[2] = { { j->buffers[0], 0, VK_WHOLE_SIZE }, { j->buffers[1], 0, VK_WHOLE_SIZE } };
    VkWriteDescriptorSet writes[2];
    for (int b = 0; b < 2; b++)
        writes[b] = (VkWriteDescriptorSet){ .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, .dstSet = j->set, .dstBinding = (uint32_t)b, .descriptorCount = 1,
            .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .pBufferInfo = &infos[b] };
    vkUpdateDescriptorSets(device, 2, writes, 0, NULL);
}

static inline void kit_job_destroy(VkDevice device, kit_job *j)
{
    vkDestroyDescriptorPool(device, j->pool, NULL);
    for (int b = 0; b < 2; b++) { vkUnmapMemory(device, j->memories[b]); vkDestroyBuffer(device, j->buffers[b], NULL); vkFreeMemory(device, j->memories[b], NULL); }
}

/* Input depends on the element and on a seed, so two jobs never hold the same data. */
static inline void kit_fill(kit_job *j, uint32_t seed)
{
    for (uint32_t i = 0; i < j->count; i++) { j->mapped[0][i] = i * 7u + 3u + seed * 131u; j->mapped[1][i] = 0xDEADBEEF; }
}

static inline void kit_record(VkCommandBuffer cmd, const kit_pipeline *p, const kit_job *j, uint32_t mul)
{
    uint32_t params[2] = { mul, j->count };
    vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p->pipeline);
    vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p->layout, 0, 1, &j->set, 0, NULL);
    vkCmdPushConstants(cmd, p->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof params, params);
    vkCmdDispatch(cmd, (j->count + 63) / 64, 1, 1);
    VkBufferMemoryBarrier barrier = { .sType = VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER, .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_HOST_READ_BIT, .srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED, .dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED,
        .buffer = j->buffers[1], .offset = 0, .size = VK_WHOLE_SIZE };
    vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 0, NULL, 1, &barrier, 0, NULL);
}

/* Elements whose result is wrong (the first few are printed under the caller's label). */
static inline uint32_t kit_check(const kit_job *j, uint32_t seed, uint32_t mul, const char *label)
{
    uint32_t bad = 0;
    for (uint32_t i = 0; i < j->count; i++) {
        uint32_t want = (i * 7u + 3u + seed * 131u) * mul + i;
        if (j->mapped[1][i] != want && bad++ < 3) fprintf(stderr, "%s: element %u is %u, want %u\n", label, i, j->mapped[1][i], want);
    }
    return bad;
}
#endif
