/* Guests that hold, leak, misorder and over-ask: what hostsim's teardown, quotas and zeroing must survive.
 * Usage: lifetime MODE [ARG]
 *   hold MB          allocate MB MiB of device memory, fill it on the device, print "ready", wait on stdin
 *   instance-first   leave a device full of objects and destroy the instance before it
 *   device-first     destroy the device before its buffers, images, pools and memory
 *   memory MB        allocate MB MiB at a time until refused; free one; allocate once more
 *   objects          create fences until refused; destroy one; create once more
 *   giant-reply      a vkGetQueryPoolResults whose dataSize claims 240 MB of results
 *   zero KB          allocate, write a pattern, free, allocate again and check for zeros (several times)
 * Every line it prints is a fact the tests check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vulkan/vulkan.h>

#define CHECK(call) do { VkResult r_ = (call); if (r_ != VK_SUCCESS) { printf("FAILED %s = %d (line %d)\n", #call, r_, __LINE__); return 1; } } while (0)

static VkInstance instance;
static VkPhysicalDevice pd;
static VkDevice device;
static VkQueue queue;
static uint32_t family;

static uint32_t find_memory(uint32_t bits, VkMemoryPropertyFlags want)
{
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(pd, &mp);
    for (uint32_t i = 0; i < mp.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (mp.memoryTypes[i].propertyFlags & want) == want) return i;
    return UINT32_MAX;
}

static int setup(void)
{
    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .pApplicationName = "guesticd lifetime", .apiVersion = VK_API_VERSION_1_3 };
    VkInstanceCreateInfo ici = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app };
    CHECK(vkCreateInstance(&ici, NULL, &instance));
    uint32_t n = 1;
    VkResult er = vkEnumeratePhysicalDevices(instance, &n, &pd);
    if ((er != VK_SUCCESS && er != VK_INCOMPLETE) || n == 0) { printf("no physical device\n"); return 1; }
    uint32_t qfCount = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &qfCount, NULL);
    VkQueueFamilyProperties qfs[16];
    if (qfCount > 16) qfCount = 16;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &qfCount, qfs);
    family = UINT32_MAX;
    for (uint32_t i = 0; i < qfCount; i++) if (qfs[i].queueFlags & VK_QUEUE_COMPUTE_BIT) { family = i; break; }
    if (family == UINT32_MAX) { printf("no compute queue\n"); return 1; }
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = family, .queueCount = 1, .pQueuePriorities = &prio };
    VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1, .pQueueCreateInfos = &qci };
    CHECK(vkCreateDevice(pd, &dci, NULL, &device));
    vkGetDeviceQueue(device, family, 0, &queue);
    return 0;
}

/* A buffer of `bytes` in its own HOST_VISIBLE allocation. */
static VkResult buffer_with_memory(VkDeviceSize bytes, VkBuffer *buffer, VkDeviceMemory *memory)
{
    VkBufferCreateInfo bci = { .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = bytes,
                               .usage = VK_BUFFER_USAGE_TRANSFER_DST_BIT | VK_BUFFER_USAGE_STORAGE_BUFFER_BIT };
    VkResult r = vkCreateBuffer(device, &bci, NULL, buffer);
    if (r != VK_SUCCESS) return r;
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(device, *buffer, &req);
    VkMemoryAllocateInfo mai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = req.size,
                                 .memoryTypeIndex = find_memory(req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT) };
    r = vkAllocateMemory(device, &mai, NULL, memory);
    if (r != VK_SUCCESS) return r;
    return vkBindBufferMemory(device, *buffer, *memory, 0);
}

/* Objects of many kinds on the device, some bound to memory, a command buffer recorded. */
static int populate(VkBuffer *buffer, VkImage *image, VkDeviceMemory *memory, VkCommandPool *pool, VkDescriptorPool *dpool)
{
    CHECK(buffer_with_memory(1 << 20, buffer, memory));
    VkImageCreateInfo ii = { .sType = VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO, .imageType = VK_IMAGE_TYPE_2D, .format = VK_FORMAT_R8G8B8A8_UNORM,
                             .extent = { 64, 64, 1 }, .mipLevels = 1, .arrayLayers = 1, .samples = VK_SAMPLE_COUNT_1_BIT,
                             .tiling = VK_IMAGE_TILING_OPTIMAL, .usage = VK_IMAGE_USAGE_SAMPLED_BIT | VK_IMAGE_USAGE_TRANSFER_DST_BIT };
    CHECK(vkCreateImage(device, &ii, NULL, image));
    VkMemoryRequirements req;
    vkGetImageMemoryRequirements(device, *image, &req);
    VkMemoryAllocateInfo mai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = req.size, .memoryTypeIndex = find_memory(req.memoryTypeBits, 0) };
    VkDeviceMemory imageMemory;
    CHECK(vkAllocateMemory(device, &mai, NULL, &imageMemory));
    CHECK(vkBindImageMemory(device, *image, imageMemory, 0));
    VkImageViewCreateInfo vi = { .sType = VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO, .image = *image, .viewType = VK_IMAGE_VIEW_TYPE_2D,
                                 .format = VK_FORMAT_R8G8B8A8_UNORM, .subresourceRange = { VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1 } };
    VkImageView view;
    CHECK(vkCreateImageView(device, &vi, NULL, &view));
    VkSamplerCreateInfo si = { .sType = VK_STRUCTURE_TYPE_SAMPLER_CREATE_INFO };
    VkSampler sampler;
    CHECK(vkCreateSampler(device, &si, NULL, &sampler));
    VkDescriptorSetLayoutBinding b = { 0, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, NULL };
    VkDescriptorSetLayoutCreateInfo dli = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO, .bindingCount = 1, .pBindings = &b };
    VkDescriptorSetLayout dsl;
    CHECK(vkCreateDescriptorSetLayout(device, &dli, NULL, &dsl));
    VkDescriptorPoolSize ps = { VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 4 };
    VkDescriptorPoolCreateInfo dpi = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, .maxSets = 4, .poolSizeCount = 1, .pPoolSizes = &ps };
    CHECK(vkCreateDescriptorPool(device, &dpi, NULL, dpool));
    VkDescriptorSetAllocateInfo dai = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO, .descriptorPool = *dpool, .descriptorSetCount = 1, .pSetLayouts = &dsl };
    VkDescriptorSet set;
    CHECK(vkAllocateDescriptorSets(device, &dai, &set));
    VkDescriptorBufferInfo dbi = { *buffer, 0, VK_WHOLE_SIZE };
    VkWriteDescriptorSet w = { .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, .dstSet = set, .descriptorCount = 1,
                               .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .pBufferInfo = &dbi };
    vkUpdateDescriptorSets(device, 1, &w, 0, NULL);
    VkCommandPoolCreateInfo cpi = { .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, .queueFamilyIndex = family };
    CHECK(vkCreateCommandPool(device, &cpi, NULL, pool));
    VkCommandBufferAllocateInfo cai = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, .commandPool = *pool,
                                        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = 1 };
    VkCommandBuffer cb;
    CHECK(vkAllocateCommandBuffers(device, &cai, &cb));
    VkCommandBufferBeginInfo cbi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO };
    CHECK(vkBeginCommandBuffer(cb, &cbi));
    vkCmdFillBuffer(cb, *buffer, 0, VK_WHOLE_SIZE, 0x11111111u);
    CHECK(vkEndCommandBuffer(cb));
    VkFenceCreateInfo fci = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
    VkFence fence;
    CHECK(vkCreateFence(device, &fci, NULL, &fence));
    VkSubmitInfo sub = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &cb };
    CHECK(vkQueueSubmit(queue, 1, &sub, fence));
    CHECK(vkWaitForFences(device, 1, &fence, VK_TRUE, UINT64_MAX));
    VkSemaphoreCreateInfo smi = { .sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO };
    VkSemaphore sem;
    CHECK(vkCreateSemaphore(device, &smi, NULL, &sem));
    return 0;
}

static int hold(long mb)
{
    VkBuffer buffer;
    VkDeviceMemory memory;
    CHECK(buffer_with_memory((VkDeviceSize)mb << 20, &buffer, &memory));
    VkCommandPoolCreateInfo cpi = { .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, .queueFamilyIndex = family };
    VkCommandPool pool;
    CHECK(vkCreateCommandPool(device, &cpi, NULL, &pool));
    VkCommandBufferAllocateInfo cai = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, .commandPool = pool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = 1 };
    VkCommandBuffer cb;
    CHECK(vkAllocateCommandBuffers(device, &cai, &cb));
    VkCommandBufferBeginInfo cbi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO };
    CHECK(vkBeginCommandBuffer(cb, &cbi));
    VkQueryPoolCreateInfo qpi = { .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO, .queryType = VK_QUERY_TYPE_TIMESTAMP, .queryCount = 1 };
    VkQueryPool qp;
    CHECK(vkCreateQueryPool(device, &qpi, NULL, &qp));
    vkCmdResetQueryPool(cb, qp, 0, 1);
    /* Written by the device, so every page is backed on the host without crossing the transport. */
    vkCmdFillBuffer(cb, buffer, 0, VK_WHOLE_SIZE, 0xA5A5A5A5u);
    vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, qp, 0);
    CHECK(vkEndCommandBuffer(cb));
    VkSubmitInfo sub = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &cb };
    CHECK(vkQueueSubmit(queue, 1, &sub, VK_NULL_HANDLE));
    /* Waiting on the query rather than a fence: a fence wait would also copy the 128 MiB back to a local copy. */
    uint64_t stamp;
    CHECK(vkGetQueryPoolResults(device, qp, 0, 1, sizeof stamp, &stamp, sizeof stamp, VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT));
    printf("ready\n");
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin)) return 0;  /* killed before this, in the tests */
    return 0;
}

static int memory_quota(long mb)
{
    VkMemoryAllocateInfo mai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = (VkDeviceSize)mb << 20,
                                 .memoryTypeIndex = find_memory(~0u, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) };
    VkDeviceMemory held[64];
    int n = 0;
    VkResult r = VK_SUCCESS;
    for (; n < 64; n++) {
        r = vkAllocateMemory(device, &mai, NULL, &held[n]);
        if (r != VK_SUCCESS) break;
    }
    printf("allocated %d x %ld MiB, then %d\n", n, mb, r);
    if (n == 0) return 1;
    vkFreeMemory(device, held[--n], NULL);
    r = vkAllocateMemory(device, &mai, NULL, &held[n]);
    printf("after a free: %d\n", r);
    if (r == VK_SUCCESS) {
        /* The memory is usable: mapped, written and read back. */
        unsigned char *p;
        CHECK(vkMapMemory(device, held[n], 0, VK_WHOLE_SIZE, 0, (void **)&p));
        p[0] = 42;
        printf("mapped and wrote: %d\n", p[0]);
        vkUnmapMemory(device, held[n]);
        n++;
    }
    for (int i = 0; i < n; i++) vkFreeMemory(device, held[i], NULL);
    return 0;
}

static int object_quota(void)
{
    VkFenceCreateInfo fci = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
    static VkFence fences[100000];
    int n = 0;
    VkResult r = VK_SUCCESS;
    for (; n < 100000; n++) {
        r = vkCreateFence(device, &fci, NULL, &fences[n]);
        if (r != VK_SUCCESS) break;
    }
    printf("created %d fences, then %d\n", n, r);
    if (n == 0) return 1;
    vkDestroyFence(device, fences[--n], NULL);
    r = vkCreateFence(device, &fci, NULL, &fences[n]);
    printf("after a destroy: %d\n", r);
    if (r == VK_SUCCESS) n++;
    printf("vkDeviceWaitIdle=%d\n", vkDeviceWaitIdle(device));
    for (int i = 0; i < n; i++) vkDestroyFence(device, fences[i], NULL);
    return 0;
}

static int giant_reply(void)
{
    VkQueryPoolCreateInfo qpi = { .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO, .queryType = VK_QUERY_TYPE_OCCLUSION, .queryCount = 1 };
    VkQueryPool qp;
    CHECK(vkCreateQueryPool(device, &qpi, NULL, &qp));
    size_t claim = 30u * 1000 * 1000 * 8;  /* 30 million 64-bit results for one query */
    void *data = malloc(claim);
    VkResult r = vkGetQueryPoolResults(device, qp, 0, 1, claim, data, 8, VK_QUERY_RESULT_64_BIT);
    printf("vkGetQueryPoolResults(240 MB)=%d\n", r);
    printf("vkDeviceWaitIdle=%d\n", vkDeviceWaitIdle(device));
    free(data);
    return 0;
}

static int zero(long kb)
{
    VkDeviceSize bytes = (VkDeviceSize)kb << 10;
    uint32_t type = find_memory(~0u, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
    VkMemoryAllocateInfo mai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = bytes, .memoryTypeIndex = type };
    int dirty = 0;
    for (int round = 0; round < 4; round++) {
        VkDeviceMemory m;
        unsigned char *p;
        CHECK(vkAllocateMemory(device, &mai, NULL, &m));
        CHECK(vkMapMemory(device, m, 0, VK_WHOLE_SIZE, 0, (void **)&p));
        size_t nonzero = 0;
        for (VkDeviceSize i = 0; i < bytes; i++) nonzero += p[i] != 0;
        if (nonzero) { printf("round %d: %zu of %llu bytes not zero\n", round, nonzero, (unsigned long long)bytes); dirty = 1; }
        memset(p, 0xCD, bytes);
        vkUnmapMemory(device, m);
        /* The pattern reaches the host (a submit pushes a local copy's changes) before the memory is freed. */
        VkSubmitInfo none = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO };
        CHECK(vkQueueSubmit(queue, 1, &none, VK_NULL_HANDLE));
        CHECK(vkQueueWaitIdle(queue));
        vkFreeMemory(device, m, NULL);
    }
    printf(dirty ? "zeroing: FAILED\n" : "zeroing: every allocation read as zeros\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: lifetime MODE [ARG]\n"); return 2; }
    const char *mode = argv[1];
    long arg = argc > 2 ? atol(argv[2]) : 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (setup()) return 1;
    if (!strcmp(mode, "hold")) return hold(arg);
    if (!strcmp(mode, "memory")) return memory_quota(arg);
    if (!strcmp(mode, "objects")) return object_quota();
    if (!strcmp(mode, "giant-reply")) return giant_reply();
    if (!strcmp(mode, "zero")) return zero(arg);
    VkBuffer buffer;
    VkImage image;
    VkDeviceMemory memory;
    VkCommandPool pool;
    VkDescriptorPool dpool;
    if (populate(&buffer, &image, &memory, &pool, &dpool)) return 1;
    if (!strcmp(mode, "instance-first")) {
        vkDestroyInstance(instance, NULL);
        printf("instance destroyed before its device\n");
        return 0;
    }
    if (!strcmp(mode, "device-first")) {
        vkDestroyDevice(device, NULL);
        printf("device destroyed before its children\n");
        vkDestroyInstance(instance, NULL);
        printf("done\n");
        return 0;
    }
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
