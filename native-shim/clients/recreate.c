/* Creates and destroys instance + device ROUNDS times in one process, each round checking that the new
 * device works (an empty submit with a fence, waited for). Through GuestIcd the rounds after the first take
 * the previous instance's host session (GUESTICD_SESSION_KEEP_MS), so this checks that nothing of the old
 * instance leaks into the new one. With a second argument "leak" it leaves each round's device alive (which
 * the spec forbids): the session must then not be kept. With "vary" each round's instance has an application
 * version of its own, so hostsim may not hand it the driver instance the last round left.
 * Usage: recreate [ROUNDS] [leak|vary] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vulkan/vulkan.h>

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 3;
    int leak = argc > 2 && strcmp(argv[2], "leak") == 0;
    int vary = argc > 2 && strcmp(argv[2], "vary") == 0;
    for (int i = 0; i < rounds; i++) {
        VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .applicationVersion = vary ? (uint32_t)i : 0, .apiVersion = VK_API_VERSION_1_3 };
        VkInstanceCreateInfo ci = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app };
        VkInstance instance;
        VkResult r = vkCreateInstance(&ci, NULL, &instance);
        if (r != VK_SUCCESS) { printf("round %d: vkCreateInstance=%d\n", i, r); return 2; }
        uint32_t n = 1;
        VkPhysicalDevice pd;
        r = vkEnumeratePhysicalDevices(instance, &n, &pd);
        if (r < 0 || n != 1) { printf("round %d: vkEnumeratePhysicalDevices=%d count=%u\n", i, r, n); return 3; }
        float prio = 1.0f;
        VkDeviceQueueCreateInfo qci = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = 0, .queueCount = 1, .pQueuePriorities = &prio };
        VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1, .pQueueCreateInfos = &qci };
        VkDevice device;
        r = vkCreateDevice(pd, &dci, NULL, &device);
        if (r != VK_SUCCESS) { printf("round %d: vkCreateDevice=%d\n", i, r); return 4; }
        VkQueue queue;
        vkGetDeviceQueue(device, 0, 0, &queue);
        VkFenceCreateInfo fci = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
        VkFence fence;
        r = vkCreateFence(device, &fci, NULL, &fence);
        if (r != VK_SUCCESS) { printf("round %d: vkCreateFence=%d\n", i, r); return 5; }
        VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO };
        r = vkQueueSubmit(queue, 1, &si, fence);
        if (r != VK_SUCCESS) { printf("round %d: vkQueueSubmit=%d\n", i, r); return 6; }
        r = vkWaitForFences(device, 1, &fence, VK_TRUE, 10ull * 1000 * 1000 * 1000);
        if (r != VK_SUCCESS) { printf("round %d: vkWaitForFences=%d\n", i, r); return 7; }
        r = vkGetFenceStatus(device, fence);
        if (r != VK_SUCCESS) { printf("round %d: vkGetFenceStatus=%d\n", i, r); return 8; }
        if (!leak) {
            vkDestroyFence(device, fence, NULL);
            vkDestroyDevice(device, NULL);
        }
        vkDestroyInstance(instance, NULL);
        printf("round %d: ok\n", i);
    }
    return 0;
}
