/* Waits that the host cannot answer soon. Every mode first submits work that waits on a timeline semaphore
 * value nobody signals (with a fence), so the queue is blocked and the fence pending: waits on it really
 * reach the host, which the ICD cannot answer locally.
 *
 *   wait MODE
 *     fence | semaphore | queue-idle | device-idle | query
 *         prints "waiting", then waits forever (UINT64_MAX, an idle wait, or query results with
 *         VK_QUERY_RESULT_WAIT_BIT for a query nobody writes); the test kills it there.
 *     timeout MS
 *         waits MS ms on the fence, then on the semaphore, and prints each result with its duration.
 *     stopped MS
 *         prints "ready", reads a line (the test stops the host meanwhile), waits MS ms on the fence and
 *         on the semaphore, prints both, reads a line (the host runs again), then signals the semaphore
 *         from the host and checks that the fence, the semaphore and an idle wait now complete.
 *     steady MS
 *         rounds of submit + fence wait + queue idle for MS ms, all of which must succeed (the guest
 *         next to a bad one). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vulkan/vulkan.h>

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static VkDevice device;
static VkQueue queue;
static VkFence fence;
static VkSemaphore timeline;

static int setup(void)
{
    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .apiVersion = VK_API_VERSION_1_3 };
    VkInstanceCreateInfo ici = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app };
    VkInstance instance;
    if (vkCreateInstance(&ici, NULL, &instance) != VK_SUCCESS) return 2;
    uint32_t n = 1;
    VkPhysicalDevice pd;
    if (vkEnumeratePhysicalDevices(instance, &n, &pd) < 0 || n == 0) return 3;
    VkPhysicalDeviceVulkan12Features f12 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES, .timelineSemaphore = VK_TRUE, .hostQueryReset = VK_TRUE };
    float prio = 1.0f;
    VkDeviceQueueCreateInfo q = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueCount = 1, .pQueuePriorities = &prio };
    VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .pNext = &f12, .queueCreateInfoCount = 1, .pQueueCreateInfos = &q };
    if (vkCreateDevice(pd, &dci, NULL, &device) != VK_SUCCESS) return 4;
    vkGetDeviceQueue(device, 0, 0, &queue);
    VkFenceCreateInfo fci = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
    if (vkCreateFence(device, &fci, NULL, &fence) != VK_SUCCESS) return 5;
    VkSemaphoreTypeCreateInfo sti = { .sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO, .semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE };
    VkSemaphoreCreateInfo sci = { .sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO, .pNext = &sti };
    if (vkCreateSemaphore(device, &sci, NULL, &timeline) != VK_SUCCESS) return 6;
    return 0;
}

/* Work that waits for timeline value 1 and then signals value 2, with the fence. */
static VkResult submit_blocked(void)
{
    uint64_t waitValue = 1, signalValue = 2;
    VkPipelineStageFlags stage = VK_PIPELINE_STAGE_ALL_COMMANDS_BIT;
    VkTimelineSemaphoreSubmitInfo tssi = { .sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO,
        .waitSemaphoreValueCount = 1, .pWaitSemaphoreValues = &waitValue, .signalSemaphoreValueCount = 1, .pSignalSemaphoreValues = &signalValue };
    VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .pNext = &tssi, .waitSemaphoreCount = 1, .pWaitSemaphores = &timeline,
        .pWaitDstStageMask = &stage, .signalSemaphoreCount = 1, .pSignalSemaphores = &timeline };
    return vkQueueSubmit(queue, 1, &si, fence);
}

static VkResult wait_semaphore(uint64_t value, uint64_t timeout)
{
    VkSemaphoreWaitInfo swi = { .sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO, .semaphoreCount = 1, .pSemaphores = &timeline, .pValues = &value };
    return vkWaitSemaphores(device, &swi, timeout);
}

static void timed_waits(uint64_t ms)
{
    double t0 = now_ms();
    VkResult r = vkWaitForFences(device, 1, &fence, VK_TRUE, ms * 1000000ull);
    printf("fence wait %llu ms = %d in %.1f ms\n", (unsigned long long)ms, r, now_ms() - t0);
    t0 = now_ms();
    r = wait_semaphore(2, ms * 1000000ull);
    printf("semaphore wait %llu ms = %d in %.1f ms\n", (unsigned long long)ms, r, now_ms() - t0);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc < 2) return 1;
    const char *mode = argv[1];
    int r = setup();
    if (r != 0) { printf("setup failed: %d\n", r); return r; }

    if (strcmp(mode, "steady") == 0)
    {
        double until = now_ms() + (argc > 2 ? atof(argv[2]) : 1000);
        VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO };
        int i = 0;
        for (; now_ms() < until; i++)
        {
            if (vkQueueSubmit(queue, 1, &si, fence) != VK_SUCCESS) { printf("round %d: submit failed\n", i); return 10; }
            VkResult w = vkWaitForFences(device, 1, &fence, VK_TRUE, 5000000000ull);
            if (w != VK_SUCCESS) { printf("round %d: wait = %d\n", i, w); return 11; }
            if (vkResetFences(device, 1, &fence) != VK_SUCCESS || vkQueueWaitIdle(queue) != VK_SUCCESS) { printf("round %d: reset/idle failed\n", i); return 12; }
        }
        printf("steady %d rounds ok\n", i);
        return 0;
    }

    /* Reset before any work is in flight: a host-side reset of a pool the device may be using waits for the
     * device first (the gate), and the wait under test is the query wait itself. */
    VkQueryPool pool = VK_NULL_HANDLE;
    if (strcmp(mode, "query") == 0)
    {
        VkQueryPoolCreateInfo qpci = { .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO, .queryType = VK_QUERY_TYPE_TIMESTAMP, .queryCount = 1 };
        if (vkCreateQueryPool(device, &qpci, NULL, &pool) != VK_SUCCESS) return 12;
        vkResetQueryPool(device, pool, 0, 1);
    }

    VkResult s = submit_blocked();
    printf("blocked submit = %d\n", s);
    if (s != VK_SUCCESS) return 7;

    if (strcmp(mode, "timeout") == 0)
    {
        timed_waits(argc > 2 ? strtoull(argv[2], NULL, 10) : 200);
        return 0;
    }
    if (strcmp(mode, "stopped") == 0)
    {
        char line[16];
        printf("ready\n");
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin)) return 8;
        timed_waits(argc > 2 ? strtoull(argv[2], NULL, 10) : 1000);
        printf("waited\n");
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin)) return 9;
        uint64_t value = 0;
        printf("counter = %d value %llu\n", vkGetSemaphoreCounterValue(device, timeline, &value), (unsigned long long)value);
        VkSemaphoreSignalInfo ssi = { .sType = VK_STRUCTURE_TYPE_SEMAPHORE_SIGNAL_INFO, .semaphore = timeline, .value = 1 };
        printf("signal 1 = %d\n", vkSignalSemaphore(device, &ssi));
        printf("fence wait after signal = %d\n", vkWaitForFences(device, 1, &fence, VK_TRUE, 5000000000ull));
        printf("semaphore wait after signal = %d\n", wait_semaphore(2, 5000000000ull));
        printf("device wait idle = %d\n", vkDeviceWaitIdle(device));
        vkGetSemaphoreCounterValue(device, timeline, &value);
        printf("final value %llu\n", (unsigned long long)value);
        return 0;
    }

    printf("waiting\n");
    fflush(stdout);
    VkResult w;
    if (strcmp(mode, "fence") == 0) w = vkWaitForFences(device, 1, &fence, VK_TRUE, UINT64_MAX);
    else if (strcmp(mode, "semaphore") == 0) w = wait_semaphore(2, UINT64_MAX);
    else if (strcmp(mode, "queue-idle") == 0) w = vkQueueWaitIdle(queue);
    else if (strcmp(mode, "device-idle") == 0) w = vkDeviceWaitIdle(device);
    else if (strcmp(mode, "query") == 0)
    {
        uint64_t result = 0;
        w = vkGetQueryPoolResults(device, pool, 0, 1, sizeof result, &result, sizeof result, VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
    }
    else return 1;
    printf("wait returned %d (it should have waited forever)\n", w);
    return 13;
}
