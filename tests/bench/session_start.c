/* Session start cost: how long vkCreateInstance (and then vkCreateDevice) takes, repeated, in one process.
 * Through the ICD each vkCreateInstance is a new hostsim session (connect, handshake, hello, and with
 * isolation a worker taking the connection). Prints one line per iteration:
 *   iteration<TAB>N<TAB>create_instance_ms<TAB>X<TAB>create_device_ms<TAB>Y
 * Usage: session_start ITERATIONS [PAUSE_MS] */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <vulkan/vulkan.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    int iterations = argc > 1 ? atoi(argv[1]) : 10;
    int pause_ms = argc > 2 ? atoi(argv[2]) : 0;
    for (int it = 0; it < iterations; it++) {
        VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .pApplicationName = "session_start", .apiVersion = VK_API_VERSION_1_1 };
        VkInstanceCreateInfo ici = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app };
        VkInstance instance;
        double t0 = now_ms();
        VkResult r = vkCreateInstance(&ici, NULL, &instance);
        double t1 = now_ms();
        if (r != VK_SUCCESS) { printf("FAILED vkCreateInstance = %d\n", r); return 1; }
        uint32_t n = 1;
        VkPhysicalDevice pd;
        r = vkEnumeratePhysicalDevices(instance, &n, &pd);
        if ((r != VK_SUCCESS && r != VK_INCOMPLETE) || n == 0) { printf("FAILED vkEnumeratePhysicalDevices = %d\n", r); return 1; }
        float prio = 1.0f;
        VkDeviceQueueCreateInfo qci = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = 0, .queueCount = 1, .pQueuePriorities = &prio };
        VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1, .pQueueCreateInfos = &qci };
        VkDevice device;
        r = vkCreateDevice(pd, &dci, NULL, &device);
        double t2 = now_ms();
        if (r != VK_SUCCESS) { printf("FAILED vkCreateDevice = %d\n", r); return 1; }
        vkDestroyDevice(device, NULL);
        vkDestroyInstance(instance, NULL);
        printf("iteration\t%d\tcreate_instance_ms\t%.2f\tcreate_device_ms\t%.2f\n", it, t1 - t0, t2 - t1);
        fflush(stdout);
        if (pause_ms > 0) {
            struct timespec ts = { pause_ms / 1000, (pause_ms % 1000) * 1000000L };
            nanosleep(&ts, NULL);
        }
    }
    return 0;
}
