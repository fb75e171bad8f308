/* A Wayland presentation client (VK_KHR_wayland_surface): a fullscreen xdg_toplevel on the compositor's only
 * output, a swapchain of the size the compositor configured (the surface's current extent must be 0xFFFFFFFF:
 * a Wayland surface takes the swapchain's size), FRAMES frames as window.c draws them (each cleared to a colour
 * of its own, with a 16x8 gradient copied to (10 + f % 20, 10)), presented in MODE (fifo|mailbox). After the last
 * present the output is read back through Weston's screenshooter (weston --debug) on the same connection, so the
 * compositor has every commit the driver made before the shot, and written to SHOT as a binary PPM.
 * Prints `frames: N, size WxH, mode M, frames/s F`.
 * Usage: wayland FRAMES SHOT.ppm [fifo|mailbox]
 * Build: wayland-scanner client-header/private-code of xdg-shell.xml into xdg-shell-client-protocol.h and
 * xdg-shell-protocol.c (tests/GuestIcd.Tests/WaylandPresentationTests.cs does), then cc ... -lwayland-client -lvulkan. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <wayland-client.h>
#include "xdg-shell-client-protocol.h"
#define VK_USE_PLATFORM_WAYLAND_KHR
#include <vulkan/vulkan.h>
#include "present_kit.h"

#define CHECK(call) do { VkResult r_ = (call); if (r_ != VK_SUCCESS) { \
    fprintf(stderr, "FAILED %s = %d (line %d)\n", #call, r_, __LINE__); exit(1); } } while (0)
#define FAIL(...) do { fprintf(stderr, "FAILED: " __VA_ARGS__); fprintf(stderr, "\n"); exit(1); } while (0)

enum { RW = 16, RH = 8, GX = 10, GY = 10 };

/* weston_screenshooter (weston's protocol/weston-screenshooter.xml, version 1): shoot(output, buffer) and done.
 * Declared here rather than generated: the XML ships with weston's sources only. */
static const struct wl_interface *shooter_types[] = { &wl_output_interface, &wl_buffer_interface };
static const struct wl_message shooter_requests[] = { { "shoot", "oo", shooter_types } };
static const struct wl_message shooter_events[] = { { "done", "", NULL } };
static const struct wl_interface weston_screenshooter_interface = { "weston_screenshooter", 1, 1, shooter_requests, 1, shooter_events };

static struct wl_compositor *compositor;
static struct wl_shm *shm;
static struct wl_output *output;
static struct xdg_wm_base *wm_base;
static struct wl_proxy *shooter;
static int out_w, out_h, conf_w, conf_h, configured, shot_done;

static void global(void *data, struct wl_registry *reg, uint32_t name, const char *iface, uint32_t version)
{
    if (!strcmp(iface, "wl_compositor")) compositor = wl_registry_bind(reg, name, &wl_compositor_interface, version < 4 ? version : 4);
    else if (!strcmp(iface, "wl_shm")) shm = wl_registry_bind(reg, name, &wl_shm_interface, 1);
    else if (!strcmp(iface, "wl_output") && !output) output = wl_registry_bind(reg, name, &wl_output_interface, 1);
    else if (!strcmp(iface, "xdg_wm_base")) wm_base = wl_registry_bind(reg, name, &xdg_wm_base_interface, 1);
    else if (!strcmp(iface, "weston_screenshooter")) shooter = wl_registry_bind(reg, name, &weston_screenshooter_interface, 1);
}
static void global_remove(void *data, struct wl_registry *reg, uint32_t name) { }
static const struct wl_registry_listener registry_listener = { global, global_remove };

static void out_geometry(void *d, struct wl_output *o, int32_t x, int32_t y, int32_t pw, int32_t ph, int32_t sub, const char *make, const char *model, int32_t t) { }
static void out_mode(void *d, struct wl_output *o, uint32_t flags, int32_t w, int32_t h, int32_t refresh)
{
    if (flags & WL_OUTPUT_MODE_CURRENT) { out_w = w; out_h = h; }
}
static const struct wl_output_listener output_listener = { out_geometry, out_mode };

static void ping(void *d, struct xdg_wm_base *b, uint32_t serial) { xdg_wm_base_pong(b, serial); }
static const struct xdg_wm_base_listener wm_base_listener = { ping };
static void surface_configure(void *d, struct xdg_surface *s, uint32_t serial) { xdg_surface_ack_configure(s, serial); configured = 1; }
static const struct xdg_surface_listener xdg_surface_listener = { surface_configure };
static void toplevel_configure(void *d, struct xdg_toplevel *t, int32_t w, int32_t h, struct wl_array *states) { conf_w = w; conf_h = h; }
static void toplevel_close(void *d, struct xdg_toplevel *t) { }
static const struct xdg_toplevel_listener toplevel_listener = { toplevel_configure, toplevel_close };

static void shooter_done(void *d, struct wl_proxy *p) { shot_done = 1; }
static const struct { void (*done)(void *, struct wl_proxy *); } shooter_listener = { shooter_done };

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* The output as the compositor shows it, through a wl_shm buffer of its size. */
static void screenshot(struct wl_display *display, const char *path)
{
    if (!shooter) FAIL("the compositor offers no weston_screenshooter (weston --debug)");
    int stride = out_w * 4, size = stride * out_h;
    int fd = memfd_create("shot", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, size) != 0) FAIL("no shared memory for the screenshot");
    uint8_t *px = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (px == MAP_FAILED) FAIL("mmap");
    struct wl_shm_pool *pool = wl_shm_create_pool(shm, fd, size);
    struct wl_buffer *buffer = wl_shm_pool_create_buffer(pool, 0, out_w, out_h, stride, WL_SHM_FORMAT_XRGB8888);
    wl_shm_pool_destroy(pool);
    close(fd);
    wl_proxy_add_listener(shooter, (void (**)(void))&shooter_listener, NULL);
    wl_proxy_marshal_flags(shooter, 0, NULL, 1, 0, output, buffer);
    while (!shot_done) if (wl_display_dispatch(display) < 0) FAIL("the compositor connection failed during the screenshot");
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    fprintf(f, "P6\n%d %d\n255\n", out_w, out_h);
    for (int y = 0; y < out_h; y++)
        for (int x = 0; x < out_w; x++)
        {
            const uint8_t *p = px + y * stride + x * 4;
            uint8_t rgb[3] = { p[2], p[1], p[0] };
            fwrite(rgb, 1, 3, f);
        }
    fclose(f);
    wl_buffer_destroy(buffer);
    munmap(px, size);
}

int main(int argc, char **argv)
{
    if (argc < 3) { fprintf(stderr, "usage: wayland FRAMES SHOT.ppm [fifo|mailbox]\n"); return 2; }
    int frames = atoi(argv[1]);
    const char *shot = argv[2];
    int mailbox = argc > 3 && !strcmp(argv[3], "mailbox");
    VkPresentModeKHR mode = mailbox ? VK_PRESENT_MODE_MAILBOX_KHR : VK_PRESENT_MODE_FIFO_KHR;

    struct wl_display *display = wl_display_connect(NULL);
    if (!display) FAIL("no Wayland display (WAYLAND_DISPLAY, XDG_RUNTIME_DIR)");
    struct wl_registry *registry = wl_display_get_registry(display);
    wl_registry_add_listener(registry, &registry_listener, NULL);
    wl_display_roundtrip(display);
    if (!compositor || !shm || !output || !wm_base) FAIL("the compositor lacks wl_compositor, wl_shm, wl_output or xdg_wm_base");
    wl_output_add_listener(output, &output_listener, NULL);
    xdg_wm_base_add_listener(wm_base, &wm_base_listener, NULL);
    wl_display_roundtrip(display);

    struct wl_surface *wl_surface = wl_compositor_create_surface(compositor);
    struct xdg_surface *xdg_surface = xdg_wm_base_get_xdg_surface(wm_base, wl_surface);
    xdg_surface_add_listener(xdg_surface, &xdg_surface_listener, NULL);
    struct xdg_toplevel *toplevel = xdg_surface_get_toplevel(xdg_surface);
    xdg_toplevel_add_listener(toplevel, &toplevel_listener, NULL);
    xdg_toplevel_set_title(toplevel, "guesticd-wayland");
    xdg_toplevel_set_fullscreen(toplevel, output);
    wl_surface_commit(wl_surface);
    while (!configured) if (wl_display_dispatch(display) < 0) FAIL("no configure from the compositor");
    uint32_t w = conf_w > 0 ? (uint32_t)conf_w : (uint32_t)out_w, h = conf_h > 0 ? (uint32_t)conf_h : (uint32_t)out_h;
    if (!w || !h) FAIL("the compositor gave no size");

    const char *iexts[] = { "VK_KHR_surface", "VK_KHR_wayland_surface" };
    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .apiVersion = VK_API_VERSION_1_1 };
    VkInstanceCreateInfo ici = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app, .enabledExtensionCount = 2, .ppEnabledExtensionNames = iexts };
    VkInstance instance;
    CHECK(vkCreateInstance(&ici, NULL, &instance));
    uint32_t pdc = 1;
    VkPhysicalDevice pd;
    VkResult er = vkEnumeratePhysicalDevices(instance, &pdc, &pd);
    if (er < 0 || pdc == 0) FAIL("no physical device");
    VkWaylandSurfaceCreateInfoKHR wci = { .sType = VK_STRUCTURE_TYPE_WAYLAND_SURFACE_CREATE_INFO_KHR, .display = display, .surface = wl_surface };
    VkSurfaceKHR surface;
    CHECK(vkCreateWaylandSurfaceKHR(instance, &wci, NULL, &surface));
    if (!vkGetPhysicalDeviceWaylandPresentationSupportKHR(pd, 0, display)) FAIL("no Wayland presentation support");
    VkBool32 supported = VK_FALSE;
    CHECK(vkGetPhysicalDeviceSurfaceSupportKHR(pd, 0, surface, &supported));
    if (!supported) FAIL("queue family 0 cannot present");
    VkSurfaceCapabilitiesKHR caps;
    CHECK(vkGetPhysicalDeviceSurfaceCapabilitiesKHR(pd, surface, &caps));
    if (caps.currentExtent.width != 0xFFFFFFFFu || caps.currentExtent.height != 0xFFFFFFFFu)
        FAIL("current extent %ux%u: a Wayland surface has none (0xFFFFFFFF)", caps.currentExtent.width, caps.currentExtent.height);
    if (w < caps.minImageExtent.width || w > caps.maxImageExtent.width || h < caps.minImageExtent.height || h > caps.maxImageExtent.height)
        FAIL("%ux%u outside the surface's extents", w, h);
    VkPresentModeKHR modes[8];
    uint32_t nmodes = 8;
    CHECK(vkGetPhysicalDeviceSurfacePresentModesKHR(pd, surface, &nmodes, modes));
    int has_fifo = 0, has_mode = 0;
    for (uint32_t i = 0; i < nmodes; i++) { has_fifo |= modes[i] == VK_PRESENT_MODE_FIFO_KHR; has_mode |= modes[i] == mode; }
    if (!has_fifo || !has_mode) FAIL("the surface lacks FIFO or the mode asked for");
    VkSurfaceFormatKHR formats[8];
    uint32_t nformats = 8;
    CHECK(vkGetPhysicalDeviceSurfaceFormatsKHR(pd, surface, &nformats, formats));
    int has_unorm = 0;
    for (uint32_t i = 0; i < nformats; i++) has_unorm |= formats[i].format == VK_FORMAT_B8G8R8A8_UNORM;
    if (!has_unorm) FAIL("the surface lacks B8G8R8A8_UNORM");

    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = 0, .queueCount = 1, .pQueuePriorities = &prio };
    const char *dexts[] = { "VK_KHR_swapchain" };
    VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1, .pQueueCreateInfos = &qci,
                               .enabledExtensionCount = 1, .ppEnabledExtensionNames = dexts };
    VkDevice device;
    CHECK(vkCreateDevice(pd, &dci, NULL, &device));
    VkQueue queue;
    vkGetDeviceQueue(device, 0, 0, &queue);
    uint32_t n = caps.minImageCount < 3 ? 3 : caps.minImageCount;
    if (caps.maxImageCount && n > caps.maxImageCount) n = caps.maxImageCount;
    VkSwapchainCreateInfoKHR sci = { .sType = VK_STRUCTURE_TYPE_SWAPCHAIN_CREATE_INFO_KHR, .surface = surface,
        .minImageCount = n, .imageFormat = VK_FORMAT_B8G8R8A8_UNORM, .imageColorSpace = VK_COLOR_SPACE_SRGB_NONLINEAR_KHR,
        .imageExtent = { w, h }, .imageArrayLayers = 1, .imageUsage = VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT | VK_IMAGE_USAGE_TRANSFER_DST_BIT,
        .imageSharingMode = VK_SHARING_MODE_EXCLUSIVE, .preTransform = VK_SURFACE_TRANSFORM_IDENTITY_BIT_KHR,
        .compositeAlpha = VK_COMPOSITE_ALPHA_OPAQUE_BIT_KHR, .presentMode = mode, .clipped = VK_TRUE };
    VkSwapchainKHR swapchain;
    CHECK(vkCreateSwapchainKHR(device, &sci, NULL, &swapchain));
    VkImage images[16];
    uint32_t image_count = 16;
    CHECK(vkGetSwapchainImagesKHR(device, swapchain, &image_count, images));

    kit_frames fr;
    CHECK(kit_frames_create(pd, device, 0, RW, RH, &fr));
    double start = now_s();
    for (int f = 0; f < frames; f++)
    {
        uint32_t idx;
        CHECK(vkAcquireNextImageKHR(device, swapchain, UINT64_MAX, fr.acquired, VK_NULL_HANDLE, &idx));
        CHECK(kit_record_frame(&fr, images[idx], f, GX, GY, RW, RH));
        VkPipelineStageFlags stage = VK_PIPELINE_STAGE_TRANSFER_BIT;
        VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .waitSemaphoreCount = 1, .pWaitSemaphores = &fr.acquired, .pWaitDstStageMask = &stage,
                            .commandBufferCount = 1, .pCommandBuffers = &fr.cmd, .signalSemaphoreCount = 1, .pSignalSemaphores = &fr.rendered };
        CHECK(vkQueueSubmit(queue, 1, &si, fr.done));
        VkPresentInfoKHR pi = { .sType = VK_STRUCTURE_TYPE_PRESENT_INFO_KHR, .waitSemaphoreCount = 1, .pWaitSemaphores = &fr.rendered,
                                .swapchainCount = 1, .pSwapchains = &swapchain, .pImageIndices = &idx };
        CHECK(vkQueuePresentKHR(queue, &pi));
        CHECK(vkWaitForFences(device, 1, &fr.done, VK_TRUE, UINT64_MAX));
        CHECK(vkResetFences(device, 1, &fr.done));
    }
    double secs = now_s() - start;
    CHECK(vkDeviceWaitIdle(device));
    printf("frames: %d, size %ux%u, mode %s, frames/s %.1f\n", frames, w, h, mailbox ? "mailbox" : "fifo", frames / secs);
    fflush(stdout);
    /* Before the swapchain goes: its buffers are what the compositor shows. */
    screenshot(display, shot);

    vkDestroySwapchainKHR(device, swapchain, NULL);
    kit_frames_destroy(device, &fr);
    vkDestroyDevice(device, NULL);
    vkDestroySurfaceKHR(instance, surface, NULL);
    vkDestroyInstance(instance, NULL);
    xdg_toplevel_destroy(toplevel);
    xdg_surface_destroy(xdg_surface);
    wl_surface_destroy(wl_surface);
    wl_display_disconnect(display);
    printf("done\n");
    return 0;
}
