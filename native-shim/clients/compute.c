/* A compute client as an application would write it: storage buffers in HOST_VISIBLE memory, a compute
 * pipeline from SPIR-V, push constants, a descriptor set, a dispatch, a fence, and the result read back
 * through the mapped buffer and checked element by element. Usage: compute SHADER.spv [ELEMENTS] */
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <vulkan/vulkan.h>

#define CHECK(call) do { VkResult r_ = (call); if (r_ != VK_SUCCESS) { printf("FAILED %s = %d (line %d)\n", #call, r_, __LINE__); return 1; } } while (0)

static uint32_t find_memory(VkPhysicalDevice pd, uint32_t bits, VkMemoryPropertyFlags want)
{
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(pd, &mp);
    for (uint32_t i = 0; i < mp.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (mp.memoryTypes[i].propertyFlags & want) == want) return i;
    return UINT32_MAX;
}

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: compute SHADER.spv [ELEMENTS]\n"); return 2; }
    uint32_t count = argc > 2 ? (uint32_t)atoi(argv[2]) : 1u << 20;
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 2; }
    fseek(f, 0, SEEK_END);
    long codeSize = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint32_t *code = malloc(codeSize);
    if (fread(code, 1, codeSize, f) != (size_t)codeSize) return 2;
    fclose(f);

    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .pApplicationName = "guesticd compute", .apiVersion = VK_API_VERSION_1_3 };
    VkInstanceCreateInfo ici = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app };
    VkInstance instance;
    CHECK(vkCreateInstance(&ici, NULL, &instance));
    uint32_t n = 1;
    VkPhysicalDevice pd;
    VkResult er = vkEnumeratePhysicalDevices(instance, &n, &pd);
    if ((er != VK_SUCCESS && er != VK_INCOMPLETE) || n == 0) { printf("no physical device\n"); return 1; }
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(pd, &props);
    printf("device: %s\n", props.deviceName);

    uint32_t qfCount = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &qfCount, NULL);
    VkQueueFamilyProperties qfs[16];
    if (qfCount > 16) qfCount = 16;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &qfCount, qfs);
    uint32_t family = UINT32_MAX;
    for (uint32_t i = 0; i < qfCount; i++) if (qfs[i].queueFlags & VK_QUEUE_COMPUTE_BIT) { family = i; break; }
    if (family == UINT32_MAX) { printf("no compute queue\n"); return 1; }

    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = family, .queueCount = 1, .pQueuePriorities = &prio };
    VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1, .pQueueCreateInfos = &qci };
    VkDevice device;
    CHECK(vkCreateDevice(pd, &dci, NULL, &device));
    VkQueue queue;
    vkGetDeviceQueue(device, family, 0, &queue);

    VkDeviceSize bytes = (VkDeviceSize)count * sizeof(uint32_t);
    VkBuffer buffers[2];
    VkDeviceMemory memories[2];
    uint32_t *mapped[2];
    for (int b = 0; b < 2; b++) {
        VkBufferCreateInfo bci = { .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = bytes, .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT };
        CHECK(vkCreateBuffer(device, &bci, NULL, &buffers[b]));
        VkMemoryRequirements req;
        vkGetBufferMemoryRequirements(device, buffers[b], &req);
        uint32_t type = find_memory(pd, req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
        if (type == UINT32_MAX) { printf("no host-visible coherent memory\n"); return 1; }
        VkMemoryAllocateInfo mai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = req.size, .memoryTypeIndex = type };
        CHECK(vkAllocateMemory(device, &mai, NULL, &memories[b]));
        CHECK(vkBindBufferMemory(device, buffers[b], memories[b], 0));
        CHECK(vkMapMemory(device, memories[b], 0, VK_WHOLE_SIZE, 0, (void **)&mapped[b]));
    }
    for (uint32_t i = 0; i < count; i++) { mapped[0][i] = i * 7u + 3u; mapped[1][i] = 0xDEADBEEF; }

    VkDescriptorSetLayoutBinding bindings[2] = {
        { .binding = 0, .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = 1, .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
          /* ignored for storage buffers: the ICD must not follow it */ .pImmutableSamplers = (const VkSampler *)(uintptr_t)0x10 },
        { .binding = 1, .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = 1, .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT },
    };
    VkDescriptorSetLayoutCreateInfo dslci = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO, .bindingCount = 2, .pBindings = bindings };
    VkDescriptorSetLayout dsl;
    CHECK(vkCreateDescriptorSetLayout(device, &dslci, NULL, &dsl));
    VkPushConstantRange pcr = { .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .offset = 0, .size = 8 };
    VkPipelineLayoutCreateInfo plci = { .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, .setLayoutCount = 1, .pSetLayouts = &dsl,
                                        .pushConstantRangeCount = 1, .pPushConstantRanges = &pcr };
    VkPipelineLayout layout;
    CHECK(vkCreatePipelineLayout(device, &plci, NULL, &layout));
    VkShaderModuleCreateInfo smci = { .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, .codeSize = (size_t)codeSize, .pCode = code };
    VkShaderModule module;
    CHECK(vkCreateShaderModule(device, &smci, NULL, &module));
    VkComputePipelineCreateInfo cpci = { .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO, .layout = layout,
        .stage = { .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, .stage = VK_SHADER_STAGE_COMPUTE_BIT, .module = module, .pName = "main" } };
    VkPipeline pipeline;
    CHECK(vkCreateComputePipelines(device, VK_NULL_HANDLE, 1, &cpci, NULL, &pipeline));

    VkDescriptorPoolSize ps = { .type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = 2 };
    VkDescriptorPoolCreateInfo dpci = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, .maxSets = 1, .poolSizeCount = 1, .pPoolSizes = &ps };
    VkDescriptorPool pool;
    CHECK(vkCreateDescriptorPool(device, &dpci, NULL, &pool));
    VkDescriptorSetAllocateInfo dsai = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO, .descriptorPool = pool, .descriptorSetCount = 1, .pSetLayouts = &dsl };
    VkDescriptorSet set;
    CHECK(vkAllocateDescriptorSets(device, &dsai, &set));
    VkDescriptorBufferInfo infos[2] = { { buffers[0], 0, VK_WHOLE_SIZE }, { buffers[1], 0, VK_WHOLE_SIZE } };
    VkWriteDescriptorSet writes[2];
    for (int b = 0; b < 2; b++)
        writes[b] = (VkWriteDescriptorSet){ .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, .dstSet = set, .dstBinding = (uint32_t)b, .descriptorCount = 1,
            .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .pBufferInfo = &infos[b],
            /* ignored for buffer descriptors (noautovalidity): left as garbage on purpose */ .pImageInfo = (const VkDescriptorImageInfo *)(uintptr_t)0x20 };
    /* --template: the same update through a descriptor update template (Vulkan 1.1), pData laid out as a struct. */
    int use_template = 0;
    for (int i = 3; i < argc; i++) if (strcmp(argv[i], "--template") == 0) use_template = 1;
    VkDescriptorUpdateTemplate tmpl = VK_NULL_HANDLE;
    if (use_template) {
        struct { uint32_t pad; VkDescriptorBufferInfo infos[2]; } blob = { 0xFFFFFFFF, { infos[0], infos[1] } };
        VkDescriptorUpdateTemplateEntry entry = { .dstBinding = 0, .dstArrayElement = 0, .descriptorCount = 1,
            .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .offset = offsetof(__typeof__(blob), infos), .stride = sizeof(VkDescriptorBufferInfo) };
        VkDescriptorUpdateTemplateEntry entries[2] = { entry, entry };
        entries[1].dstBinding = 1;
        entries[1].offset += sizeof(VkDescriptorBufferInfo);
        VkDescriptorUpdateTemplateCreateInfo tci = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_UPDATE_TEMPLATE_CREATE_INFO, .descriptorUpdateEntryCount = 2,
            .pDescriptorUpdateEntries = entries, .templateType = VK_DESCRIPTOR_UPDATE_TEMPLATE_TYPE_DESCRIPTOR_SET, .descriptorSetLayout = dsl };
        CHECK(vkCreateDescriptorUpdateTemplate(device, &tci, NULL, &tmpl));
        vkUpdateDescriptorSetWithTemplate(device, set, tmpl, &blob);
        printf("descriptors written through a template\n");
    } else {
        vkUpdateDescriptorSets(device, 2, writes, 0, NULL);
    }

    VkCommandPoolCreateInfo cpoolci = { .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT, .queueFamilyIndex = family };
    VkCommandPool cpool;
    CHECK(vkCreateCommandPool(device, &cpoolci, NULL, &cpool));
    VkCommandBufferAllocateInfo cbai = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, .commandPool = cpool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = 1 };
    VkCommandBuffer cmd;
    CHECK(vkAllocateCommandBuffers(device, &cbai, &cmd));
    /* --provoke-validation: one deliberate misuse (an undefined flag bit the driver ignores), so a test can
     * prove the validation layer is really watching when it reports nothing for the run without it. */
    int provoke = argc > 3 && strcmp(argv[3], "--provoke-validation") == 0;
    VkFenceCreateInfo fci = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO, .flags = provoke ? 0x80 : 0 };
    VkFence fence;
    CHECK(vkCreateFence(device, &fci, NULL, &fence));

    for (uint32_t round = 0; round < 2; round++) {
        uint32_t params[2] = { round == 0 ? 5u : 11u, count };
        VkCommandBufferBeginInfo bi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT };
        CHECK(vkBeginCommandBuffer(cmd, &bi));
        vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline);
        vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, layout, 0, 1, &set, 0, NULL);
        vkCmdPushConstants(cmd, layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof params, params);
        vkCmdDispatch(cmd, (count + 63) / 64, 1, 1);
        VkBufferMemoryBarrier barrier = { .sType = VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER, .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT,
            .dstAccessMask = VK_ACCESS_HOST_READ_BIT, .srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED, .dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED,
            .buffer = buffers[1], .offset = 0, .size = VK_WHOLE_SIZE };
        vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 0, NULL, 1, &barrier, 0, NULL);
        CHECK(vkEndCommandBuffer(cmd));
        VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &cmd };
        CHECK(vkQueueSubmit(queue, 1, &si, fence));
        CHECK(vkWaitForFences(device, 1, &fence, VK_TRUE, 10ull * 1000 * 1000 * 1000));
        CHECK(vkGetFenceStatus(device, fence));
        CHECK(vkResetFences(device, 1, &fence));
        uint32_t bad = 0;
        for (uint32_t i = 0; i < count; i++) {
            uint32_t want = (i * 7u + 3u) * params[0] + i;
            if (mapped[1][i] != want) { if (bad++ < 5) printf("element %u: got %u, want %u\n", i, mapped[1][i], want); }
        }
        if (bad) { printf("round %u: %u of %u elements wrong\n", round, bad, count); return 1; }
        printf("round %u: verified %u elements\n", round, count);
    }

    if (tmpl) vkDestroyDescriptorUpdateTemplate(device, tmpl, NULL);
    vkDestroyFence(device, fence, NULL);
    vkFreeCommandBuffers(device, cpool, 1, &cmd);
    vkDestroyCommandPool(device, cpool, NULL);
    vkDestroyDescriptorPool(device, pool, NULL);
    vkDestroyPipeline(device, pipeline, NULL);
    vkDestroyShaderModule(device, module, NULL);
    vkDestroyPipelineLayout(device, layout, NULL);
    vkDestroyDescriptorSetLayout(device, dsl, NULL);
    for (int b = 0; b < 2; b++) { vkUnmapMemory(device, memories[b]); vkDestroyBuffer(device, buffers[b], NULL); vkFreeMemory(device, memories[b], NULL); }
    vkDestroyDevice(device, NULL);
    vkDestroyInstance(instance, NULL);
    free(code);
    printf("done\n");
    return 0;
}
