/* Checked compute work in a loop, for tests where a guest must keep working while something happens to
 * another guest (or to its own host worker): each round dispatches multiply.comp with a new multiplier and
 * checks every element through the mapping. Runs for SECONDS (or until a call fails), printing one line a
 * round; a failing call prints "FAILED <call> = <VkResult>" and exits 3. SIGTERM ends the loop after the
 * round in flight, with the normal teardown and exit 0, for tests that must look at a live session first.
 * Usage: compute_loop SHADER.spv SECONDS [ELEMENTS] */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include "compute_kit.h"

/* A call that fails inside the loop is what the tests look for: on stdout, exit 3. */
#define CHECK(call) do { VkResult r_ = (call); if (r_ != VK_SUCCESS) { printf("FAILED %s = %d\n", #call, r_); fflush(stdout); return 3; } } while (0)

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 3) { fprintf(stderr, "usage: compute_loop SHADER.spv SECONDS [ELEMENTS]\n"); return 2; }
    double seconds = atof(argv[2]);
    uint32_t count = argc > 3 ? (uint32_t)atoi(argv[3]) : 65536;
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa = { .sa_handler = on_term };
    sigaction(SIGTERM, &sa, NULL);
    spirv spv;
    if (load_spirv(argv[1], &spv)) return 2;

    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .pApplicationName = "guesticd compute_loop", .apiVersion = VK_API_VERSION_1_1 };
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

    kit_pipeline pipe;
    kit_job job;
    if (kit_pipeline_create(device, &spv, &pipe) || kit_job_create(pd, device, &pipe, count, &job)) return 1;
    kit_job_write(device, &job);
    VkCommandPoolCreateInfo cpoolci = { .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT, .queueFamilyIndex = family };
    VkCommandPool cpool;
    CHECK(vkCreateCommandPool(device, &cpoolci, NULL, &cpool));
    VkCommandBufferAllocateInfo cbai = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, .commandPool = cpool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = 1 };
    VkCommandBuffer cmd;
    CHECK(vkAllocateCommandBuffers(device, &cbai, &cmd));
    VkFenceCreateInfo fci = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
    VkFence fence;
    CHECK(vkCreateFence(device, &fci, NULL, &fence));

    printf("pid %d ready\n", (int)getpid());
    double start = now();
    uint32_t round = 0;
    for (; !stop && now() - start < seconds; round++) {
        uint32_t mul = round % 1000 + 2u;
        kit_fill(&job, round);
        VkCommandBufferBeginInfo bi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT };
        CHECK(vkBeginCommandBuffer(cmd, &bi));
        kit_record(cmd, &pipe, &job, mul);
        CHECK(vkEndCommandBuffer(cmd));
        VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &cmd };
        CHECK(vkQueueSubmit(queue, 1, &si, fence));
        CHECK(vkWaitForFences(device, 1, &fence, VK_TRUE, 10ull * 1000 * 1000 * 1000));
        CHECK(vkResetFences(device, 1, &fence));
        char label[32];
        snprintf(label, sizeof label, "round %u", round);
        uint32_t bad = kit_check(&job, round, mul, label);
        if (bad) { printf("round %u: %u of %u elements wrong\n", round, bad, count); return 1; }
        printf("round %u: verified %u elements at %.3f s\n", round, count, now() - start);
    }
    printf("done: %u rounds verified\n", round);
    /* The application's own teardown, in order; the host cleans up what a killed guest leaves. */
    vkDestroyFence(device, fence, NULL);
    vkDestroyCommandPool(device, cpool, NULL);
    kit_job_destroy(device, &job);
    kit_pipeline_destroy(device, &pipe);
    vkDestroyDevice(device, NULL);
    vkDestroyInstance(instance, NULL);
    free(spv.code);
    return 0;
}
