/* An X11 presentation client, through xcb (VK_KHR_xcb_surface) or Xlib (VK_KHR_xlib_surface): a 200x150 window,
 * a swapchain of the surface's current extent, FRAMES frames (each cleared to a colour of its own, with a 16x8
 * gradient copied to (10,10)), acquired with a semaphore and presented after one. With --resize the window
 * becomes 240x120 halfway: the driver must say VK_ERROR_OUT_OF_DATE_KHR or VK_SUBOPTIMAL_KHR, and the client
 * recreates the swapchain at the new size (oldSwapchain) and goes on. At the end the window's contents are read
 * back from the X server (after every request of the client ran) and written to SHOT as a binary PPM.
 * Prints `frames: N, out of date: A, suboptimal: B, size WxH`.
 * Usage: window xcb|xlib FRAMES SHOT.ppm [--resize] */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <X11/Xlib.h>
#include <X11/Xlib-xcb.h>
#include <xcb/xcb.h>
#define VK_USE_PLATFORM_XCB_KHR
#define VK_USE_PLATFORM_XLIB_KHR
#include <vulkan/vulkan.h>
#include "present_kit.h"

#define CHECK(call) do { VkResult r_ = (call); if (r_ != VK_SUCCESS) { \
    fprintf(stderr, "FAILED %s = %d (line %d)\n", #call, r_, __LINE__); exit(1); } } while (0)
#define FAIL(...) do { fprintf(stderr, "FAILED: " __VA_ARGS__); fprintf(stderr, "\n"); exit(1); } while (0)

enum { RW = 16, RH = 8, GX = 10, GY = 10 };

static VkPhysicalDevice pd;
static VkDevice device;
static VkSurfaceKHR surface;
static VkSwapchainKHR swapchain;
static VkImage images[16];
static uint32_t image_count;
static VkExtent2D extent;

static void make_swapchain(void)
{
    VkSurfaceCapabilitiesKHR caps;
    CHECK(vkGetPhysicalDeviceSurfaceCapabilitiesKHR(pd, surface, &caps));
    extent = caps.currentExtent;
    uint32_t n = caps.minImageCount < 3 ? 3 : caps.minImageCount;
    if (caps.maxImageCount && n > caps.maxImageCount) n = caps.maxImageCount;
    VkSwapchainKHR old = swapchain;
    VkSwapchainCreateInfoKHR sci = { .sType = VK_STRUCTURE_TYPE_SWAPCHAIN_CREATE_INFO_KHR, .surface = surface,
        .minImageCount = n, .imageFormat = VK_FORMAT_B8G8R8A8_UNORM, .imageColorSpace = VK_COLOR_SPACE_SRGB_NONLINEAR_KHR,
        .imageExtent = extent, .imageArrayLayers = 1, .imageUsage = VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT | VK_IMAGE_USAGE_TRANSFER_DST_BIT,
        .imageSharingMode = VK_SHARING_MODE_EXCLUSIVE, .preTransform = VK_SURFACE_TRANSFORM_IDENTITY_BIT_KHR,
        .compositeAlpha = VK_COMPOSITE_ALPHA_OPAQUE_BIT_KHR, .presentMode = VK_PRESENT_MODE_FIFO_KHR, .clipped = VK_TRUE,
        .oldSwapchain = old };
    CHECK(vkCreateSwapchainKHR(device, &sci, NULL, &swapchain));
    if (old) vkDestroySwapchainKHR(device, old, NULL);
    image_count = 16;
    CHECK(vkGetSwapchainImagesKHR(device, swapchain, &image_count, images));
}

static void write_ppm(const char *path, const uint8_t *bgrx, int w, int h, int stride)
{
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    fprintf(f, "P6\n%d %d\n255\n", w, h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
        {
            const uint8_t *p = bgrx + y * stride + x * 4;
            uint8_t rgb[3] = { p[2], p[1], p[0] };
            fwrite(rgb, 1, 3, f);
        }
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc < 4) { fprintf(stderr, "usage: window xcb|xlib FRAMES SHOT.ppm [--resize]\n"); return 2; }
    int xlib = !strcmp(argv[1], "xlib");
    int frames = atoi(argv[2]);
    const char *shot = argv[3];
    int resize = argc > 4 && !strcmp(argv[4], "--resize");

    Display *dpy = NULL;
    xcb_connection_t *conn;
    xcb_window_t window;
    if (xlib)
    {
        dpy = XOpenDisplay(NULL);
        if (!dpy) FAIL("no X display");
        window = (xcb_window_t)XCreateSimpleWindow(dpy, DefaultRootWindow(dpy), 0, 0, 200, 150, 0, 0, 0);
        XMapWindow(dpy, window);
        XSync(dpy, False);
        conn = XGetXCBConnection(dpy);
    }
    else
    {
        int screen_no;
        conn = xcb_connect(NULL, &screen_no);
        if (xcb_connection_has_error(conn)) FAIL("no X display");
        const xcb_setup_t *setup = xcb_get_setup(conn);
        xcb_screen_iterator_t it = xcb_setup_roots_iterator(setup);
        for (int i = 0; i < screen_no; i++) xcb_screen_next(&it);
        window = xcb_generate_id(conn);
        uint32_t values[] = { it.data->black_pixel };
        xcb_create_window(conn, XCB_COPY_FROM_PARENT, window, it.data->root, 0, 0, 200, 150, 0, XCB_WINDOW_CLASS_INPUT_OUTPUT,
                          it.data->root_visual, XCB_CW_BACK_PIXEL, values);
        xcb_map_window(conn, window);
        free(xcb_get_input_focus_reply(conn, xcb_get_input_focus(conn), NULL));
    }

    const char *iexts[] = { "VK_KHR_surface", xlib ? "VK_KHR_xlib_surface" : "VK_KHR_xcb_surface" };
    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .apiVersion = VK_API_VERSION_1_1 };
    VkInstanceCreateInfo ici = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app, .enabledExtensionCount = 2, .ppEnabledExtensionNames = iexts };
    VkInstance instance;
    CHECK(vkCreateInstance(&ici, NULL, &instance));
    uint32_t pdc = 1;
    VkResult er = vkEnumeratePhysicalDevices(instance, &pdc, &pd);
    if (er < 0 || pdc == 0) FAIL("no physical device");
    if (xlib)
    {
        VkXlibSurfaceCreateInfoKHR sci = { .sType = VK_STRUCTURE_TYPE_XLIB_SURFACE_CREATE_INFO_KHR, .dpy = dpy, .window = window };
        CHECK(vkCreateXlibSurfaceKHR(instance, &sci, NULL, &surface));
        if (!vkGetPhysicalDeviceXlibPresentationSupportKHR(pd, 0, dpy, XVisualIDFromVisual(DefaultVisual(dpy, DefaultScreen(dpy))))) FAIL("no xlib presentation support");
    }
    else
    {
        VkXcbSurfaceCreateInfoKHR sci = { .sType = VK_STRUCTURE_TYPE_XCB_SURFACE_CREATE_INFO_KHR, .connection = conn, .window = window };
        CHECK(vkCreateXcbSurfaceKHR(instance, &sci, NULL, &surface));
        xcb_screen_t *scr = xcb_setup_roots_iterator(xcb_get_setup(conn)).data;
        if (!vkGetPhysicalDeviceXcbPresentationSupportKHR(pd, 0, conn, scr->root_visual)) FAIL("no xcb presentation support");
    }
    VkBool32 supported = VK_FALSE;
    CHECK(vkGetPhysicalDeviceSurfaceSupportKHR(pd, 0, surface, &supported));
    if (!supported) FAIL("queue family 0 cannot present");

    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = 0, .queueCount = 1, .pQueuePriorities = &prio };
    const char *dexts[] = { "VK_KHR_swapchain" };
    VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1, .pQueueCreateInfos = &qci,
                               .enabledExtensionCount = 1, .ppEnabledExtensionNames = dexts };
    CHECK(vkCreateDevice(pd, &dci, NULL, &device));
    VkQueue queue;
    vkGetDeviceQueue(device, 0, 0, &queue);
    make_swapchain();
    if (extent.width != 200 || extent.height != 150) FAIL("current extent %ux%u, the window is 200x150", extent.width, extent.height);

    /* The gradient the frames copy from, and the per-frame objects (present_kit.h). */
    kit_frames fr;
    CHECK(kit_frames_create(pd, device, 0, RW, RH, &fr));
    VkCommandBuffer cmd = fr.cmd;
    VkSemaphore acquired = fr.acquired, rendered = fr.rendered;
    VkFence done = fr.done;

    int out_of_date = 0, suboptimal = 0, resized = 0, attempts = 0;
    for (int f = 0; f < frames && attempts < frames + 50; attempts++)
    {
        if (resize && !resized && f == frames / 2)
        {
            uint32_t size[] = { 240, 120 };
            xcb_configure_window(conn, window, XCB_CONFIG_WINDOW_WIDTH | XCB_CONFIG_WINDOW_HEIGHT, size);
            free(xcb_get_input_focus_reply(conn, xcb_get_input_focus(conn), NULL));
            resized = 1;
        }
        uint32_t idx;
        VkResult ar = vkAcquireNextImageKHR(device, swapchain, UINT64_MAX, acquired, VK_NULL_HANDLE, &idx);
        if (ar == VK_ERROR_OUT_OF_DATE_KHR) { out_of_date++; CHECK(vkDeviceWaitIdle(device)); make_swapchain(); continue; }
        if (ar == VK_SUBOPTIMAL_KHR) suboptimal++;
        else CHECK(ar);
        CHECK(kit_record_frame(&fr, images[idx], f, GX, GY, RW, RH));
        VkPipelineStageFlags stage = VK_PIPELINE_STAGE_TRANSFER_BIT;
        VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .waitSemaphoreCount = 1, .pWaitSemaphores = &acquired, .pWaitDstStageMask = &stage,
                            .commandBufferCount = 1, .pCommandBuffers = &cmd, .signalSemaphoreCount = 1, .pSignalSemaphores = &rendered };
        CHECK(vkQueueSubmit(queue, 1, &si, done));
        VkPresentInfoKHR pi = { .sType = VK_STRUCTURE_TYPE_PRESENT_INFO_KHR, .waitSemaphoreCount = 1, .pWaitSemaphores = &rendered,
                                .swapchainCount = 1, .pSwapchains = &swapchain, .pImageIndices = &idx };
        VkResult pr = vkQueuePresentKHR(queue, &pi);
        CHECK(vkWaitForFences(device, 1, &done, VK_TRUE, UINT64_MAX));
        CHECK(vkResetFences(device, 1, &done));
        if (pr == VK_ERROR_OUT_OF_DATE_KHR || pr == VK_SUBOPTIMAL_KHR)
        {
            if (pr == VK_ERROR_OUT_OF_DATE_KHR) out_of_date++; else suboptimal++;
            CHECK(vkDeviceWaitIdle(device));
            make_swapchain();
            if (pr == VK_ERROR_OUT_OF_DATE_KHR) continue;
        }
        else CHECK(pr);
        f++;
        if (f == frames) printf("frames: %d, out of date: %d, suboptimal: %d, size %ux%u\n", f, out_of_date, suboptimal, extent.width, extent.height);
    }
    CHECK(vkDeviceWaitIdle(device));
    /* Presentation may finish after vkQueuePresentKHR returns (device idle does not cover it); destroying the
     * swapchain lets every present it took be shown. */
    vkDestroySwapchainKHR(device, swapchain, NULL);
    swapchain = VK_NULL_HANDLE;

    /* Read the window back once the server has run everything this client sent. */
    free(xcb_get_input_focus_reply(conn, xcb_get_input_focus(conn), NULL));
    xcb_get_image_reply_t *img = xcb_get_image_reply(conn, xcb_get_image(conn, XCB_IMAGE_FORMAT_Z_PIXMAP, window, 0, 0, (uint16_t)extent.width, (uint16_t)extent.height, ~0u), NULL);
    if (!img) FAIL("no image of the window");
    write_ppm(shot, xcb_get_image_data(img), (int)extent.width, (int)extent.height, (int)extent.width * 4);
    free(img);

    kit_frames_destroy(device, &fr);
    vkDestroyDevice(device, NULL);
    vkDestroySurfaceKHR(instance, surface, NULL);
    vkDestroyInstance(instance, NULL);
    if (xlib) XCloseDisplay(dpy);
    else xcb_disconnect(conn);
    printf("done\n");
    return 0;
}
