/* A misbehaving application: it binds a buffer at an offset far outside its memory allocation, which
 * the spec forbids and a driver would not check. hostsim must end this guest's session (the call answers
 * VK_ERROR_DEVICE_LOST) without touching memory the guest does not own, and keep serving the others. */
#include <stdio.h>
#include <vulkan/vulkan.h>

int main(void)
{
    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .apiVersion = VK_API_VERSION_1_3 };
    VkInstanceCreateInfo ici = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app };
    VkInstance instance;
    if (vkCreateInstance(&ici, NULL, &instance) != VK_SUCCESS) return 2;
    uint32_t n = 1;
    VkPhysicalDevice pd;
    if (vkEnumeratePhysicalDevices(instance, &n, &pd) < 0 || n == 0) return 3;
    float prio = 1.0f;
    VkDeviceQueueCreateInfo q = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueCount = 1, .pQueuePriorities = &prio };
    VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1, .pQueueCreateInfos = &q };
    VkDevice device;
    if (vkCreateDevice(pd, &dci, NULL, &device) != VK_SUCCESS) return 4;
    VkBufferCreateInfo bci = { .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = 4096, .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT };
    VkBuffer buffer;
    if (vkCreateBuffer(device, &bci, NULL, &buffer) != VK_SUCCESS) return 5;
    VkMemoryAllocateInfo mai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = 4096, .memoryTypeIndex = 0 };
    VkDeviceMemory memory;
    if (vkAllocateMemory(device, &mai, NULL, &memory) != VK_SUCCESS) return 6;
    VkResult r = vkBindBufferMemory(device, buffer, memory, 1u << 30);
    printf("vkBindBufferMemory(offset 1 GiB)=%d\n", r);
    r = vkDeviceWaitIdle(device);
    printf("vkDeviceWaitIdle=%d\n", r);
    vkDestroyInstance(instance, NULL);
    printf("done\n");
    return 0;
}
