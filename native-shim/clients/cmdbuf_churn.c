/* Command-buffer churn: CYCLES rounds of allocate → record → submit → wait → free, through whatever driver the
 * loader picks. Each round fills a HOST_VISIBLE buffer with its round number and the last value is checked; every
 * 1,000th round also leaves two recorded command buffers to vkResetCommandPool and vkDestroyCommandPool and
 * starts a new pool. vkDeviceWaitIdle brackets the loop (hostsim logs its live-object count there at Debug).
 * Usage: cmdbuf_churn CYCLES
 * Prints: "rss-kib warm=W end=E" (this process's private resident memory after the first tenth and at the end) and
 * "churn: CYCLES cycles, last value V" — every line a fact the tests check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vulkan/vulkan.h>
#include "compute_kit.h"

#define CHECK(call) do { VkResult r_ = (call); if (r_ != VK_SUCCESS) { printf("FAILED %s = %d (line %d)\n", #call, r_, __LINE__); return 1; } } while (0)

/* Private resident memory (RssAnon): the shared ring and heap pages the transport maps count in RSS as they are
 * first touched, which says nothing about what the driver keeps. */
static long rss_kib(void)
{
    char line[256];
    long kib = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "RssAnon:", 8) == 0) { kib = atol(line + 8); break; }
    fclose(f);
    return kib;
}

int main(int argc, char **argv)
{
    long cycles = argc > 1 ? atol(argv[1]) : 1000;
    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .pApplicationName = "guesticd cmdbuf churn", .apiVersion = VK_API_VERSION_1_1 };
    VkInstanceCreateInfo ici = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app };
    VkInstance instance;
    CHECK(vkCreateInstance(&ici, NULL, &instance));
    uint32_t n = 1;
    VkPhysicalDevice pd;
    VkResult er = vkEnumeratePhysicalDevices(instance, &n, &pd);
    if ((er != VK_SUCCESS && er != VK_INCOMPLETE) || n == 0) { printf("no physical device\n"); return 1; }
    uint32_t family = kit_compute_family(pd, NULL);
    if (family == UINT32_MAX) { printf("no compute queue\n"); return 1; }
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = family, .queueCount = 1, .pQueuePriorities = &prio };
    VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1, .pQueueCreateInfos = &qci };
    VkDevice device;
    CHECK(vkCreateDevice(pd, &dci, NULL, &device));
    VkQueue queue;
    vkGetDeviceQueue(device, family, 0, &queue);

    VkBufferCreateInfo bci = { .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = 4096, .usage = VK_BUFFER_USAGE_TRANSFER_DST_BIT };
    VkBuffer buffer;
    CHECK(vkCreateBuffer(device, &bci, NULL, &buffer));
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(device, buffer, &req);
    uint32_t type = kit_memory_type(pd, req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
    VkMemoryAllocateInfo mai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = req.size, .memoryTypeIndex = type };
    VkDeviceMemory memory;
    CHECK(vkAllocateMemory(device, &mai, NULL, &memory));
    CHECK(vkBindBufferMemory(device, buffer, memory, 0));
    uint32_t *mapped;
    CHECK(vkMapMemory(device, memory, 0, VK_WHOLE_SIZE, 0, (void **)&mapped));
    VkFenceCreateInfo fci = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
    VkFence fence;
    CHECK(vkCreateFence(device, &fci, NULL, &fence));
    VkCommandPoolCreateInfo pci = { .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, .queueFamilyIndex = family };
    VkCommandPool pool;
    CHECK(vkCreateCommandPool(device, &pci, NULL, &pool));
    CHECK(vkDeviceWaitIdle(device)); /* the starting count */

    long warm = -1;
    VkCommandBufferBeginInfo begin = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT };
    for (long i = 1; i <= cycles; i++) {
        VkCommandBufferAllocateInfo ai = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, .commandPool = pool,
                                           .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = 1 };
        VkCommandBuffer cb;
        CHECK(vkAllocateCommandBuffers(device, &ai, &cb));
        CHECK(vkBeginCommandBuffer(cb, &begin));
        vkCmdFillBuffer(cb, buffer, 0, 4096, (uint32_t)i);
        CHECK(vkEndCommandBuffer(cb));
        VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &cb };
        CHECK(vkQueueSubmit(queue, 1, &si, fence));
        CHECK(vkWaitForFences(device, 1, &fence, VK_TRUE, 60ull * 1000 * 1000 * 1000));
        CHECK(vkResetFences(device, 1, &fence));
        vkFreeCommandBuffers(device, pool, 1, &cb);
        if (mapped[0] != (uint32_t)i || mapped[1023] != (uint32_t)i) { printf("FAILED cycle %ld read %u\n", i, mapped[0]); return 1; }
        if (i % 1000 == 0) {
            /* Leftovers: recorded, never submitted or freed; the pool's reset and destroy take them. */
            VkCommandBuffer left[2];
            ai.commandBufferCount = 2;
            CHECK(vkAllocateCommandBuffers(device, &ai, left));
            for (int k = 0; k < 2; k++) {
                CHECK(vkBeginCommandBuffer(left[k], &begin));
                vkCmdFillBuffer(left[k], buffer, 0, 4096, 0xDEAD);
                CHECK(vkEndCommandBuffer(left[k]));
            }
            CHECK(vkResetCommandPool(device, pool, 0));
            vkDestroyCommandPool(device, pool, NULL);
            CHECK(vkCreateCommandPool(device, &pci, NULL, &pool));
        }
        if (i == cycles / 10) warm = rss_kib();
        if (cycles >= 10 && i % (cycles / 10) == 0) fprintf(stderr, "rss-kib after %ld cycles: %ld\n", i, rss_kib());
    }
    CHECK(vkDeviceWaitIdle(device)); /* the count after: the same objects as at the start */
    printf("rss-kib warm=%ld end=%ld\n", warm, rss_kib());
    printf("churn: %ld cycles, last value %u\n", cycles, mapped[0]);
    vkDestroyCommandPool(device, pool, NULL);
    vkDestroyFence(device, fence, NULL);
    vkUnmapMemory(device, memory);
    vkDestroyBuffer(device, buffer, NULL);
    vkFreeMemory(device, memory, NULL);
    vkDestroyDevice(device, NULL);
    vkDestroyInstance(instance, NULL);
    return 0;
}
