/* Waits on one thread that must not stop the others (issue 8 point 3). Through the ICD every thread of a
 * VkInstance shares one connection to the host, so this is what a wait that holds the connection breaks.
 *
 *   threads_wait signal
 *       thread A waits (vkWaitSemaphores, 10 s timeout) for timeline value 5; the main thread checks it is
 *       still waiting after 200 ms, reads the counter, then signals 5 from the host (vkSignalSemaphore).
 *       A must return VK_SUCCESS soon after the signal.
 *   threads_wait busy
 *       device 1 gets a long GPU job: a submit that waits on a timeline value only the main thread signals,
 *       with fence F1; thread A blocks in vkWaitForFences(F1, 10 s). Meanwhile, on device 2 of the same
 *       instance (its own queue: a job queued behind the long one could not finish first), the main thread
 *       runs 20 short jobs (vkCmdFillBuffer, submit, wait, result checked) and polls one to completion with
 *       vkGetFenceStatus. All of that must finish while A is still waiting; then the main thread signals the
 *       timeline and A's wait succeeds.
 *
 * Lines without "ms" are the same on lavapipe directly and through the ICD (the test compares them). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vulkan/vulkan.h>

#define CHECK(call) do { VkResult r_ = (call); if (r_ != VK_SUCCESS) { printf("FAILED %s = %d (line %d)\n", #call, r_, __LINE__); exit(1); } } while (0)

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
    struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&t, NULL);
}

static VkInstance instance;
static VkPhysicalDevice pd;

struct dev { VkDevice device; VkQueue queue; };

static struct dev make_device(void)
{
    struct dev d;
    VkPhysicalDeviceVulkan12Features f12 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES, .timelineSemaphore = VK_TRUE };
    float prio = 1.0f;
    VkDeviceQueueCreateInfo q = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueCount = 1, .pQueuePriorities = &prio };
    VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .pNext = &f12, .queueCreateInfoCount = 1, .pQueueCreateInfos = &q };
    CHECK(vkCreateDevice(pd, &dci, NULL, &d.device));
    vkGetDeviceQueue(d.device, 0, 0, &d.queue);
    return d;
}

static VkSemaphore make_timeline(VkDevice device)
{
    VkSemaphoreTypeCreateInfo sti = { .sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO, .semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE };
    VkSemaphoreCreateInfo sci = { .sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO, .pNext = &sti };
    VkSemaphore s;
    CHECK(vkCreateSemaphore(device, &sci, NULL, &s));
    return s;
}

static void signal_timeline(VkDevice device, VkSemaphore s, uint64_t value)
{
    VkSemaphoreSignalInfo ssi = { .sType = VK_STRUCTURE_TYPE_SEMAPHORE_SIGNAL_INFO, .semaphore = s, .value = value };
    CHECK(vkSignalSemaphore(device, &ssi));
}

static uint64_t counter(VkDevice device, VkSemaphore s)
{
    uint64_t v = 0;
    CHECK(vkGetSemaphoreCounterValue(device, s, &v));
    return v;
}

/* ---- signal ---- */

static struct dev d1;
static VkSemaphore timeline;
static atomic_int waiterDone;
static VkResult waiterResult;
static double waiterReturnedAt;

static void *wait_semaphore_thread(void *arg)
{
    (void)arg;
    uint64_t value = 5;
    VkSemaphoreWaitInfo swi = { .sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO, .semaphoreCount = 1, .pSemaphores = &timeline, .pValues = &value };
    waiterResult = vkWaitSemaphores(d1.device, &swi, 10000000000ull);
    waiterReturnedAt = now_ms();
    atomic_store(&waiterDone, 1);
    return NULL;
}

static int run_signal(void)
{
    d1 = make_device();
    timeline = make_timeline(d1.device);
    pthread_t a;
    pthread_create(&a, NULL, wait_semaphore_thread, NULL);
    sleep_ms(200);
    printf("waiter still waiting before the signal = %d\n", !atomic_load(&waiterDone));
    printf("counter before = %llu\n", (unsigned long long)counter(d1.device, timeline));
    double signaledAt = now_ms();
    signal_timeline(d1.device, timeline, 5);
    /* The value a successful vkSignalSemaphore set is there at once. */
    printf("counter right after the signal = %llu\n", (unsigned long long)counter(d1.device, timeline));
    pthread_join(a, NULL);
    printf("waiter result = %d\n", waiterResult);
    printf("waiter returned %.1f ms after the signal\n", waiterReturnedAt - signaledAt);
    vkDestroySemaphore(d1.device, timeline, NULL);
    vkDestroyDevice(d1.device, NULL);
    return 0;
}

/* ---- busy ---- */

static VkFence longFence;

static void *wait_fence_thread(void *arg)
{
    (void)arg;
    waiterResult = vkWaitForFences(d1.device, 1, &longFence, VK_TRUE, 10000000000ull);
    waiterReturnedAt = now_ms();
    atomic_store(&waiterDone, 1);
    return NULL;
}

static uint32_t find_memory(uint32_t bits, VkMemoryPropertyFlags want)
{
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(pd, &mp);
    for (uint32_t i = 0; i < mp.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (mp.memoryTypes[i].propertyFlags & want) == want) return i;
    return UINT32_MAX;
}

static int run_busy(void)
{
    d1 = make_device();
    struct dev d2 = make_device();

    /* The long job on device 1: waits for timeline value 1, then signals 2, with the fence. */
    timeline = make_timeline(d1.device);
    VkFenceCreateInfo fci = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
    CHECK(vkCreateFence(d1.device, &fci, NULL, &longFence));
    uint64_t waitValue = 1, signalValue = 2;
    VkPipelineStageFlags stage = VK_PIPELINE_STAGE_ALL_COMMANDS_BIT;
    VkTimelineSemaphoreSubmitInfo tssi = { .sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO,
        .waitSemaphoreValueCount = 1, .pWaitSemaphoreValues = &waitValue, .signalSemaphoreValueCount = 1, .pSignalSemaphoreValues = &signalValue };
    VkSubmitInfo longSubmit = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .pNext = &tssi, .waitSemaphoreCount = 1, .pWaitSemaphores = &timeline,
        .pWaitDstStageMask = &stage, .signalSemaphoreCount = 1, .pSignalSemaphores = &timeline };
    CHECK(vkQueueSubmit(d1.queue, 1, &longSubmit, longFence));

    /* The short jobs on device 2: fill a mapped buffer with the round's number. */
    const VkDeviceSize size = 4096;
    VkBufferCreateInfo bci = { .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = size, .usage = VK_BUFFER_USAGE_TRANSFER_DST_BIT };
    VkBuffer buffer;
    CHECK(vkCreateBuffer(d2.device, &bci, NULL, &buffer));
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(d2.device, buffer, &req);
    VkMemoryAllocateInfo mai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = req.size,
        .memoryTypeIndex = find_memory(req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT) };
    VkDeviceMemory memory;
    CHECK(vkAllocateMemory(d2.device, &mai, NULL, &memory));
    CHECK(vkBindBufferMemory(d2.device, buffer, memory, 0));
    uint32_t *mapped;
    CHECK(vkMapMemory(d2.device, memory, 0, size, 0, (void **)&mapped));
    VkCommandPoolCreateInfo cpci = { .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT };
    VkCommandPool pool;
    CHECK(vkCreateCommandPool(d2.device, &cpci, NULL, &pool));
    VkCommandBufferAllocateInfo cbai = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, .commandPool = pool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = 1 };
    VkCommandBuffer cmd;
    CHECK(vkAllocateCommandBuffers(d2.device, &cbai, &cmd));
    VkFence shortFence;
    CHECK(vkCreateFence(d2.device, &fci, NULL, &shortFence));

    pthread_t a;
    pthread_create(&a, NULL, wait_fence_thread, NULL);
    sleep_ms(200); /* A is inside its wait (on the host, through the ICD) */

    double worst = 0, start = now_ms();
    int ok = 0;
    const int rounds = 20;
    for (int i = 1; i <= rounds; i++)
    {
        double t0 = now_ms();
        VkCommandBufferBeginInfo bi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT };
        CHECK(vkBeginCommandBuffer(cmd, &bi));
        vkCmdFillBuffer(cmd, buffer, 0, size, (uint32_t)i);
        CHECK(vkEndCommandBuffer(cmd));
        VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &cmd };
        CHECK(vkQueueSubmit(d2.queue, 1, &si, shortFence));
        VkResult w;
        if (i == rounds)
        {
            /* The last round polls instead of waiting: the status must turn VK_SUCCESS on its own. */
            while ((w = vkGetFenceStatus(d2.device, shortFence)) == VK_NOT_READY && now_ms() - t0 < 5000) sched_yield();
            printf("polled short fence = %d\n", w);
        }
        else w = vkWaitForFences(d2.device, 1, &shortFence, VK_TRUE, 5000000000ull);
        if (w != VK_SUCCESS) { printf("round %d: wait = %d\n", i, w); return 10; }
        int right = 1;
        for (VkDeviceSize k = 0; k < size / 4; k++) right &= mapped[k] == (uint32_t)i;
        ok += right;
        CHECK(vkResetFences(d2.device, 1, &shortFence));
        double t = now_ms() - t0;
        if (t > worst) worst = t;
    }
    double shortDone = now_ms();
    int stillWaiting = !atomic_load(&waiterDone);
    printf("short jobs right = %d of %d\n", ok, rounds);
    printf("long wait still pending after the short jobs = %d\n", stillWaiting);
    printf("long fence status meanwhile = %d\n", vkGetFenceStatus(d1.device, longFence));
    printf("short jobs took %.1f ms in all, the slowest %.1f ms\n", shortDone - start, worst);

    double signaledAt = now_ms();
    signal_timeline(d1.device, timeline, 1);
    pthread_join(a, NULL);
    printf("long wait result = %d\n", waiterResult);
    printf("long wait returned %.1f ms after the signal\n", waiterReturnedAt - signaledAt);
    /* The job signaled 2 before its fence: a successful fence wait makes that visible. */
    printf("counter after the long job = %llu\n", (unsigned long long)counter(d1.device, timeline));
    printf("long fence status after = %d\n", vkGetFenceStatus(d1.device, longFence));

    vkUnmapMemory(d2.device, memory);
    vkDestroyFence(d2.device, shortFence, NULL);
    vkDestroyCommandPool(d2.device, pool, NULL);
    vkDestroyBuffer(d2.device, buffer, NULL);
    vkFreeMemory(d2.device, memory, NULL);
    vkDestroyFence(d1.device, longFence, NULL);
    vkDestroySemaphore(d1.device, timeline, NULL);
    vkDestroyDevice(d2.device, NULL);
    vkDestroyDevice(d1.device, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: threads_wait signal|busy\n"); return 2; }
    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .apiVersion = VK_API_VERSION_1_3 };
    VkInstanceCreateInfo ici = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app };
    CHECK(vkCreateInstance(&ici, NULL, &instance));
    uint32_t n = 1;
    VkResult er = vkEnumeratePhysicalDevices(instance, &n, &pd);
    if ((er != VK_SUCCESS && er != VK_INCOMPLETE) || n == 0) { printf("no physical device\n"); return 3; }
    int r = strcmp(argv[1], "signal") == 0 ? run_signal() : strcmp(argv[1], "busy") == 0 ? run_busy() : 2;
    vkDestroyInstance(instance, NULL);
    return r;
}
