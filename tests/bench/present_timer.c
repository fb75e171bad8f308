/* LD_PRELOAD timer for the presentation benchmark (tests/bench/present.sh): wraps the application's
 * vkQueuePresentKHR, found the way vkcube finds it (vkGetInstanceProcAddr -> vkGetDeviceProcAddr), and at exit
 * prints `present: n=N fps=F mean=M median=D p99=P` (milliseconds between consecutive presents' returns; frames/s
 * from the first to the last present, so start-up and teardown are not counted). The same wrapper for
 * every driver, so native and ICD figures are measured alike.
 * Build: cc -shared -fPIC -O2 -o present_timer.so present_timer.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vulkan/vulkan.h>

enum { MAX = 100000 };
static double stamps[MAX];
static int n;
static PFN_vkQueuePresentKHR real_present;
static PFN_vkGetDeviceProcAddr real_gdpa;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static VKAPI_ATTR VkResult VKAPI_CALL timed_present(VkQueue q, const VkPresentInfoKHR *info)
{
    VkResult r = real_present(q, info);
    if (n < MAX) stamps[n++] = now_ms();
    return r;
}

static VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL wrapped_gdpa(VkDevice d, const char *name)
{
    PFN_vkVoidFunction f = real_gdpa(d, name);
    if (f && !strcmp(name, "vkQueuePresentKHR")) { real_present = (PFN_vkQueuePresentKHR)f; return (PFN_vkVoidFunction)timed_present; }
    return f;
}

VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL vkGetInstanceProcAddr(VkInstance i, const char *name)
{
    static PFN_vkGetInstanceProcAddr real;
    if (!real) real = (PFN_vkGetInstanceProcAddr)dlsym(RTLD_NEXT, "vkGetInstanceProcAddr");
    PFN_vkVoidFunction f = real(i, name);
    if (f && !strcmp(name, "vkGetDeviceProcAddr")) { real_gdpa = (PFN_vkGetDeviceProcAddr)f; return (PFN_vkVoidFunction)wrapped_gdpa; }
    if (f && !strcmp(name, "vkQueuePresentKHR")) { real_present = (PFN_vkQueuePresentKHR)f; return (PFN_vkVoidFunction)timed_present; }
    return f;
}

static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

__attribute__((destructor)) static void report(void)
{
    if (n < 3) { fprintf(stderr, "present: n=%d (too few to time)\n", n); return; }
    int k = n - 1;
    double *d = malloc(sizeof(double) * k), sum = 0;
    for (int i = 0; i < k; i++) { d[i] = stamps[i + 1] - stamps[i]; sum += d[i]; }
    qsort(d, k, sizeof *d, cmp);
    fprintf(stderr, "present: n=%d fps=%.1f mean=%.3f median=%.3f p99=%.3f\n", n, k * 1000.0 / (stamps[n - 1] - stamps[0]), sum / k, d[k / 2], d[k * 99 / 100]);
    free(d);
}
