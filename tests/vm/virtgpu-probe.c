// virtgpu-probe: what a guest sees of a virtio-gpu device through the kernel's DRM UAPI only
// (virtgpu_drm.h of Linux 6.1; the structs are spelled out here so no libdrm headers are needed).
// Prints key=value lines: the GETPARAMs, the GuestIcd capset (GET_CAPS), then a context of that capset
// (CONTEXT_INIT when offered), a buffer resource mapped and written, and an EXECBUFFER with an out-fence
// that it waits for. Exit status 0 when every step worked, else the number of the failed step.
//
//   cc -O2 -o out/vm/tools/virtgpu-probe tests/vm/virtgpu-probe.c
//   virtgpu-probe [/dev/dri/renderD128]
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define DRM_IOCTL_BASE 'd'
#define DRM_COMMAND_BASE 0x40
#define DRM_IOWR(nr, type) _IOWR(DRM_IOCTL_BASE, nr, type)

struct drm_virtgpu_map { uint64_t offset; uint32_t handle; uint32_t pad; };
struct drm_virtgpu_execbuffer {
    uint32_t flags, size; uint64_t command, bo_handles; uint32_t num_bo_handles; int32_t fence_fd;
    uint32_t ring_idx, pad;
};
struct drm_virtgpu_getparam { uint64_t param, value; };
struct drm_virtgpu_resource_create {
    uint32_t target, format, bind, width, height, depth, array_size, last_level, nr_samples, flags, bo_handle, res_handle, size, stride;
};
struct drm_virtgpu_3d_wait { uint32_t handle, flags; };
struct drm_virtgpu_get_caps { uint32_t cap_set_id, cap_set_ver; uint64_t addr; uint32_t size, pad; };
struct drm_virtgpu_context_set_param { uint64_t param, value; };
struct drm_virtgpu_context_init { uint32_t num_params, pad; uint64_t ctx_set_params; };

#define IOCTL_MAP DRM_IOWR(DRM_COMMAND_BASE + 0x01, struct drm_virtgpu_map)
#define IOCTL_EXECBUFFER DRM_IOWR(DRM_COMMAND_BASE + 0x02, struct drm_virtgpu_execbuffer)
#define IOCTL_GETPARAM DRM_IOWR(DRM_COMMAND_BASE + 0x03, struct drm_virtgpu_getparam)
#define IOCTL_RESOURCE_CREATE DRM_IOWR(DRM_COMMAND_BASE + 0x04, struct drm_virtgpu_resource_create)
#define IOCTL_WAIT DRM_IOWR(DRM_COMMAND_BASE + 0x08, struct drm_virtgpu_3d_wait)
#define IOCTL_GET_CAPS DRM_IOWR(DRM_COMMAND_BASE + 0x09, struct drm_virtgpu_get_caps)
#define IOCTL_CONTEXT_INIT DRM_IOWR(DRM_COMMAND_BASE + 0x0b, struct drm_virtgpu_context_init)

#define EXECBUF_FENCE_FD_OUT 0x02
#define EXECBUF_RING_IDX 0x04
#define GUESTICD_CAPSET 24

static const char *params[] = { "", "3d_features", "capset_query_fix", "resource_blob", "host_visible", "cross_device", "context_init", "supported_capset_ids" };

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : NULL;
    glob_t g;
    if (!path) {
        if (glob("/dev/dri/renderD*", 0, NULL, &g) != 0 || g.gl_pathc == 0) { printf("render_node=none\n"); return 1; }
        path = g.gl_pathv[0];
    }
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) { printf("render_node=%s open_error=%s\n", path, strerror(errno)); return 1; }
    printf("render_node=%s\n", path);
    uint64_t value[8] = {0};
    for (int p = 1; p <= 7; p++) {
        struct drm_virtgpu_getparam gp = { p, (uint64_t)(uintptr_t)&value[p] };
        if (ioctl(fd, IOCTL_GETPARAM, &gp) == 0) printf("param_%s=%llu\n", params[p], (unsigned long long)value[p]);
        else printf("param_%s=error:%s\n", params[p], strerror(errno));
    }

    unsigned char caps[64] = {0};
    struct drm_virtgpu_get_caps gc = { GUESTICD_CAPSET, 1, (uint64_t)(uintptr_t)caps, sizeof caps, 0 };
    if (ioctl(fd, IOCTL_GET_CAPS, &gc) != 0) { printf("get_caps=error:%s\n", strerror(errno)); return 2; }
    uint32_t magic; uint16_t major, minor;
    memcpy(&magic, caps, 4); memcpy(&major, caps + 8, 2); memcpy(&minor, caps + 10, 2);
    printf("capset_magic=%.4s\ncapset_protocol=%u.%u\ncapset_identity=%.48s\n", (char *)caps, major, minor, (char *)caps + 16);
    if (magic != 0x44434947) return 2;

    if (value[6]) {
        struct drm_virtgpu_context_set_param sp[2] = { { 1 /* CAPSET_ID */, GUESTICD_CAPSET }, { 2 /* NUM_RINGS */, 1 } };
        struct drm_virtgpu_context_init ci = { 2, 0, (uint64_t)(uintptr_t)sp };
        if (ioctl(fd, IOCTL_CONTEXT_INIT, &ci) != 0) { printf("context_init=error:%s\n", strerror(errno)); return 3; }
        printf("context_init=ok\n");
    } else {
        printf("context_init=implicit\n");
    }

    struct drm_virtgpu_resource_create rc = { .target = 0, .format = 64, .bind = 0x10, .width = 65536, .height = 1, .depth = 1, .array_size = 1, .size = 65536, .stride = 65536 };
    if (ioctl(fd, IOCTL_RESOURCE_CREATE, &rc) != 0) { printf("resource_create=error:%s\n", strerror(errno)); return 4; }
    struct drm_virtgpu_map mp = { .handle = rc.bo_handle };
    if (ioctl(fd, IOCTL_MAP, &mp) != 0) { printf("map=error:%s\n", strerror(errno)); return 4; }
    unsigned char *m = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)mp.offset);
    if (m == MAP_FAILED) { printf("mmap=error:%s\n", strerror(errno)); return 4; }
    for (int i = 0; i < 65536; i++) m[i] = (unsigned char)i;
    printf("resource=%u bo=%u mapped=65536\n", rc.res_handle, rc.bo_handle);

    unsigned char cmd[4] = { 0 }; // GuestIcd's NOP: a fence and nothing else
    uint32_t bo = rc.bo_handle;
    struct drm_virtgpu_execbuffer eb = { .flags = EXECBUF_FENCE_FD_OUT | (value[6] ? EXECBUF_RING_IDX : 0), .size = sizeof cmd,
        .command = (uint64_t)(uintptr_t)cmd, .bo_handles = (uint64_t)(uintptr_t)&bo, .num_bo_handles = 1, .fence_fd = -1, .ring_idx = 0 };
    if (ioctl(fd, IOCTL_EXECBUFFER, &eb) != 0) { printf("execbuffer=error:%s\n", strerror(errno)); return 5; }
    struct pollfd pf = { eb.fence_fd, POLLIN, 0 };
    int r = poll(&pf, 1, 5000);
    printf("execbuffer=ok fence_signaled=%s\n", r == 1 ? "yes" : "no");
    if (r != 1) return 5;
    struct drm_virtgpu_3d_wait w = { bo, 0 };
    if (ioctl(fd, IOCTL_WAIT, &w) != 0) { printf("wait=error:%s\n", strerror(errno)); return 6; }
    printf("wait=ok\n");
    return 0;
}
