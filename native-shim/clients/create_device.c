/* A minimal real client: instance, physical device, logical device and queue through the loader,
 * printing what it got so the test can compare it with the host's device. */
#include <stdio.h>
#include <string.h>
#include <vulkan/vulkan.h>

int main(void)
{
    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .apiVersion = VK_API_VERSION_1_3 };
    VkInstanceCreateInfo ci = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app };
    VkInstance instance;
    VkResult r = vkCreateInstance(&ci, NULL, &instance);
    if (r != VK_SUCCESS) { printf("vkCreateInstance=%d\n", r); return 2; }
    uint32_t n = 1;
    VkPhysicalDevice pd;
    r = vkEnumeratePhysicalDevices(instance, &n, &pd);
    if (r != VK_SUCCESS || n != 1) { printf("vkEnumeratePhysicalDevices=%d count=%u\n", r, n); return 3; }
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(pd, &props);
    printf("device=%s type=%d\n", props.deviceName, props.deviceType);
    /* Queries whose answers never change: asked many times, they must agree every time. */
    for (int i = 0; i < 1000; i++) {
        VkPhysicalDeviceProperties again;
        VkFormatProperties fp;
        vkGetPhysicalDeviceProperties(pd, &again);
        vkGetPhysicalDeviceFormatProperties(pd, (VkFormat)(i % 100), &fp);
        if (again.limits.maxImageDimension2D != props.limits.maxImageDimension2D || strcmp(again.deviceName, props.deviceName) != 0) {
            printf("properties changed between calls\n");
            return 5;
        }
    }
    printf("2000 repeated queries agree\n");
    for (int round = 0; round < 3; round++) {
        float prio = 1.0f;
        VkDeviceQueueCreateInfo q = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueCount = 1, .pQueuePriorities = &prio };
        VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1, .pQueueCreateInfos = &q };
        VkDevice device;
        r = vkCreateDevice(pd, &dci, NULL, &device);
        if (r != VK_SUCCESS) { printf("vkCreateDevice=%d\n", r); return 4; }
        VkQueue q0, q1;
        vkGetDeviceQueue(device, 0, 0, &q0);
        vkGetDeviceQueue(device, 0, 0, &q1);
        r = vkQueueWaitIdle(q0);
        printf("round %d: queue %s, vkQueueWaitIdle=%d, vkDeviceWaitIdle=%d\n", round, q0 == q1 && q0 ? "stable" : "UNSTABLE", r, vkDeviceWaitIdle(device));
        vkDestroyDevice(device, NULL);
    }
    vkDestroyInstance(instance, NULL);
    printf("done\n");
    return 0;
}
