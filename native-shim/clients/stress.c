/* Many threads on one device, as engines use it: four workers, each with its own command pool, descriptor
 * set, buffers and fence, run bounded cycles of record / submit / wait / check; each has its own queue when
 * the device has enough, otherwise they share queues and serialise vkQueueSubmit on a shared queue with a
 * mutex (queues are externally synchronised, Vulkan spec "Threading Behavior"). A fifth thread creates and
 * destroys buffers and images (with their memory) meanwhile. Every few cycles a worker frees its command
 * buffer and allocates a new one.
 *
 * With the validation layer enabled (VK_INSTANCE_LAYERS=VK_LAYER_KHRONOS_validation) a debug messenger counts
 * what the layer reports as errors, and any error fails the run.
 *
 * Usage: stress SHADER.spv [CYCLES] [ELEMENTS] [--provoke-validation]; stdout is the same on any correct
 * driver. --provoke-validation makes one deliberate misuse (a fence flag bit that does not exist), so a
 * test can prove the messenger is really listening. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include "compute_kit.h"

enum { WORKERS = 4, MAX_QUEUES = 4 };

static spirv g_spv;
static uint32_t g_cycles = 50, g_count = 4096;
static VkPhysicalDevice g_pd;
static VkDevice g_device;
static uint32_t g_family, g_queues;
static VkQueue g_queue[MAX_QUEUES];
static pthread_mutex_t g_queue_lock[MAX_QUEUES];
static kit_pipeline g_pipe;
static pthread_barrier_t g_start;
static atomic_uint g_validation_errors;

typedef struct { int index; uint32_t verified; int failed; } worker_ctx;

static VKAPI_ATTR VkBool32 VKAPI_CALL on_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity, VkDebugUtilsMessageTypeFlagsEXT types,
    const VkDebugUtilsMessengerCallbackDataEXT *data, void *user)
{
    (void)types; (void)user;
    if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) {
        if (atomic_fetch_add(&g_validation_errors, 1) < 10) fprintf(stderr, "validation error: %s\n", data->pMessage);
    }
    return VK_FALSE;
}

static int work(worker_ctx *w)
{
    char label[32];
    snprintf(label, sizeof label, "thread %d", w->index);
    uint32_t q = (uint32_t)w->index % g_queues;
    kit_job job;
    if (kit_job_create(g_pd, g_device, &g_pipe, g_count, &job)) return 1;
    kit_job_write(g_device, &job);
    VkCommandPoolCreateInfo cpci = { .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT, .queueFamilyIndex = g_family };
    VkCommandPool pool;
    KCHECK(vkCreateCommandPool(g_device, &cpci, NULL, &pool));
    VkCommandBufferAllocateInfo cbai = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, .commandPool = pool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = 1 };
    VkCommandBuffer cmd;
    KCHECK(vkAllocateCommandBuffers(g_device, &cbai, &cmd));
    VkFenceCreateInfo fci = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
    VkFence fence;
    KCHECK(vkCreateFence(g_device, &fci, NULL, &fence));
    pthread_barrier_wait(&g_start);

    for (uint32_t c = 0; c < g_cycles; c++) {
        uint32_t seed = (uint32_t)w->index * 7919u + c, mul = 2u + (uint32_t)w->index + c % 5u;
        if (c > 0 && c % 8 == 0) {
            /* Command buffers come and go, as with per-frame allocation. */
            vkFreeCommandBuffers(g_device, pool, 1, &cmd);
            KCHECK(vkAllocateCommandBuffers(g_device, &cbai, &cmd));
        }
        kit_fill(&job, seed);
        VkCommandBufferBeginInfo bi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT };
        KCHECK(vkBeginCommandBuffer(cmd, &bi));
        kit_record(cmd, &g_pipe, &job, mul);
        KCHECK(vkEndCommandBuffer(cmd));
        VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &cmd };
        pthread_mutex_lock(&g_queue_lock[q]);
        VkResult r = vkQueueSubmit(g_queue[q], 1, &si, fence);
        pthread_mutex_unlock(&g_queue_lock[q]);
        KCHECK(r);
        KCHECK(vkWaitForFences(g_device, 1, &fence, VK_TRUE, 60ull * 1000 * 1000 * 1000));
        KCHECK(vkResetFences(g_device, 1, &fence));
        uint32_t bad = kit_check(&job, seed, mul, label);
        if (bad) { fprintf(stderr, "%s cycle %u: %u of %u elements wrong\n", label, c, bad, g_count); return 1; }
        w->verified++;
    }
    vkDestroyFence(g_device, fence, NULL);
    vkFreeCommandBuffers(g_device, pool, 1, &cmd);
    vkDestroyCommandPool(g_device, pool, NULL);
    kit_job_destroy(g_device, &job);
    return 0;
}

static void *worker(void *arg)
{
    worker_ctx *w = arg;
    w->failed = work(w);
    if (w->failed) { fprintf(stderr, "thread %d failed\n", w->index); fflush(NULL); _Exit(1); }
    return NULL;
}

static int bind_new_memory(VkMemoryRequirements req, VkDeviceMemory *mem)
{
    uint32_t type = kit_memory_type(g_pd, req.memoryTypeBits, 0);
    if (type == UINT32_MAX) { fprintf(stderr, "no memory type\n"); return 1; }
    VkMemoryAllocateInfo mai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = req.size, .memoryTypeIndex = type };
    KCHECK(vkAllocateMemory(g_device, &mai, NULL, mem));
    return 0;
}

static uint32_t g_churned;

static int churn(void)
{
    pthread_barrier_wait(&g_start);
    for (uint32_t i = 0; i < g_cycles * 2; i++) {
        VkBufferCreateInfo bci = { .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = 4096u * (1u + i % 7u),
            .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT };
        VkBuffer buffer;
        KCHECK(vkCreateBuffer(g_device, &bci, NULL, &buffer));
        VkMemoryRequirements req;
        vkGetBufferMemoryRequirements(g_device, buffer, &req);
        VkDeviceMemory bmem;
        if (bind_new_memory(req, &bmem)) return 1;
        KCHECK(vkBindBufferMemory(g_device, buffer, bmem, 0));

        VkImageCreateInfo ici = { .sType = VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO, .imageType = VK_IMAGE_TYPE_2D, .format = VK_FORMAT_R8G8B8A8_UNORM,
            .extent = { 16u + 16u * (i % 5u), 16u, 1 }, .mipLevels = 1, .arrayLayers = 1, .samples = VK_SAMPLE_COUNT_1_BIT,
            .tiling = VK_IMAGE_TILING_OPTIMAL, .usage = VK_IMAGE_USAGE_SAMPLED_BIT | VK_IMAGE_USAGE_TRANSFER_DST_BIT,
            .sharingMode = VK_SHARING_MODE_EXCLUSIVE, .initialLayout = VK_IMAGE_LAYOUT_UNDEFINED };
        VkImage image;
        KCHECK(vkCreateImage(g_device, &ici, NULL, &image));
        vkGetImageMemoryRequirements(g_device, image, &req);
        VkDeviceMemory imem;
        if (bind_new_memory(req, &imem)) return 1;
        KCHECK(vkBindImageMemory(g_device, image, imem, 0));
        VkImageViewCreateInfo vci = { .sType = VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO, .image = image, .viewType = VK_IMAGE_VIEW_TYPE_2D,
            .format = ici.format, .subresourceRange = { VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1 } };
        VkImageView view;
        KCHECK(vkCreateImageView(g_device, &vci, NULL, &view));

        vkDestroyImageView(g_device, view, NULL);
        vkDestroyImage(g_device, image, NULL);
        vkFreeMemory(g_device, imem, NULL);
        vkDestroyBuffer(g_device, buffer, NULL);
        vkFreeMemory(g_device, bmem, NULL);
        g_churned++;
    }
    return 0;
}

static void *churn_thread(void *arg)
{
    (void)arg;
    if (churn()) { fprintf(stderr, "churn failed\n"); fflush(NULL); _Exit(1); }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: stress SHADER.spv [CYCLES] [ELEMENTS]\n"); return 2; }
    if (argc > 2) g_cycles = (uint32_t)atoi(argv[2]);
    if (argc > 3) g_count = (uint32_t)atoi(argv[3]);
    if (load_spirv(argv[1], &g_spv)) return 2;

    const char *layers = getenv("VK_INSTANCE_LAYERS");
    int validating = layers && strstr(layers, "VK_LAYER_KHRONOS_validation");
    VkDebugUtilsMessengerCreateInfoEXT mci = { .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT, .pfnUserCallback = on_message };
    const char *ext = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .pApplicationName = "guesticd stress", .apiVersion = VK_API_VERSION_1_3 };
    VkInstanceCreateInfo ici = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app,
        .pNext = validating ? &mci : NULL, .enabledExtensionCount = validating ? 1 : 0, .ppEnabledExtensionNames = &ext };
    VkInstance instance;
    KCHECK(vkCreateInstance(&ici, NULL, &instance));
    VkDebugUtilsMessengerEXT messenger = VK_NULL_HANDLE;
    PFN_vkDestroyDebugUtilsMessengerEXT destroy_messenger = NULL;
    if (validating) {
        PFN_vkCreateDebugUtilsMessengerEXT create = (PFN_vkCreateDebugUtilsMessengerEXT)vkGetInstanceProcAddr(instance, "vkCreateDebugUtilsMessengerEXT");
        destroy_messenger = (PFN_vkDestroyDebugUtilsMessengerEXT)vkGetInstanceProcAddr(instance, "vkDestroyDebugUtilsMessengerEXT");
        if (!create || !destroy_messenger) { fprintf(stderr, "no debug messenger\n"); return 1; }
        KCHECK(create(instance, &mci, NULL, &messenger));
    }
    uint32_t n = 1;
    VkResult er = vkEnumeratePhysicalDevices(instance, &n, &g_pd);
    if ((er != VK_SUCCESS && er != VK_INCOMPLETE) || n == 0) { fprintf(stderr, "no physical device\n"); return 1; }
    uint32_t available = 0;
    g_family = kit_compute_family(g_pd, &available);
    if (g_family == UINT32_MAX) { fprintf(stderr, "no compute queue\n"); return 1; }
    g_queues = available < MAX_QUEUES ? available : MAX_QUEUES;
    float prio[MAX_QUEUES] = { 1, 1, 1, 1 };
    VkDeviceQueueCreateInfo qci = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = g_family, .queueCount = g_queues, .pQueuePriorities = prio };
    VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1, .pQueueCreateInfos = &qci };
    KCHECK(vkCreateDevice(g_pd, &dci, NULL, &g_device));
    for (uint32_t q = 0; q < g_queues; q++) { vkGetDeviceQueue(g_device, g_family, q, &g_queue[q]); pthread_mutex_init(&g_queue_lock[q], NULL); }
    fprintf(stderr, "%u queue(s) for %d workers\n", g_queues, WORKERS);
    if (kit_pipeline_create(g_device, &g_spv, &g_pipe)) return 1;
    if (argc > 4 && strcmp(argv[4], "--provoke-validation") == 0) {
        VkFenceCreateInfo bad = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO, .flags = 0x80 };
        VkFence f;
        KCHECK(vkCreateFence(g_device, &bad, NULL, &f));
        vkDestroyFence(g_device, f, NULL);
    }

    pthread_barrier_init(&g_start, NULL, WORKERS + 1);
    pthread_t t[WORKERS + 1];
    worker_ctx w[WORKERS];
    for (int i = 0; i < WORKERS; i++) { w[i] = (worker_ctx){ .index = i }; pthread_create(&t[i], NULL, worker, &w[i]); }
    pthread_create(&t[WORKERS], NULL, churn_thread, NULL);
    for (int i = 0; i <= WORKERS; i++) pthread_join(t[i], NULL);
    KCHECK(vkDeviceWaitIdle(g_device));

    kit_pipeline_destroy(g_device, &g_pipe);
    vkDestroyDevice(g_device, NULL);
    if (messenger) destroy_messenger(instance, messenger, NULL);
    vkDestroyInstance(instance, NULL);
    for (int i = 0; i < WORKERS; i++) printf("thread %d: %u cycles of %u elements verified\n", i, w[i].verified, g_count);
    printf("churn: %u buffers and images created, bound and destroyed\n", g_churned);
    free(g_spv.code);
    unsigned errors = atomic_load(&g_validation_errors);
    if (validating) fprintf(stderr, "validation errors: %u\n", errors);
    if (errors) { printf("FAILED: %u validation errors\n", errors); return 1; }
    printf("done\n");
    return 0;
}
