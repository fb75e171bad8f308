/* A fixed recording loop for `valgrind --tool=callgrind` (tests/bench/callgrind.sh): per command kind, COUNT
 * commands recorded into one command buffer between begin and end, once to warm up and once measured; the
 * measured loop alone is between CALLGRIND_ZERO_STATS and CALLGRIND_DUMP_STATS_AT(kind), so each dump holds the
 * instructions of COUNT calls (the application's loop, the loader's trampoline and the driver). Nothing is submitted.
 *
 *   callgrind_loop [COUNT=10000]
 * Outside valgrind the client requests do nothing and it just records. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <valgrind/callgrind.h>
#include <vulkan/vulkan.h>

#define TRY(x) do { VkResult r_ = (x); if (r_ != VK_SUCCESS) { fprintf(stderr, "%s failed: %d\n", #x, r_); return 1; } } while (0)

enum { DISPATCH, DRAW, BIND_SETS, PUSH_CONSTANTS, BARRIER, KINDS };
static const char *NAMES[KINDS] = { "vkCmdDispatch", "vkCmdDraw", "vkCmdBindDescriptorSets", "vkCmdPushConstants", "vkCmdPipelineBarrier" };

typedef struct {
    VkPipelineLayout layout;
    VkDescriptorSet set;
    VkMemoryBarrier barrier;
    float constants[4];
} Objects;

static void __attribute__((noinline)) record(VkCommandBuffer cb, const Objects *o, int kind, int count)
{
    switch (kind) {
    case DISPATCH: for (int i = 0; i < count; i++) vkCmdDispatch(cb, 1, 1, 1); break;
    case DRAW: for (int i = 0; i < count; i++) vkCmdDraw(cb, 3, 1, 0, 0); break;
    case BIND_SETS:
        for (int i = 0; i < count; i++) vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, o->layout, 0, 1, &o->set, 0, NULL);
        break;
    case PUSH_CONSTANTS:
        for (int i = 0; i < count; i++) vkCmdPushConstants(cb, o->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof o->constants, o->constants);
        break;
    case BARRIER:
        for (int i = 0; i < count; i++)
            vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &o->barrier, 0, NULL, 0, NULL);
        break;
    }
}

int main(int argc, char **argv)
{
    int count = argc > 1 ? atoi(argv[1]) : 10000;
    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .apiVersion = VK_API_VERSION_1_1 };
    VkInstanceCreateInfo ici = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app };
    VkInstance instance;
    TRY(vkCreateInstance(&ici, NULL, &instance));
    uint32_t n = 1;
    VkPhysicalDevice pd;
    VkResult er = vkEnumeratePhysicalDevices(instance, &n, &pd);
    if ((er != VK_SUCCESS && er != VK_INCOMPLETE) || n == 0) { fprintf(stderr, "no physical device\n"); return 1; }
    float prio = 1;
    VkDeviceQueueCreateInfo qci = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = 0, .queueCount = 1, .pQueuePriorities = &prio };
    VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1, .pQueueCreateInfos = &qci };
    VkDevice device;
    TRY(vkCreateDevice(pd, &dci, NULL, &device));

    Objects o;
    memset(&o, 0, sizeof o);
    VkDescriptorSetLayoutBinding b = { .binding = 0, .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = 1, .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT };
    VkDescriptorSetLayoutCreateInfo dslci = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO, .bindingCount = 1, .pBindings = &b };
    VkDescriptorSetLayout dsl;
    TRY(vkCreateDescriptorSetLayout(device, &dslci, NULL, &dsl));
    VkPushConstantRange pcr = { VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof o.constants };
    VkPipelineLayoutCreateInfo plci = { .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, .setLayoutCount = 1, .pSetLayouts = &dsl,
                                        .pushConstantRangeCount = 1, .pPushConstantRanges = &pcr };
    TRY(vkCreatePipelineLayout(device, &plci, NULL, &o.layout));
    VkDescriptorPoolSize ps = { VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1 };
    VkDescriptorPoolCreateInfo dpci = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, .maxSets = 1, .poolSizeCount = 1, .pPoolSizes = &ps };
    VkDescriptorPool dp;
    TRY(vkCreateDescriptorPool(device, &dpci, NULL, &dp));
    VkDescriptorSetAllocateInfo dsai = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO, .descriptorPool = dp, .descriptorSetCount = 1, .pSetLayouts = &dsl };
    TRY(vkAllocateDescriptorSets(device, &dsai, &o.set));
    o.barrier = (VkMemoryBarrier){ .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER, .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT, .dstAccessMask = VK_ACCESS_SHADER_READ_BIT };

    VkCommandPoolCreateInfo cpci = { .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT };
    VkCommandPool pool;
    TRY(vkCreateCommandPool(device, &cpci, NULL, &pool));
    VkCommandBufferAllocateInfo cbai = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, .commandPool = pool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = 1 };
    VkCommandBuffer cb;
    TRY(vkAllocateCommandBuffers(device, &cbai, &cb));
    VkCommandBufferBeginInfo bi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT };

    for (int kind = 0; kind < KINDS; kind++)
        for (int pass = 0; pass < 2; pass++) {
            TRY(vkResetCommandBuffer(cb, 0));
            TRY(vkBeginCommandBuffer(cb, &bi));
            if (pass == 1) CALLGRIND_ZERO_STATS;
            record(cb, &o, kind, count);
            if (pass == 1) CALLGRIND_DUMP_STATS_AT(NAMES[kind]);
            TRY(vkEndCommandBuffer(cb));
        }
    printf("recorded %d commands of each of %d kinds\n", count, KINDS);

    vkDestroyCommandPool(device, pool, NULL);
    vkDestroyDescriptorPool(device, dp, NULL);
    vkDestroyPipelineLayout(device, o.layout, NULL);
    vkDestroyDescriptorSetLayout(device, dsl, NULL);
    vkDestroyDevice(device, NULL);
    vkDestroyInstance(instance, NULL);
    return 0;
}
