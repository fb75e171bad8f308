/* Synchronisation as an application sees it: fences (status, timeouts, reset, created signaled), timeline
 * semaphores (host signal and wait, submit signal, timeouts), events, timestamp queries with
 * vkGetQueryPoolResults flags, and idle waits. Every line it prints must read the same through the ICD as
 * on the driver directly, so the test compares the two outputs. */
#include <stdio.h>
#include <vulkan/vulkan.h>

#define SHOW(what, call) printf("%s = %d\n", what, (int)(call))

int main(void)
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
    VkDevice device;
    if (vkCreateDevice(pd, &dci, NULL, &device) != VK_SUCCESS) return 4;
    VkQueue queue;
    vkGetDeviceQueue(device, 0, 0, &queue);
    VkCommandPoolCreateInfo cpci = { .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT };
    VkCommandPool pool;
    vkCreateCommandPool(device, &cpci, NULL, &pool);
    VkCommandBufferAllocateInfo cbai = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, .commandPool = pool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = 1 };
    VkCommandBuffer cmd;
    vkAllocateCommandBuffers(device, &cbai, &cmd);
    VkCommandBufferBeginInfo bi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO };

    /* Fences */
    VkFenceCreateInfo fci = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
    VkFence fence, signaled;
    vkCreateFence(device, &fci, NULL, &fence);
    fci.flags = VK_FENCE_CREATE_SIGNALED_BIT;
    vkCreateFence(device, &fci, NULL, &signaled);
    SHOW("fence status, new", vkGetFenceStatus(device, fence));
    SHOW("fence status, created signaled", vkGetFenceStatus(device, signaled));
    SHOW("wait new fence, timeout 0", vkWaitForFences(device, 1, &fence, VK_TRUE, 0));
    SHOW("wait new fence, timeout 1 ms", vkWaitForFences(device, 1, &fence, VK_TRUE, 1000000));
    SHOW("wait any of new+signaled", vkWaitForFences(device, 2, (VkFence[]){ fence, signaled }, VK_FALSE, 1000000));
    vkBeginCommandBuffer(cmd, &bi);
    vkEndCommandBuffer(cmd);
    VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &cmd };
    SHOW("submit with fence", vkQueueSubmit(queue, 1, &si, fence));
    SHOW("wait submitted fence", vkWaitForFences(device, 1, &fence, VK_TRUE, 5000000000ull));
    SHOW("fence status, after wait", vkGetFenceStatus(device, fence));
    /* A fence whose status cannot have changed is asked about again and again (a busy-polling application). */
    int agree = 1;
    for (int i = 0; i < 5000; i++) agree &= vkGetFenceStatus(device, fence) == VK_SUCCESS && vkGetFenceStatus(device, signaled) == VK_SUCCESS;
    printf("5000 polls agree = %d\n", agree);
    SHOW("reset", vkResetFences(device, 1, &fence));
    SHOW("fence status, after reset", vkGetFenceStatus(device, fence));
    SHOW("submit again", vkQueueSubmit(queue, 1, &si, fence));
    SHOW("queue wait idle", vkQueueWaitIdle(queue));
    SHOW("fence status, after queue idle", vkGetFenceStatus(device, fence));

    /* Timeline semaphores */
    VkSemaphoreTypeCreateInfo sti = { .sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO, .semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE, .initialValue = 5 };
    VkSemaphoreCreateInfo sci = { .sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO, .pNext = &sti };
    VkSemaphore timeline;
    vkCreateSemaphore(device, &sci, NULL, &timeline);
    uint64_t value = 0;
    vkGetSemaphoreCounterValue(device, timeline, &value);
    printf("timeline initial = %llu\n", (unsigned long long)value);
    VkSemaphoreSignalInfo ssi = { .sType = VK_STRUCTURE_TYPE_SEMAPHORE_SIGNAL_INFO, .semaphore = timeline, .value = 10 };
    SHOW("host signal 10", vkSignalSemaphore(device, &ssi));
    vkGetSemaphoreCounterValue(device, timeline, &value);
    printf("timeline after host signal = %llu\n", (unsigned long long)value);
    uint64_t want = 10;
    VkSemaphoreWaitInfo swi = { .sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO, .semaphoreCount = 1, .pSemaphores = &timeline, .pValues = &want };
    SHOW("wait 10, timeout 0", vkWaitSemaphores(device, &swi, 0));
    want = 11;
    SHOW("wait 11, timeout 1 ms", vkWaitSemaphores(device, &swi, 1000000));
    uint64_t signalValue = 12;
    VkTimelineSemaphoreSubmitInfo tssi = { .sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO, .signalSemaphoreValueCount = 1, .pSignalSemaphoreValues = &signalValue };
    VkSubmitInfo tsi = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .pNext = &tssi, .commandBufferCount = 1, .pCommandBuffers = &cmd, .signalSemaphoreCount = 1, .pSignalSemaphores = &timeline };
    SHOW("submit signalling 12", vkQueueSubmit(queue, 1, &tsi, VK_NULL_HANDLE));
    want = 12;
    SHOW("wait 12", vkWaitSemaphores(device, &swi, 5000000000ull));
    vkGetSemaphoreCounterValue(device, timeline, &value);
    printf("timeline after submit = %llu\n", (unsigned long long)value);

    /* Events */
    VkEventCreateInfo eci = { .sType = VK_STRUCTURE_TYPE_EVENT_CREATE_INFO };
    VkEvent event;
    vkCreateEvent(device, &eci, NULL, &event);
    SHOW("event, new", vkGetEventStatus(device, event));
    SHOW("set", vkSetEvent(device, event));
    SHOW("event, after set", vkGetEventStatus(device, event));
    SHOW("reset", vkResetEvent(device, event));
    SHOW("event, after reset", vkGetEventStatus(device, event));
    vkBeginCommandBuffer(cmd, &bi);
    vkCmdSetEvent(cmd, event, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT);
    vkEndCommandBuffer(cmd);
    SHOW("submit vkCmdSetEvent", vkQueueSubmit(queue, 1, &si, VK_NULL_HANDLE));
    SHOW("device wait idle", vkDeviceWaitIdle(device));
    SHOW("event, after device idle", vkGetEventStatus(device, event));

    /* Timestamp queries */
    VkQueryPoolCreateInfo qpci = { .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO, .queryType = VK_QUERY_TYPE_TIMESTAMP, .queryCount = 2 };
    VkQueryPool qp;
    vkCreateQueryPool(device, &qpci, NULL, &qp);
    vkResetQueryPool(device, qp, 0, 2);
    uint64_t ts[2] = { 0, 0 };
    SHOW("results before any write (no WAIT)", vkGetQueryPoolResults(device, qp, 0, 2, sizeof ts, ts, sizeof ts[0], VK_QUERY_RESULT_64_BIT));
    uint64_t avail[4] = { 0, 0, 0, 0 };
    SHOW("results with availability", vkGetQueryPoolResults(device, qp, 0, 2, sizeof avail, avail, 2 * sizeof avail[0], VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WITH_AVAILABILITY_BIT));
    printf("availability before = %llu %llu\n", (unsigned long long)avail[1], (unsigned long long)avail[3]);
    vkBeginCommandBuffer(cmd, &bi);
    vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, qp, 0);
    vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, qp, 1);
    vkEndCommandBuffer(cmd);
    SHOW("submit timestamps", vkQueueSubmit(queue, 1, &si, VK_NULL_HANDLE));
    SHOW("results with WAIT", vkGetQueryPoolResults(device, qp, 0, 2, sizeof ts, ts, sizeof ts[0], VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT));
    printf("timestamps ordered = %d\n", ts[1] >= ts[0] && ts[0] != 0);

    vkDestroyQueryPool(device, qp, NULL);
    vkDestroyEvent(device, event, NULL);
    vkDestroySemaphore(device, timeline, NULL);
    vkDestroyFence(device, fence, NULL);
    vkDestroyFence(device, signaled, NULL);
    vkDestroyCommandPool(device, pool, NULL);
    vkDestroyDevice(device, NULL);
    vkDestroyInstance(instance, NULL);
    printf("done\n");
    return 0;
}
