/* Creates an instance through the loader, then waits for the test to kill hostsim and checks that the
 * next call that needs the host answers VK_ERROR_DEVICE_LOST instead of crashing or hanging. */
#include <stdio.h>
#include <string.h>
#include <vulkan/vulkan.h>

int main(void)
{
    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .apiVersion = VK_API_VERSION_1_3 };
    VkInstanceCreateInfo ci = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app };
    VkInstance instance;
    VkResult r = vkCreateInstance(&ci, NULL, &instance);
    printf("vkCreateInstance=%d\n", r);
    if (r != VK_SUCCESS) return 2;
    uint32_t n = 1;
    VkPhysicalDevice pd;
    r = vkEnumeratePhysicalDevices(instance, &n, &pd);
    printf("vkEnumeratePhysicalDevices=%d count=%u\n", r, n);
    if (r != VK_SUCCESS || n != 1) return 3;
    printf("ready\n");
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin)) return 4;

    float prio = 1.0f;
    VkDeviceQueueCreateInfo q = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueCount = 1, .pQueuePriorities = &prio };
    VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1, .pQueueCreateInfos = &q };
    VkDevice device;
    r = vkCreateDevice(pd, &dci, NULL, &device);
    printf("vkCreateDevice=%d\n", r);
    VkPhysicalDeviceProperties props;
    memset(&props, 0, sizeof props);
    vkGetPhysicalDeviceProperties(pd, &props); /* void: must return, not crash */
    printf("after-loss properties call returned\n");
    vkDestroyInstance(instance, NULL);
    printf("done\n");
    return 0;
}
