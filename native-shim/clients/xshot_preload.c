/* LD_PRELOAD helper for the presentation tests and the demo: when an application destroys an X window with
 * xcb_destroy_window and GUESTICD_SHOT=FILE is set, the window's contents are first read back from the X
 * server (xcb_get_image, which also waits until the server has run every earlier request of the connection,
 * the last present included) and written to FILE as a binary PPM. So a screenshot shows exactly the last frame an
 * application such as `vkcube --c N` presented, whichever driver presented it.
 * Build: cc -shared -fPIC -o xshot.so xshot_preload.c -ldl -lxcb */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <xcb/xcb.h>

static void shoot(xcb_connection_t *c, xcb_window_t window, const char *path)
{
    xcb_get_geometry_reply_t *g = xcb_get_geometry_reply(c, xcb_get_geometry(c, window), NULL);
    if (!g) { fprintf(stderr, "xshot: window 0x%x has no geometry\n", window); return; }
    uint16_t w = g->width, h = g->height;
    free(g);
    xcb_get_image_reply_t *img = xcb_get_image_reply(c, xcb_get_image(c, XCB_IMAGE_FORMAT_Z_PIXMAP, window, 0, 0, w, h, ~0u), NULL);
    if (!img) { fprintf(stderr, "xshot: no image of window 0x%x\n", window); return; }
    const uint8_t *px = xcb_get_image_data(img);
    int len = xcb_get_image_data_length(img);
    if (len < w * h * 4) { fprintf(stderr, "xshot: %d bytes for %ux%u (not 32 bpp)\n", len, w, h); free(img); return; }
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); free(img); return; }
    fprintf(f, "P6\n%u %u\n255\n", w, h);
    for (int i = 0; i < w * h; i++)
    {
        /* 24-bit TrueColor in 32 bits per pixel, little-endian: B, G, R, X. */
        uint8_t rgb[3] = { px[i * 4 + 2], px[i * 4 + 1], px[i * 4 + 0] };
        fwrite(rgb, 1, 3, f);
    }
    fclose(f);
    free(img);
    fprintf(stderr, "xshot: window 0x%x (%ux%u) written to %s\n", window, w, h, path);
}

xcb_void_cookie_t xcb_destroy_window(xcb_connection_t *c, xcb_window_t window)
{
    static xcb_void_cookie_t (*real)(xcb_connection_t *, xcb_window_t);
    if (!real) real = (xcb_void_cookie_t (*)(xcb_connection_t *, xcb_window_t))dlsym(RTLD_NEXT, "xcb_destroy_window");
    const char *path = getenv("GUESTICD_SHOT");
    if (path && *path) shoot(c, window, path);
    return real(c, window);
}
