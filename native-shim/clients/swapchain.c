/* A headless presentation client (VK_EXT_headless_surface), written as an application would: no display at all.
 * It checks the surface queries (capabilities, capabilities2 with protected capabilities, formats, formats2,
 * present modes, support, present rectangles, device-group present capabilities), creates a 64x48
 * B8G8R8A8_UNORM swapchain and presents FRAMES frames: each one is acquired with a semaphore, cleared to a
 * colour of its own, given a 16x8 gradient at (8,4) by vkCmdCopyBufferToImage, moved to PRESENT_SRC and
 * presented after a semaphore. Prints `frame F: image I rgb R,G,B` per frame, which the test compares with
 * what the driver presented. Then: an acquire with a fence only; acquiring every image, after which a 0 timeout
 * gives VK_NOT_READY and a 20 ms one VK_TIMEOUT; a swapchain replacing the first (oldSwapchain), after which the
 * surface has a swapchain again (a third one gets VK_ERROR_NATIVE_WINDOW_IN_USE_KHR).
 * With --misuse (our ICD only): an unsupported format, a present of an image never acquired and an acquire
 * from the retired swapchain must be errors (VK_ERROR_OUT_OF_DATE_KHR for the last).
 * Where the device offers VK_KHR_swapchain_mutable_format and VK_KHR_incremental_present, the swapchains are
 * created mutable (UNORM and SRGB views), an SRGB view of an image is made, and each present names what
 * changed in a VkPresentRegionsKHR.
 * Usage: swapchain FRAMES [--misuse] */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vulkan/vulkan.h>
#include "present_kit.h"

#define CHECK(call) do { VkResult r_ = (call); if (r_ != VK_SUCCESS) { \
    fprintf(stderr, "FAILED %s = %d (line %d)\n", #call, r_, __LINE__); exit(1); } } while (0)
#define FAIL(...) do { fprintf(stderr, "FAILED: " __VA_ARGS__); fprintf(stderr, "\n"); exit(1); } while (0)
#define EXPECT(cond) do { if (!(cond)) FAIL("%s (line %d)", #cond, __LINE__); } while (0)

enum { W = 64, H = 48, RX = 8, RY = 4, RW = 16, RH = 8 };

static VkPhysicalDevice pd;
static VkDevice device;
static int extras; /* VK_KHR_swapchain_mutable_format and VK_KHR_incremental_present enabled */
static const VkFormat view_formats[2] = { VK_FORMAT_B8G8R8A8_UNORM, VK_FORMAT_B8G8R8A8_SRGB };

static int has_extension(const VkExtensionProperties *p, uint32_t n, const char *name)
{
    for (uint32_t i = 0; i < n; i++) if (!strcmp(p[i].extensionName, name)) return 1;
    return 0;
}

static VkSwapchainKHR make_swapchain(VkSurfaceKHR surface, uint32_t minImages, VkSwapchainKHR old, VkResult *result)
{
    VkSwapchainCreateInfoKHR sci = { .sType = VK_STRUCTURE_TYPE_SWAPCHAIN_CREATE_INFO_KHR, .surface = surface,
        .minImageCount = minImages, .imageFormat = VK_FORMAT_B8G8R8A8_UNORM, .imageColorSpace = VK_COLOR_SPACE_SRGB_NONLINEAR_KHR,
        .imageExtent = { W, H }, .imageArrayLayers = 1, .imageUsage = VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT | VK_IMAGE_USAGE_TRANSFER_DST_BIT,
        .imageSharingMode = VK_SHARING_MODE_EXCLUSIVE, .preTransform = VK_SURFACE_TRANSFORM_IDENTITY_BIT_KHR,
        .compositeAlpha = VK_COMPOSITE_ALPHA_OPAQUE_BIT_KHR, .presentMode = VK_PRESENT_MODE_FIFO_KHR, .clipped = VK_TRUE,
        .oldSwapchain = old };
    VkImageFormatListCreateInfo list = { .sType = VK_STRUCTURE_TYPE_IMAGE_FORMAT_LIST_CREATE_INFO, .viewFormatCount = 2, .pViewFormats = view_formats };
    if (extras) { sci.flags = VK_SWAPCHAIN_CREATE_MUTABLE_FORMAT_BIT_KHR; sci.pNext = &list; }
    VkSwapchainKHR sc = VK_NULL_HANDLE;
    *result = vkCreateSwapchainKHR(device, &sci, NULL, &sc);
    return sc;
}

static void barrier(VkCommandBuffer cmd, VkImage image, VkImageLayout from, VkImageLayout to, VkAccessFlags src, VkAccessFlags dst)
{
    VkImageMemoryBarrier b = { .sType = VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER, .srcAccessMask = src, .dstAccessMask = dst,
        .oldLayout = from, .newLayout = to, .srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED, .dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED,
        .image = image, .subresourceRange = { VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1 } };
    vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, 0, 0, NULL, 0, NULL, 1, &b);
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: swapchain FRAMES [--misuse]\n"); return 2; }
    int frames = atoi(argv[1]);
    int misuse = argc > 2 && !strcmp(argv[2], "--misuse");

    uint32_t n = 0;
    CHECK(vkEnumerateInstanceExtensionProperties(NULL, &n, NULL));
    VkExtensionProperties *ie = calloc(n, sizeof *ie);
    CHECK(vkEnumerateInstanceExtensionProperties(NULL, &n, ie));
    const char *iexts[] = { "VK_KHR_surface", "VK_EXT_headless_surface", "VK_KHR_get_surface_capabilities2", "VK_KHR_surface_protected_capabilities" };
    for (int i = 0; i < 4; i++) if (!has_extension(ie, n, iexts[i])) FAIL("instance extension %s missing", iexts[i]);
    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .apiVersion = VK_API_VERSION_1_1 };
    VkInstanceCreateInfo ici = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app, .enabledExtensionCount = 4, .ppEnabledExtensionNames = iexts };
    VkInstance instance;
    CHECK(vkCreateInstance(&ici, NULL, &instance));
    uint32_t pdc = 1;
    VkResult er = vkEnumeratePhysicalDevices(instance, &pdc, &pd);
    if (er < 0 || pdc == 0) FAIL("no physical device");
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(pd, &props);
    printf("device: %s\n", props.deviceName);

    VkHeadlessSurfaceCreateInfoEXT hci = { .sType = VK_STRUCTURE_TYPE_HEADLESS_SURFACE_CREATE_INFO_EXT };
    VkSurfaceKHR surface;
    CHECK(vkCreateHeadlessSurfaceEXT(instance, &hci, NULL, &surface));

    VkBool32 supported = VK_FALSE;
    CHECK(vkGetPhysicalDeviceSurfaceSupportKHR(pd, 0, surface, &supported));
    EXPECT(supported);
    VkSurfaceCapabilitiesKHR caps;
    CHECK(vkGetPhysicalDeviceSurfaceCapabilitiesKHR(pd, surface, &caps));
    EXPECT(caps.minImageCount >= 1 && (caps.maxImageCount == 0 || caps.maxImageCount >= caps.minImageCount));
    EXPECT(caps.currentExtent.width == 0xFFFFFFFF || (caps.currentExtent.width >= caps.minImageExtent.width));
    EXPECT(caps.maxImageExtent.width >= W && caps.maxImageExtent.height >= H && caps.minImageExtent.width <= W);
    EXPECT(caps.supportedUsageFlags & VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT);
    EXPECT(caps.supportedUsageFlags & VK_IMAGE_USAGE_TRANSFER_DST_BIT);
    EXPECT(caps.supportedCompositeAlpha & VK_COMPOSITE_ALPHA_OPAQUE_BIT_KHR);
    EXPECT(caps.supportedTransforms & VK_SURFACE_TRANSFORM_IDENTITY_BIT_KHR);
    printf("capabilities: images %u..%u, current %ux%u, max %ux%u, usage 0x%x\n", caps.minImageCount, caps.maxImageCount,
           caps.currentExtent.width, caps.currentExtent.height, caps.maxImageExtent.width, caps.maxImageExtent.height, caps.supportedUsageFlags);

    VkSurfaceProtectedCapabilitiesKHR prot = { .sType = VK_STRUCTURE_TYPE_SURFACE_PROTECTED_CAPABILITIES_KHR, .supportsProtected = 77 };
    VkSurfaceCapabilities2KHR caps2 = { .sType = VK_STRUCTURE_TYPE_SURFACE_CAPABILITIES_2_KHR, .pNext = &prot };
    VkPhysicalDeviceSurfaceInfo2KHR si2 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SURFACE_INFO_2_KHR, .surface = surface };
    CHECK(vkGetPhysicalDeviceSurfaceCapabilities2KHR(pd, &si2, &caps2));
    EXPECT(caps2.surfaceCapabilities.minImageCount == caps.minImageCount && caps2.surfaceCapabilities.supportedUsageFlags == caps.supportedUsageFlags);
    EXPECT(prot.supportsProtected == VK_FALSE || prot.supportsProtected == VK_TRUE);
    printf("protected: %u\n", prot.supportsProtected);

    uint32_t nf = 0;
    CHECK(vkGetPhysicalDeviceSurfaceFormatsKHR(pd, surface, &nf, NULL));
    VkSurfaceFormatKHR *fmts = calloc(nf, sizeof *fmts);
    CHECK(vkGetPhysicalDeviceSurfaceFormatsKHR(pd, surface, &nf, fmts));
    int unorm = 0;
    for (uint32_t i = 0; i < nf; i++) unorm |= fmts[i].format == VK_FORMAT_B8G8R8A8_UNORM && fmts[i].colorSpace == VK_COLOR_SPACE_SRGB_NONLINEAR_KHR;
    EXPECT(unorm);
    if (nf > 1) { uint32_t one = 1; EXPECT(vkGetPhysicalDeviceSurfaceFormatsKHR(pd, surface, &one, fmts) == VK_INCOMPLETE); }
    VkSurfaceFormat2KHR *fmts2 = calloc(nf, sizeof *fmts2);
    for (uint32_t i = 0; i < nf; i++) fmts2[i].sType = VK_STRUCTURE_TYPE_SURFACE_FORMAT_2_KHR;
    uint32_t nf2 = nf;
    CHECK(vkGetPhysicalDeviceSurfaceFormats2KHR(pd, &si2, &nf2, fmts2));
    EXPECT(nf2 == nf);
    for (uint32_t i = 0; i < nf; i++) EXPECT(fmts2[i].surfaceFormat.format == fmts[i].format && fmts2[i].sType == VK_STRUCTURE_TYPE_SURFACE_FORMAT_2_KHR);
    printf("formats: %u\n", nf);

    uint32_t nm = 0;
    CHECK(vkGetPhysicalDeviceSurfacePresentModesKHR(pd, surface, &nm, NULL));
    VkPresentModeKHR modes[16];
    if (nm > 16) nm = 16;
    VkResult mr = vkGetPhysicalDeviceSurfacePresentModesKHR(pd, surface, &nm, modes);
    EXPECT(mr == VK_SUCCESS || mr == VK_INCOMPLETE);
    int fifo = 0;
    for (uint32_t i = 0; i < nm; i++) fifo |= modes[i] == VK_PRESENT_MODE_FIFO_KHR;
    EXPECT(fifo);
    printf("present modes: %u\n", nm);

    uint32_t de = 0;
    CHECK(vkEnumerateDeviceExtensionProperties(pd, NULL, &de, NULL));
    VkExtensionProperties *dev_ext = calloc(de, sizeof *dev_ext);
    CHECK(vkEnumerateDeviceExtensionProperties(pd, NULL, &de, dev_ext));
    if (!has_extension(dev_ext, de, "VK_KHR_swapchain")) FAIL("VK_KHR_swapchain missing");
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = 0, .queueCount = 1, .pQueuePriorities = &prio };
    /* VK_KHR_swapchain_mutable_format needs VK_KHR_image_format_list below Vulkan 1.2. */
    const char *dexts[] = { "VK_KHR_swapchain", "VK_KHR_swapchain_mutable_format", "VK_KHR_image_format_list", "VK_KHR_incremental_present" };
    extras = 1;
    for (int i = 1; i < 4; i++) extras &= has_extension(dev_ext, de, dexts[i]);
    VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1, .pQueueCreateInfos = &qci,
                               .enabledExtensionCount = extras ? 4 : 1, .ppEnabledExtensionNames = dexts };
    CHECK(vkCreateDevice(pd, &dci, NULL, &device));
    VkQueue queue;
    vkGetDeviceQueue(device, 0, 0, &queue);

    uint32_t nr = 0;
    CHECK(vkGetPhysicalDevicePresentRectanglesKHR(pd, surface, &nr, NULL));
    EXPECT(nr >= 1);
    VkRect2D rect;
    nr = 1;
    VkResult rr = vkGetPhysicalDevicePresentRectanglesKHR(pd, surface, &nr, &rect);
    EXPECT(rr == VK_SUCCESS || rr == VK_INCOMPLETE);
    VkDeviceGroupPresentCapabilitiesKHR gpc = { .sType = VK_STRUCTURE_TYPE_DEVICE_GROUP_PRESENT_CAPABILITIES_KHR };
    CHECK(vkGetDeviceGroupPresentCapabilitiesKHR(device, &gpc));
    EXPECT((gpc.presentMask[0] & 1) && (gpc.modes & VK_DEVICE_GROUP_PRESENT_MODE_LOCAL_BIT_KHR));
    VkDeviceGroupPresentModeFlagsKHR gmodes = 0;
    CHECK(vkGetDeviceGroupSurfacePresentModesKHR(device, surface, &gmodes));
    EXPECT(gmodes & VK_DEVICE_GROUP_PRESENT_MODE_LOCAL_BIT_KHR);
    printf("device group: mask 0x%x modes 0x%x\n", gpc.presentMask[0], gpc.modes);

    uint32_t minImages = caps.minImageCount < 3 ? 3 : caps.minImageCount;
    if (caps.maxImageCount && minImages > caps.maxImageCount) minImages = caps.maxImageCount;
    VkResult cr;
    VkSwapchainKHR sc = make_swapchain(surface, minImages, VK_NULL_HANDLE, &cr);
    CHECK(cr);
    uint32_t count = 0;
    CHECK(vkGetSwapchainImagesKHR(device, sc, &count, NULL));
    EXPECT(count >= minImages);
    VkImage *images = calloc(count, sizeof *images);
    CHECK(vkGetSwapchainImagesKHR(device, sc, &count, images));
    printf("swapchain: %u images\n", count);
    if (extras)
    {
        /* What the mutable format is for: a view in the other format of the list. */
        VkImageViewCreateInfo vci = { .sType = VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO, .image = images[0], .viewType = VK_IMAGE_VIEW_TYPE_2D,
            .format = VK_FORMAT_B8G8R8A8_SRGB, .subresourceRange = { VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1 } };
        VkImageView view;
        CHECK(vkCreateImageView(device, &vci, NULL, &view));
        vkDestroyImageView(device, view, NULL);
        printf("wsi extras: mutable-format swapchain with an SRGB view, present regions\n");
    }

    /* The gradient the frames copy from, and the per-frame objects (present_kit.h). */
    kit_frames fr;
    CHECK(kit_frames_create(pd, device, 0, RW, RH, &fr));
    VkBuffer buf = fr.buffer;
    VkCommandBuffer cmd = fr.cmd;
    VkSemaphore acquired = fr.acquired, rendered = fr.rendered;
    VkFence done = fr.done;

    for (int f = 0; f < frames; f++)
    {
        uint32_t idx;
        CHECK(vkAcquireNextImageKHR(device, sc, UINT64_MAX, acquired, VK_NULL_HANDLE, &idx));
        EXPECT(idx < count);
        CHECK(vkBeginCommandBuffer(cmd, &(VkCommandBufferBeginInfo){ .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO }));
        barrier(cmd, images[idx], VK_IMAGE_LAYOUT_UNDEFINED, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, 0, VK_ACCESS_TRANSFER_WRITE_BIT);
        uint8_t r = (uint8_t)(20 + f * 40), g = (uint8_t)(250 - f * 30), b = 100;
        VkClearColorValue cc = { .float32 = { r / 255.0f, g / 255.0f, b / 255.0f, 1.0f } };
        VkImageSubresourceRange range = { VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1 };
        vkCmdClearColorImage(cmd, images[idx], VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, &cc, 1, &range);
        barrier(cmd, images[idx], VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, VK_ACCESS_TRANSFER_WRITE_BIT, VK_ACCESS_TRANSFER_WRITE_BIT);
        VkBufferImageCopy copy = { .imageSubresource = { VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1 }, .imageOffset = { RX, RY, 0 }, .imageExtent = { RW, RH, 1 } };
        vkCmdCopyBufferToImage(cmd, buf, images[idx], VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, 1, &copy);
        barrier(cmd, images[idx], VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, VK_IMAGE_LAYOUT_PRESENT_SRC_KHR, VK_ACCESS_TRANSFER_WRITE_BIT, 0);
        CHECK(vkEndCommandBuffer(cmd));
        VkPipelineStageFlags stage = VK_PIPELINE_STAGE_TRANSFER_BIT;
        VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .waitSemaphoreCount = 1, .pWaitSemaphores = &acquired, .pWaitDstStageMask = &stage,
                            .commandBufferCount = 1, .pCommandBuffers = &cmd, .signalSemaphoreCount = 1, .pSignalSemaphores = &rendered };
        CHECK(vkQueueSubmit(queue, 1, &si, done));
        VkResult pres = VK_ERROR_UNKNOWN;
        /* What changed since the last present: every pixel (the clear). */
        VkRectLayerKHR changed = { .offset = { 0, 0 }, .extent = { W, H }, .layer = 0 };
        VkPresentRegionKHR region = { .rectangleCount = 1, .pRectangles = &changed };
        VkPresentRegionsKHR regions = { .sType = VK_STRUCTURE_TYPE_PRESENT_REGIONS_KHR, .swapchainCount = 1, .pRegions = &region };
        VkPresentInfoKHR pi = { .sType = VK_STRUCTURE_TYPE_PRESENT_INFO_KHR, .pNext = extras ? &regions : NULL, .waitSemaphoreCount = 1,
                                .pWaitSemaphores = &rendered, .swapchainCount = 1, .pSwapchains = &sc, .pImageIndices = &idx, .pResults = &pres };
        CHECK(vkQueuePresentKHR(queue, &pi));
        CHECK(pres);
        CHECK(vkWaitForFences(device, 1, &done, VK_TRUE, UINT64_MAX));
        CHECK(vkResetFences(device, 1, &done));
        printf("frame %d: image %u rgb %u,%u,%u\n", f, idx, r, g, b);
    }

    /* An acquire that signals a fence only. */
    uint32_t idx;
    CHECK(vkAcquireNextImageKHR(device, sc, UINT64_MAX, VK_NULL_HANDLE, done, &idx));
    CHECK(vkWaitForFences(device, 1, &done, VK_TRUE, UINT64_MAX));
    CHECK(vkResetFences(device, 1, &done));
    printf("acquire with a fence: image %u\n", idx);

    if (misuse)
    {
        VkSwapchainCreateInfoKHR bad = { .sType = VK_STRUCTURE_TYPE_SWAPCHAIN_CREATE_INFO_KHR, .surface = surface, .minImageCount = 2,
            .imageFormat = VK_FORMAT_R16G16B16A16_SFLOAT, .imageColorSpace = VK_COLOR_SPACE_SRGB_NONLINEAR_KHR, .imageExtent = { W, H },
            .imageArrayLayers = 1, .imageUsage = VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT, .presentMode = VK_PRESENT_MODE_FIFO_KHR, .oldSwapchain = sc };
        VkSwapchainKHR none = VK_NULL_HANDLE;
        VkResult br = vkCreateSwapchainKHR(device, &bad, NULL, &none);
        EXPECT(br < 0);
        uint32_t never = (idx + 1) % count;
        VkPresentInfoKHR pi = { .sType = VK_STRUCTURE_TYPE_PRESENT_INFO_KHR, .swapchainCount = 1, .pSwapchains = &sc, .pImageIndices = &never };
        VkResult pr = vkQueuePresentKHR(queue, &pi);
        EXPECT(pr < 0);
        uint32_t huge = 1000;
        pi.pImageIndices = &huge;
        EXPECT(vkQueuePresentKHR(queue, &pi) < 0);
        printf("misuse: swapchain %d, present of an image never acquired %d\n", br, pr);
    }

    /* Replace the swapchain: the old one is out of date, and the surface has a swapchain again. */
    VkSwapchainKHR sc2 = make_swapchain(surface, 2, sc, &cr);
    CHECK(cr);
    VkResult ar = VK_ERROR_OUT_OF_DATE_KHR;
    if (misuse)
    {
        /* Acquiring from a retired swapchain is invalid usage; the ICD says it is out of date. */
        uint32_t old_idx;
        ar = vkAcquireNextImageKHR(device, sc, 0, VK_NULL_HANDLE, done, &old_idx);
        EXPECT(ar == VK_ERROR_OUT_OF_DATE_KHR);
    }
    VkSwapchainKHR sc3 = make_swapchain(surface, 2, VK_NULL_HANDLE, &cr);
    EXPECT(cr == VK_ERROR_NATIVE_WINDOW_IN_USE_KHR);
    (void)sc3;
    printf("replaced: old swapchain %d, a second one %d\n", ar, cr);
    vkDestroySwapchainKHR(device, sc, NULL);

    /* Hold every image of the new swapchain: then nothing is free. */
    uint32_t count2 = 0;
    CHECK(vkGetSwapchainImagesKHR(device, sc2, &count2, NULL));
    for (uint32_t i = 0; i < count2; i++)
    {
        CHECK(vkAcquireNextImageKHR(device, sc2, 1000000000ull, VK_NULL_HANDLE, done, &idx));
        CHECK(vkWaitForFences(device, 1, &done, VK_TRUE, UINT64_MAX));
        CHECK(vkResetFences(device, 1, &done));
    }
    VkResult none = vkAcquireNextImageKHR(device, sc2, 0, VK_NULL_HANDLE, done, &idx);
    double t0 = now_ms();
    VkResult timeout = vkAcquireNextImageKHR(device, sc2, 20000000ull, VK_NULL_HANDLE, done, &idx);
    double waited = now_ms() - t0;
    EXPECT(none == VK_NOT_READY);
    EXPECT(timeout == VK_TIMEOUT);
    EXPECT(waited >= 15 && waited < 3000);
    printf("all %u images held: timeout 0 gives %d, 20 ms gives %d after %.0f ms\n", count2, none, timeout, waited);
    vkDestroySwapchainKHR(device, sc2, NULL);

    kit_frames_destroy(device, &fr);
    vkDestroyDevice(device, NULL);
    vkDestroySurfaceKHR(instance, surface, NULL);
    vkDestroyInstance(instance, NULL);
    printf("done\n");
    return 0;
}
