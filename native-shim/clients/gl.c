/* An OpenGL client (GLX on X11), for OpenGL through Zink on the ICD. Draws one scene twice: into an offscreen
 * framebuffer object (RGBA8 texture + depth renderbuffer, 128x96), read back with glReadPixels, and into a 160x120
 * window, shown with glXSwapBuffers and read back from the X server (with MESA_LOADER_DRIVER_OVERRIDE=zink, Zink's
 * kopper presents through a VkSwapchain on an xcb surface). The scene: a clear colour, two triangles
 * whose depths cross (depth test), and a half-transparent triangle blended over them. Writes PREFIX-fbo.ppm and
 * PREFIX-window.ppm (binary PPM, top row first) and prints the renderer and `fbo: N colours, window: N colours`.
 * Usage: gl PREFIX */
#define GL_GLEXT_PROTOTYPES
#define _POSIX_C_SOURCE 200809L
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <GL/gl.h>
#include <GL/glext.h>
#include <GL/glx.h>
#include <X11/Xlib.h>
#include <X11/Xutil.h>

#define FAIL(...) do { fprintf(stderr, "FAILED: " __VA_ARGS__); fprintf(stderr, "\n"); exit(1); } while (0)

static void scene(int w, int h)
{
    glViewport(0, 0, w, h);
    glClearColor(0.15f, 0.2f, 0.35f, 1.0f);
    glClearDepth(1.0);
    glClear(GL_COLOR_BUFFER_BIT | GL_DEPTH_BUFFER_BIT);
    glEnable(GL_DEPTH_TEST);
    glDepthFunc(GL_LESS);
    glDisable(GL_BLEND);
    glBegin(GL_TRIANGLES);
    glColor3f(0.9f, 0.1f, 0.1f); glVertex3f(-0.9f, -0.8f, -0.5f); glVertex3f(0.8f, -0.6f, 0.5f); glVertex3f(-0.2f, 0.9f, 0.0f);
    glColor3f(0.1f, 0.8f, 0.2f); glVertex3f(0.9f, -0.9f, -0.5f); glVertex3f(-0.7f, 0.1f, 0.5f); glVertex3f(0.6f, 0.85f, 0.0f);
    glEnd();
    glDisable(GL_DEPTH_TEST);
    glEnable(GL_BLEND);
    glBlendFunc(GL_SRC_ALPHA, GL_ONE_MINUS_SRC_ALPHA);
    glBegin(GL_TRIANGLES);
    glColor4f(0.2f, 0.3f, 1.0f, 0.5f); glVertex2f(-0.5f, -0.5f); glVertex2f(0.5f, -0.5f); glVertex2f(0.0f, 0.6f);
    glEnd();
    glDisable(GL_BLEND);
}

static int write_ppm(const char *path, const unsigned char *px, int w, int h, int stride, int bgrx, int bottom_up)
{
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    fprintf(f, "P6\n%d %d\n255\n", w, h);
    int colours = 0;
    static unsigned char seen[1 << 21];
    memset(seen, 0, sizeof seen);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
        {
            const unsigned char *p = px + (bottom_up ? h - 1 - y : y) * stride + x * 4;
            unsigned char rgb[3] = { bgrx ? p[2] : p[0], p[1], bgrx ? p[0] : p[2] };
            fwrite(rgb, 1, 3, f);
            unsigned key = (unsigned)rgb[0] << 16 | (unsigned)rgb[1] << 8 | rgb[2];
            if (!(seen[key >> 3] & (1 << (key & 7)))) { seen[key >> 3] |= (unsigned char)(1 << (key & 7)); colours++; }
        }
    fclose(f);
    return colours;
}

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: gl PREFIX\n"); return 2; }
    char path[4096];
    Display *dpy = XOpenDisplay(NULL);
    if (!dpy) FAIL("no X display");
    int attrs[] = { GLX_RGBA, GLX_DOUBLEBUFFER, GLX_RED_SIZE, 8, GLX_GREEN_SIZE, 8, GLX_BLUE_SIZE, 8, GLX_DEPTH_SIZE, 24, None };
    XVisualInfo *vi = glXChooseVisual(dpy, DefaultScreen(dpy), attrs);
    if (!vi) FAIL("no RGBA double-buffered visual with depth");
    XSetWindowAttributes swa = { .colormap = XCreateColormap(dpy, RootWindow(dpy, vi->screen), vi->visual, AllocNone), .background_pixel = 0 };
    Window win = XCreateWindow(dpy, RootWindow(dpy, vi->screen), 0, 0, 160, 120, 0, vi->depth, InputOutput, vi->visual, CWColormap | CWBackPixel, &swa);
    XMapWindow(dpy, win);
    XSync(dpy, False);
    GLXContext ctx = glXCreateContext(dpy, vi, NULL, True);
    if (!ctx || !glXMakeCurrent(dpy, win, ctx)) FAIL("no GL context");
    printf("renderer: %s\nversion: %s\n", (const char *)glGetString(GL_RENDERER), (const char *)glGetString(GL_VERSION));

    /* Offscreen: an FBO. */
    enum { FW = 128, FH = 96 };
    GLuint fbo, tex, depth;
    glGenFramebuffers(1, &fbo);
    glBindFramebuffer(GL_FRAMEBUFFER, fbo);
    glGenTextures(1, &tex);
    glBindTexture(GL_TEXTURE_2D, tex);
    glTexImage2D(GL_TEXTURE_2D, 0, GL_RGBA8, FW, FH, 0, GL_RGBA, GL_UNSIGNED_BYTE, NULL);
    glFramebufferTexture2D(GL_FRAMEBUFFER, GL_COLOR_ATTACHMENT0, GL_TEXTURE_2D, tex, 0);
    glGenRenderbuffers(1, &depth);
    glBindRenderbuffer(GL_RENDERBUFFER, depth);
    glRenderbufferStorage(GL_RENDERBUFFER, GL_DEPTH_COMPONENT24, FW, FH);
    glFramebufferRenderbuffer(GL_FRAMEBUFFER, GL_DEPTH_ATTACHMENT, GL_RENDERBUFFER, depth);
    if (glCheckFramebufferStatus(GL_FRAMEBUFFER) != GL_FRAMEBUFFER_COMPLETE) FAIL("incomplete framebuffer");
    scene(FW, FH);
    static unsigned char fbpx[FW * FH * 4];
    glReadPixels(0, 0, FW, FH, GL_RGBA, GL_UNSIGNED_BYTE, fbpx);
    snprintf(path, sizeof path, "%s-fbo.ppm", argv[1]);
    int fc = write_ppm(path, fbpx, FW, FH, FW * 4, 0, 1);

    /* On the window. */
    glBindFramebuffer(GL_FRAMEBUFFER, 0);
    scene(160, 120);
    glXSwapBuffers(dpy, win);
    glFinish();
    XSync(dpy, False);
    /* Zink's kopper presents from its own thread: wait (up to 5 s) until the window is no longer only its
     * background. The scene is static, so whichever read shows it shows all of it. */
    XImage *img = NULL;
    for (int tries = 0; tries < 250; tries++)
    {
        if (img) XDestroyImage(img);
        img = XGetImage(dpy, win, 0, 0, 160, 120, AllPlanes, ZPixmap);
        if (!img || img->bits_per_pixel != 32) FAIL("no 32-bit image of the window");
        unsigned first = *(unsigned *)img->data;
        int drawn = 0;
        for (int i = 0; i < 160 * 120 && !drawn; i++) drawn = ((unsigned *)img->data)[i] != first;
        if (drawn) break;
        struct timespec t = { 0, 20000000L };
        nanosleep(&t, NULL);
    }
    snprintf(path, sizeof path, "%s-window.ppm", argv[1]);
    int wc = write_ppm(path, (unsigned char *)img->data, 160, 120, img->bytes_per_line, 1, 0);
    XDestroyImage(img);
    GLenum err = glGetError();
    if (err != GL_NO_ERROR) FAIL("GL error 0x%x", err);
    printf("fbo: %d colours, window: %d colours\n", fc, wc);

    glXMakeCurrent(dpy, None, NULL);
    glXDestroyContext(dpy, ctx);
    XDestroyWindow(dpy, win);
    XCloseDisplay(dpy);
    printf("done\n");
    return 0;
}
