/* GuestIcd benchmark: one Vulkan program, run once on native lavapipe and once through the ICD + hostsim
 * (tests/bench/run.sh does both and prints the comparison table). Not a test: it measures and prints.
 *
 * Usage:
 *   bench --list                 one line per metric: metric-info<TAB>group<TAB>name<TAB>unit<TAB>better<TAB>target<TAB>label
 *   bench --groups               the metric groups, one per line (run.sh runs each in its own process)
 *   bench GROUP SHADER_DIR       run one group; SHADER_DIR holds fma.comp.spv and noop.vert.spv
 *
 * Output of a group run, one line per metric:
 *   metric<TAB>name<TAB>unit<TAB>median<TAB>n=..,min=..,max=..
 *   metric<TAB>name<TAB>unit<TAB>n/a<TAB>reason
 *
 * Every number is the median of repeated measurements (clock_gettime(CLOCK_MONOTONIC)) after warm-up
 * rounds that are not counted. Sizes and repetitions can be overridden by environment variables (BENCH_*,
 * listed in README.md). A failing Vulkan call makes its metric print "n/a (vkCall returned VK_...)" and the
 * program goes on with the next metric. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vulkan/vulkan.h>

/* ---------------------------------------------------------------- metric table */

typedef struct {
    const char *group, *name, *unit;
    const char *better; /* "lower" or "higher" */
    const char *target; /* "<=1.2" / ">=0.9": the ratio ICD/native the issues ask for (issue 11 point 2 for creation, submits, submit + wait); "-" for none */
    const char *label;
} MetricInfo;

static const MetricInfo METRICS[] = {
    { "create", "create_first_ms", "ms", "lower", "-", "first instance+device creation (loader + driver load)" },
    { "create", "create_ms", "ms", "lower", "<=1.5", "instance + device creation" },
    { "submit", "submit_empty_rt_us", "us", "lower", "<=1.2", "empty vkQueueSubmit + vkWaitForFences" },
    { "submit", "submit_emptycb_rt_us", "us", "lower", "-", "submit of an empty command buffer + wait" },
    { "submit", "queue_wait_idle_us", "us", "lower", "-", "vkQueueWaitIdle on an idle queue (the ICD: one empty round trip)" },
    { "query", "fence_status_pending_us", "us", "lower", "-", "vkGetFenceStatus on a pending fence" },
    { "query", "semaphore_counter_us", "us", "lower", "-", "vkGetSemaphoreCounterValue (timeline)" },
    { "query", "image_format_props_us", "us", "lower", "-", "vkGetPhysicalDeviceImageFormatProperties" },
    { "record", "record_dispatch_ns", "ns", "lower", "<=0.5", "record vkCmdDispatch" },
    { "record", "record_draw_ns", "ns", "lower", "<=0.5", "record vkCmdDraw" },
    { "record", "record_bind_sets_ns", "ns", "lower", "<=0.5", "record vkCmdBindDescriptorSets" },
    { "record", "record_barrier_ns", "ns", "lower", "<=0.5", "record vkCmdPipelineBarrier" },
    { "record", "record_dispatch_begin_end_ns", "ns", "lower", "-", "vkCmdDispatch incl. begin/end, per cmd" },
    { "submits", "submits_per_s", "1/s", "higher", ">=0.95", "submits/s (100 small dispatches each)" },
    { "threads", "record_rate_1t_mps", "M cmd/s", "higher", "-", "recording rate per thread, 1 thread (vkCmdDispatch incl. begin/end)" },
    { "threads", "record_rate_2t_mps", "M cmd/s", "higher", "-", "recording rate per thread, 2 threads, two pools" },
    { "frames", "frames_100cb_per_s", "1/s", "higher", "-", "frames/s: 100 command buffers recorded, ended, submitted per frame" },
    { "upload", "upload_gbps", "GB/s", "higher", ">=0.9", "upload: memcpy to mapping + vkCmdCopyBuffer + wait" },
    { "upload", "upload_memcpy_gbps", "GB/s", "higher", "-", "memcpy into the HOST_VISIBLE mapping alone" },
    { "compute", "compute_gflops", "GFLOP/s", "higher", ">=0.95", "GPU-bound FMA kernel throughput" },
};
#define METRIC_COUNT (sizeof METRICS / sizeof METRICS[0])

static const MetricInfo *metric(const char *name)
{
    for (size_t i = 0; i < METRIC_COUNT; i++)
        if (strcmp(METRICS[i].name, name) == 0) return &METRICS[i];
    fprintf(stderr, "bench: unknown metric %s\n", name);
    exit(3);
}

static void emit(const char *name, double *samples, int n);

static void emit_na(const char *name, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    for (char *p = reason; *p; p++) if (*p == '\t' || *p == '\n') *p = ' ';
    printf("metric\t%s\t%s\tn/a\t%s\n", name, metric(name)->unit, reason);
    fflush(stdout);
}

/* ---------------------------------------------------------------- helpers */

static long env_long(const char *name, long fallback)
{
    const char *v = getenv(name);
    if (!v || !*v) return fallback;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x <= 0) { fprintf(stderr, "bench: ignoring %s=%s (want a positive integer)\n", name, v); return fallback; }
    return x;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *s, int n)
{
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

static void emit(const char *name, double *samples, int n)
{
    if (n <= 0) { emit_na(name, "no samples"); return; }
    double m = median(samples, n); /* sorts */
    printf("metric\t%s\t%s\t%.6g\tn=%d,min=%.6g,max=%.6g\n", name, metric(name)->unit, m, n, samples[0], samples[n - 1]);
    fflush(stdout);
}

static const char *vkres(VkResult r)
{
    switch (r) {
#define C(x) case x: return #x;
    C(VK_SUCCESS) C(VK_NOT_READY) C(VK_TIMEOUT) C(VK_EVENT_SET) C(VK_EVENT_RESET) C(VK_INCOMPLETE)
    C(VK_ERROR_OUT_OF_HOST_MEMORY) C(VK_ERROR_OUT_OF_DEVICE_MEMORY) C(VK_ERROR_INITIALIZATION_FAILED)
    C(VK_ERROR_DEVICE_LOST) C(VK_ERROR_MEMORY_MAP_FAILED) C(VK_ERROR_LAYER_NOT_PRESENT)
    C(VK_ERROR_EXTENSION_NOT_PRESENT) C(VK_ERROR_FEATURE_NOT_PRESENT) C(VK_ERROR_INCOMPATIBLE_DRIVER)
    C(VK_ERROR_TOO_MANY_OBJECTS) C(VK_ERROR_FORMAT_NOT_SUPPORTED) C(VK_ERROR_FRAGMENTED_POOL) C(VK_ERROR_UNKNOWN)
#undef C
    default: return "VkResult(?)";
    }
}

/* The failure reason of the current metric: "vkFoo returned VK_ERROR_...", or a check that failed. */
static char g_reason[1024];

static void set_reason(const char *call, VkResult r)
{
    size_t len = strcspn(call, "(");
    snprintf(g_reason, sizeof g_reason, "%.*s returned %s (%d)", (int)len, call, vkres(r), (int)r);
}

/* TRY: inside a function returning int (1 = ok, 0 = failed, reason in g_reason). */
#define TRY(call) do { VkResult r_ = (call); if (r_ != VK_SUCCESS) { set_reason(#call, r_); return 0; } } while (0)
#define FAIL(...) do { snprintf(g_reason, sizeof g_reason, __VA_ARGS__); return 0; } while (0)

static uint64_t g_timeout_ns;

/* ---------------------------------------------------------------- context */

typedef struct {
    VkInstance instance;
    VkPhysicalDevice pd;
    VkDevice device;
    VkQueue queue;
    uint32_t family;
    VkPhysicalDeviceMemoryProperties mem;
} Ctx;

static int create_ctx(Ctx *c)
{
    memset(c, 0, sizeof *c);
    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .pApplicationName = "guesticd bench", .apiVersion = VK_API_VERSION_1_3 };
    VkInstanceCreateInfo ici = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app };
    TRY(vkCreateInstance(&ici, NULL, &c->instance));
    uint32_t n = 1;
    VkResult er = vkEnumeratePhysicalDevices(c->instance, &n, &c->pd);
    if ((er != VK_SUCCESS && er != VK_INCOMPLETE) || n == 0) { set_reason("vkEnumeratePhysicalDevices", er); return 0; }
    uint32_t qfCount = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(c->pd, &qfCount, NULL);
    VkQueueFamilyProperties qfs[16];
    if (qfCount > 16) qfCount = 16;
    vkGetPhysicalDeviceQueueFamilyProperties(c->pd, &qfCount, qfs);
    const VkQueueFlags want = VK_QUEUE_GRAPHICS_BIT | VK_QUEUE_COMPUTE_BIT;
    c->family = UINT32_MAX;
    for (uint32_t i = 0; i < qfCount; i++) if ((qfs[i].queueFlags & want) == want) { c->family = i; break; }
    if (c->family == UINT32_MAX) FAIL("no graphics+compute queue family");
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = c->family, .queueCount = 1, .pQueuePriorities = &prio };
    VkPhysicalDeviceVulkan12Features f12 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES, .timelineSemaphore = VK_TRUE };
    VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .pNext = &f12, .queueCreateInfoCount = 1, .pQueueCreateInfos = &qci };
    TRY(vkCreateDevice(c->pd, &dci, NULL, &c->device));
    vkGetDeviceQueue(c->device, c->family, 0, &c->queue);
    vkGetPhysicalDeviceMemoryProperties(c->pd, &c->mem);
    return 1;
}

static void destroy_ctx(Ctx *c)
{
    if (c->device) { vkDeviceWaitIdle(c->device); vkDestroyDevice(c->device, NULL); }
    if (c->instance) vkDestroyInstance(c->instance, NULL);
    memset(c, 0, sizeof *c);
}

/* A memory type with all of `want` and none of `avoid`; UINT32_MAX when there is none. */
static uint32_t find_memory(const Ctx *c, uint32_t bits, VkMemoryPropertyFlags want, VkMemoryPropertyFlags avoid)
{
    for (uint32_t i = 0; i < c->mem.memoryTypeCount; i++) {
        VkMemoryPropertyFlags f = c->mem.memoryTypes[i].propertyFlags;
        if ((bits & (1u << i)) && (f & want) == want && !(f & avoid)) return i;
    }
    return UINT32_MAX;
}

typedef struct {
    VkBuffer buffer;
    VkDeviceMemory memory;
    void *mapped; /* NULL unless host-visible */
    VkDeviceSize size;
} Buf;

/* host = 1: HOST_VISIBLE|HOST_COHERENT, mapped. host = 0: DEVICE_LOCAL, preferring a type that is not host-visible. */
static int create_buffer(const Ctx *c, Buf *b, VkDeviceSize size, VkBufferUsageFlags usage, int host)
{
    memset(b, 0, sizeof *b);
    b->size = size;
    VkBufferCreateInfo bci = { .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = size, .usage = usage };
    TRY(vkCreateBuffer(c->device, &bci, NULL, &b->buffer));
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(c->device, b->buffer, &req);
    uint32_t type;
    if (host) type = find_memory(c, req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, 0);
    else {
        type = find_memory(c, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT);
        if (type == UINT32_MAX) type = find_memory(c, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0);
        if (type == UINT32_MAX) type = find_memory(c, req.memoryTypeBits, 0, 0);
    }
    if (type == UINT32_MAX) FAIL("no suitable memory type for a %s buffer", host ? "host-visible" : "device-local");
    VkMemoryAllocateInfo mai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = req.size, .memoryTypeIndex = type };
    TRY(vkAllocateMemory(c->device, &mai, NULL, &b->memory));
    TRY(vkBindBufferMemory(c->device, b->buffer, b->memory, 0));
    fprintf(stderr, "bench: %s buffer of %llu bytes in memory type %u (property flags 0x%x)\n", host ? "host-visible" : "device-local",
            (unsigned long long)size, type, (unsigned)c->mem.memoryTypes[type].propertyFlags);
    if (c->mem.memoryTypes[type].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT)
        TRY(vkMapMemory(c->device, b->memory, 0, VK_WHOLE_SIZE, 0, &b->mapped));
    return 1;
}

static void destroy_buffer(const Ctx *c, Buf *b)
{
    if (b->mapped) vkUnmapMemory(c->device, b->memory);
    if (b->buffer) vkDestroyBuffer(c->device, b->buffer, NULL);
    if (b->memory) vkFreeMemory(c->device, b->memory, NULL);
    memset(b, 0, sizeof *b);
}

static const char *g_shader_dir;

static int create_shader(const Ctx *c, const char *file, VkShaderModule *out)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", g_shader_dir, file);
    FILE *f = fopen(path, "rb");
    if (!f) FAIL("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint32_t *code = malloc((size_t)size);
    if (!code || fread(code, 1, (size_t)size, f) != (size_t)size) { fclose(f); free(code); FAIL("cannot read %s", path); }
    fclose(f);
    VkShaderModuleCreateInfo smci = { .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, .codeSize = (size_t)size, .pCode = code };
    VkResult r = vkCreateShaderModule(c->device, &smci, NULL, out);
    free(code);
    if (r != VK_SUCCESS) { set_reason("vkCreateShaderModule", r); return 0; }
    return 1;
}

/* The FMA compute pipeline (fma.comp) with its descriptor set over two storage buffers. */
typedef struct {
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkShaderModule module;
    VkPipeline pipeline;
    VkDescriptorPool pool;
    VkDescriptorSet set;
} Compute;

typedef struct { uint32_t count, iters; } FmaParams;

static int create_compute(const Ctx *c, Compute *k, const Buf *src, const Buf *dst)
{
    memset(k, 0, sizeof *k);
    VkDescriptorSetLayoutBinding bindings[2] = {
        { .binding = 0, .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = 1, .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT },
        { .binding = 1, .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = 1, .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT },
    };
    VkDescriptorSetLayoutCreateInfo dslci = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO, .bindingCount = 2, .pBindings = bindings };
    TRY(vkCreateDescriptorSetLayout(c->device, &dslci, NULL, &k->dsl));
    VkPushConstantRange pcr = { .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .offset = 0, .size = sizeof(FmaParams) };
    VkPipelineLayoutCreateInfo plci = { .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, .setLayoutCount = 1, .pSetLayouts = &k->dsl,
                                        .pushConstantRangeCount = 1, .pPushConstantRanges = &pcr };
    TRY(vkCreatePipelineLayout(c->device, &plci, NULL, &k->layout));
    if (!create_shader(c, "fma.comp.spv", &k->module)) return 0;
    VkComputePipelineCreateInfo cpci = { .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO, .layout = k->layout,
        .stage = { .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, .stage = VK_SHADER_STAGE_COMPUTE_BIT, .module = k->module, .pName = "main" } };
    TRY(vkCreateComputePipelines(c->device, VK_NULL_HANDLE, 1, &cpci, NULL, &k->pipeline));
    VkDescriptorPoolSize ps = { .type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = 2 };
    VkDescriptorPoolCreateInfo dpci = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, .maxSets = 1, .poolSizeCount = 1, .pPoolSizes = &ps };
    TRY(vkCreateDescriptorPool(c->device, &dpci, NULL, &k->pool));
    VkDescriptorSetAllocateInfo dsai = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO, .descriptorPool = k->pool, .descriptorSetCount = 1, .pSetLayouts = &k->dsl };
    TRY(vkAllocateDescriptorSets(c->device, &dsai, &k->set));
    VkDescriptorBufferInfo infos[2] = { { src->buffer, 0, VK_WHOLE_SIZE }, { dst->buffer, 0, VK_WHOLE_SIZE } };
    VkWriteDescriptorSet writes[2];
    for (int b = 0; b < 2; b++)
        writes[b] = (VkWriteDescriptorSet){ .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, .dstSet = k->set, .dstBinding = (uint32_t)b,
            .descriptorCount = 1, .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .pBufferInfo = &infos[b] };
    vkUpdateDescriptorSets(c->device, 2, writes, 0, NULL);
    return 1;
}

static void destroy_compute(const Ctx *c, Compute *k)
{
    if (k->pool) vkDestroyDescriptorPool(c->device, k->pool, NULL);
    if (k->pipeline) vkDestroyPipeline(c->device, k->pipeline, NULL);
    if (k->module) vkDestroyShaderModule(c->device, k->module, NULL);
    if (k->layout) vkDestroyPipelineLayout(c->device, k->layout, NULL);
    if (k->dsl) vkDestroyDescriptorSetLayout(c->device, k->dsl, NULL);
    memset(k, 0, sizeof *k);
}

/* Binds the pipeline, the set and the push constants: a following vkCmdDispatch runs fma.comp. */
static void bind_compute(VkCommandBuffer cmd, const Compute *k, FmaParams p)
{
    vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, k->pipeline);
    vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, k->layout, 0, 1, &k->set, 0, NULL);
    vkCmdPushConstants(cmd, k->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof p, &p);
}

typedef struct {
    VkCommandPool pool;
    VkCommandBuffer cmd;
    VkFence fence;
} Cmd;

static int create_cmd(const Ctx *c, Cmd *x)
{
    memset(x, 0, sizeof *x);
    VkCommandPoolCreateInfo cpci = { .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT, .queueFamilyIndex = c->family };
    TRY(vkCreateCommandPool(c->device, &cpci, NULL, &x->pool));
    VkCommandBufferAllocateInfo cbai = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, .commandPool = x->pool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = 1 };
    TRY(vkAllocateCommandBuffers(c->device, &cbai, &x->cmd));
    VkFenceCreateInfo fci = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
    TRY(vkCreateFence(c->device, &fci, NULL, &x->fence));
    return 1;
}

static void destroy_cmd(const Ctx *c, Cmd *x)
{
    if (x->fence) vkDestroyFence(c->device, x->fence, NULL);
    if (x->pool) vkDestroyCommandPool(c->device, x->pool, NULL);
    memset(x, 0, sizeof *x);
}

static int begin(VkCommandBuffer cmd, VkCommandBufferUsageFlags flags)
{
    TRY(vkResetCommandBuffer(cmd, 0));
    VkCommandBufferBeginInfo bi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, .flags = flags };
    TRY(vkBeginCommandBuffer(cmd, &bi));
    return 1;
}

/* Submits cmd (or nothing when cmd is NULL) with the fence, waits for it and resets it. */
static int submit_wait(const Ctx *c, VkCommandBuffer cmd, VkFence fence)
{
    VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = cmd ? 1 : 0, .pCommandBuffers = cmd ? &cmd : NULL };
    TRY(vkQueueSubmit(c->queue, 1, &si, fence));
    TRY(vkWaitForFences(c->device, 1, &fence, VK_TRUE, g_timeout_ns));
    TRY(vkResetFences(c->device, 1, &fence));
    return 1;
}

static float fma_ref(float x, uint32_t iters)
{
    float a = x, b = x + 1.0f, c = x + 2.0f, d = x + 3.0f;
    for (uint32_t k = 0; k < iters; k++) {
        a = a * 0.999f + 0.001f; b = b * 0.999f + 0.001f; c = c * 0.999f + 0.001f; d = d * 0.999f + 0.001f;
    }
    return a + b + c + d;
}

/* ---------------------------------------------------------------- group: create */

static void group_create(void)
{
    int reps = (int)env_long("BENCH_CREATE_REPS", 10), warm = (int)env_long("BENCH_CREATE_WARMUP", 1);
    double *s = calloc((size_t)reps, sizeof *s);
    int n = 0;
    for (int i = 0; i < 1 + warm + reps; i++) {
        Ctx c;
        double t0 = now_s();
        int ok = create_ctx(&c);
        double t1 = now_s();
        destroy_ctx(&c);
        if (!ok) {
            if (i == 0) emit_na("create_first_ms", "%s", g_reason);
            emit_na("create_ms", "%s", g_reason);
            free(s);
            return;
        }
        if (i == 0) { double first = (t1 - t0) * 1e3; emit("create_first_ms", &first, 1); }
        else if (i > warm) s[n++] = (t1 - t0) * 1e3;
    }
    emit("create_ms", s, n);
    free(s);
}

/* ---------------------------------------------------------------- group: submit */

static int submit_roundtrip(const Ctx *c, const char *name, int with_cb)
{
    int reps = (int)env_long("BENCH_SUBMIT_REPS", 500), warm = (int)env_long("BENCH_SUBMIT_WARMUP", 50);
    Cmd x;
    if (!create_cmd(c, &x)) return 0;
    if (with_cb) {
        if (!begin(x.cmd, 0)) return 0;
        TRY(vkEndCommandBuffer(x.cmd));
    }
    VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = with_cb ? 1 : 0, .pCommandBuffers = with_cb ? &x.cmd : NULL };
    double *s = calloc((size_t)reps, sizeof *s);
    int n = 0;
    for (int i = 0; i < warm + reps; i++) {
        double t0 = now_s();
        VkResult r = vkQueueSubmit(c->queue, 1, &si, x.fence);
        if (r != VK_SUCCESS) { free(s); set_reason("vkQueueSubmit", r); return 0; }
        r = vkWaitForFences(c->device, 1, &x.fence, VK_TRUE, g_timeout_ns);
        double t1 = now_s();
        if (r != VK_SUCCESS) { free(s); set_reason("vkWaitForFences", r); return 0; }
        r = vkResetFences(c->device, 1, &x.fence);
        if (r != VK_SUCCESS) { free(s); set_reason("vkResetFences", r); return 0; }
        if (i >= warm) s[n++] = (t1 - t0) * 1e6;
    }
    emit(name, s, n);
    free(s);
    destroy_cmd(c, &x);
    return 1;
}

/* vkQueueWaitIdle with nothing submitted: lavapipe answers at once, the ICD makes one round trip to the host and back
 * (the floor of every call that needs the host's answer; tests/bench/pingpong.c measures the machine's). */
static int queue_wait_idle(const Ctx *c)
{
    int reps = (int)env_long("BENCH_SUBMIT_REPS", 500), warm = (int)env_long("BENCH_SUBMIT_WARMUP", 50);
    double *s = calloc((size_t)reps, sizeof *s);
    int n = 0;
    for (int i = 0; i < warm + reps; i++) {
        double t0 = now_s();
        VkResult r = vkQueueWaitIdle(c->queue);
        double t1 = now_s();
        if (r != VK_SUCCESS) { free(s); set_reason("vkQueueWaitIdle", r); return 0; }
        if (i >= warm) s[n++] = (t1 - t0) * 1e6;
    }
    emit("queue_wait_idle_us", s, n);
    free(s);
    return 1;
}

static void group_submit(const Ctx *c)
{
    if (!submit_roundtrip(c, "submit_empty_rt_us", 0)) emit_na("submit_empty_rt_us", "%s", g_reason);
    if (!submit_roundtrip(c, "submit_emptycb_rt_us", 1)) emit_na("submit_emptycb_rt_us", "%s", g_reason);
    if (!queue_wait_idle(c)) emit_na("queue_wait_idle_us", "%s", g_reason);
}

/* ---------------------------------------------------------------- group: query */

#define QUERY_BATCH 8 /* calls per clock reading: keeps clock_gettime's own cost out of sub-µs calls */

static int fence_status_pending(const Ctx *c)
{
    int want = (int)env_long("BENCH_QUERY_REPS", 300), warm = (int)env_long("BENCH_QUERY_WARMUP", 20);
    uint32_t elems = (uint32_t)env_long("BENCH_FENCE_ELEMS", 1 << 18), iters = (uint32_t)env_long("BENCH_FENCE_ITERS", 512);
    Buf src, dst;
    Compute k;
    Cmd x;
    if (!create_buffer(c, &src, (VkDeviceSize)elems * 4, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, 1)) return 0;
    if (!create_buffer(c, &dst, (VkDeviceSize)elems * 4, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, 1)) return 0;
    memset(src.mapped, 0, src.size);
    if (!create_compute(c, &k, &src, &dst) || !create_cmd(c, &x)) return 0;
    /* The long work: one big FMA dispatch. */
    if (!begin(x.cmd, 0)) return 0;
    bind_compute(x.cmd, &k, (FmaParams){ elems, iters });
    vkCmdDispatch(x.cmd, (elems + 63) / 64, 1, 1);
    TRY(vkEndCommandBuffer(x.cmd));
    VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &x.cmd };
    double *s = calloc((size_t)want, sizeof *s);
    int n = 0, seen = 0, submits = 0, empty_submits = 0;
    while (n < want) {
        if (empty_submits > 3) {
            free(s);
            FAIL("the fence was never pending: the %u x %u-iteration kernel finishes before the first vkGetFenceStatus (raise BENCH_FENCE_ITERS)", elems, iters);
        }
        TRY(vkQueueSubmit(c->queue, 1, &si, x.fence));
        submits++;
        int got = 0;
        for (;;) {
            VkResult r = VK_SUCCESS;
            double t0 = now_s();
            for (int j = 0; j < QUERY_BATCH; j++) r = vkGetFenceStatus(c->device, x.fence);
            double t1 = now_s();
            if (r == VK_SUCCESS) break;
            if (r != VK_NOT_READY) { free(s); set_reason("vkGetFenceStatus", r); return 0; }
            /* r == VK_NOT_READY on the last call, so the fence was pending for all QUERY_BATCH calls */
            got++;
            if (seen++ >= warm && n < want) s[n++] = (t1 - t0) * 1e6 / QUERY_BATCH;
            if (n >= want) break;
        }
        empty_submits = got ? 0 : empty_submits + 1;
        TRY(vkWaitForFences(c->device, 1, &x.fence, VK_TRUE, g_timeout_ns));
        TRY(vkResetFences(c->device, 1, &x.fence));
    }
    emit("fence_status_pending_us", s, n);
    fprintf(stderr, "bench: fence_status_pending_us: %d samples of %d calls over %d submits\n", n, QUERY_BATCH, submits);
    free(s);
    destroy_cmd(c, &x);
    destroy_compute(c, &k);
    destroy_buffer(c, &src);
    destroy_buffer(c, &dst);
    return 1;
}

/* A timeline's counter as a polling application reads it: the value a host signal set, read back
 * QUERY_BATCH times per clock reading (through the ICD: from the feedback slot where the transport has one). */
static int semaphore_counter(const Ctx *c)
{
    int reps = (int)env_long("BENCH_QUERY_REPS", 300), warm = (int)env_long("BENCH_QUERY_WARMUP", 20);
    VkSemaphoreTypeCreateInfo sti = { .sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO, .semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE };
    VkSemaphoreCreateInfo sci = { .sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO, .pNext = &sti };
    VkSemaphore sem;
    TRY(vkCreateSemaphore(c->device, &sci, NULL, &sem));
    VkSemaphoreSignalInfo ssi = { .sType = VK_STRUCTURE_TYPE_SEMAPHORE_SIGNAL_INFO, .semaphore = sem, .value = 7 };
    TRY(vkSignalSemaphore(c->device, &ssi));
    double *s = calloc((size_t)reps, sizeof *s);
    int n = 0;
    for (int i = 0; i < warm + reps; i++) {
        uint64_t v = 0;
        VkResult r = VK_SUCCESS;
        double t0 = now_s();
        for (int j = 0; j < QUERY_BATCH; j++) r = vkGetSemaphoreCounterValue(c->device, sem, &v);
        double t1 = now_s();
        if (r != VK_SUCCESS) { free(s); vkDestroySemaphore(c->device, sem, NULL); set_reason("vkGetSemaphoreCounterValue", r); return 0; }
        if (v != 7) { free(s); vkDestroySemaphore(c->device, sem, NULL); FAIL("vkGetSemaphoreCounterValue read %llu after a signal of 7", (unsigned long long)v); }
        if (i >= warm) s[n++] = (t1 - t0) * 1e6 / QUERY_BATCH;
    }
    emit("semaphore_counter_us", s, n);
    free(s);
    vkDestroySemaphore(c->device, sem, NULL);
    return 1;
}

static int image_format_props(const Ctx *c)
{
    int reps = (int)env_long("BENCH_QUERY_REPS", 300), warm = (int)env_long("BENCH_QUERY_WARMUP", 20);
    double *s = calloc((size_t)reps, sizeof *s);
    int n = 0;
    for (int i = 0; i < warm + reps; i++) {
        VkImageFormatProperties p;
        VkResult r = VK_SUCCESS;
        double t0 = now_s();
        for (int j = 0; j < QUERY_BATCH; j++)
            r = vkGetPhysicalDeviceImageFormatProperties(c->pd, VK_FORMAT_R8G8B8A8_UNORM, VK_IMAGE_TYPE_2D, VK_IMAGE_TILING_OPTIMAL,
                                                         VK_IMAGE_USAGE_SAMPLED_BIT | VK_IMAGE_USAGE_TRANSFER_DST_BIT, 0, &p);
        double t1 = now_s();
        if (r != VK_SUCCESS) { free(s); set_reason("vkGetPhysicalDeviceImageFormatProperties", r); return 0; }
        if (i >= warm) s[n++] = (t1 - t0) * 1e6 / QUERY_BATCH;
    }
    emit("image_format_props_us", s, n);
    free(s);
    return 1;
}

static void group_query(const Ctx *c)
{
    if (!fence_status_pending(c)) emit_na("fence_status_pending_us", "%s", g_reason);
    if (!semaphore_counter(c)) emit_na("semaphore_counter_us", "%s", g_reason);
    if (!image_format_props(c)) emit_na("image_format_props_us", "%s", g_reason);
}

/* ---------------------------------------------------------------- group: record */

enum { REC_DISPATCH, REC_DRAW, REC_BIND_SETS, REC_BARRIER };

typedef struct {
    Compute k;
    VkRenderPass rp;
    VkFramebuffer fb;
    VkPipelineLayout gfx_layout;
    VkShaderModule vs;
    VkPipeline gfx;
} RecordObjects;

/* A render pass and framebuffer without attachments and a pipeline with a no-op vertex shader that discards
 * rasterisation: enough to record vkCmdDraw; never submitted. */
static int create_graphics(const Ctx *c, RecordObjects *o)
{
    VkSubpassDescription sub = { .pipelineBindPoint = VK_PIPELINE_BIND_POINT_GRAPHICS };
    VkRenderPassCreateInfo rpci = { .sType = VK_STRUCTURE_TYPE_RENDER_PASS_CREATE_INFO, .subpassCount = 1, .pSubpasses = &sub };
    TRY(vkCreateRenderPass(c->device, &rpci, NULL, &o->rp));
    VkFramebufferCreateInfo fbci = { .sType = VK_STRUCTURE_TYPE_FRAMEBUFFER_CREATE_INFO, .renderPass = o->rp, .width = 64, .height = 64, .layers = 1 };
    TRY(vkCreateFramebuffer(c->device, &fbci, NULL, &o->fb));
    VkPipelineLayoutCreateInfo plci = { .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO };
    TRY(vkCreatePipelineLayout(c->device, &plci, NULL, &o->gfx_layout));
    if (!create_shader(c, "noop.vert.spv", &o->vs)) return 0;
    VkPipelineShaderStageCreateInfo stage = { .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, .stage = VK_SHADER_STAGE_VERTEX_BIT, .module = o->vs, .pName = "main" };
    VkPipelineVertexInputStateCreateInfo vi = { .sType = VK_STRUCTURE_TYPE_PIPELINE_VERTEX_INPUT_STATE_CREATE_INFO };
    VkPipelineInputAssemblyStateCreateInfo ia = { .sType = VK_STRUCTURE_TYPE_PIPELINE_INPUT_ASSEMBLY_STATE_CREATE_INFO, .topology = VK_PRIMITIVE_TOPOLOGY_TRIANGLE_LIST };
    VkViewport vp = { 0, 0, 64, 64, 0, 1 };
    VkRect2D sc = { { 0, 0 }, { 64, 64 } };
    VkPipelineViewportStateCreateInfo vps = { .sType = VK_STRUCTURE_TYPE_PIPELINE_VIEWPORT_STATE_CREATE_INFO, .viewportCount = 1, .pViewports = &vp, .scissorCount = 1, .pScissors = &sc };
    VkPipelineRasterizationStateCreateInfo rs = { .sType = VK_STRUCTURE_TYPE_PIPELINE_RASTERIZATION_STATE_CREATE_INFO, .rasterizerDiscardEnable = VK_TRUE,
                                                  .polygonMode = VK_POLYGON_MODE_FILL, .cullMode = VK_CULL_MODE_NONE, .frontFace = VK_FRONT_FACE_COUNTER_CLOCKWISE, .lineWidth = 1.0f };
    VkPipelineMultisampleStateCreateInfo ms = { .sType = VK_STRUCTURE_TYPE_PIPELINE_MULTISAMPLE_STATE_CREATE_INFO, .rasterizationSamples = VK_SAMPLE_COUNT_1_BIT };
    VkGraphicsPipelineCreateInfo gpci = { .sType = VK_STRUCTURE_TYPE_GRAPHICS_PIPELINE_CREATE_INFO, .stageCount = 1, .pStages = &stage,
        .pVertexInputState = &vi, .pInputAssemblyState = &ia, .pViewportState = &vps, .pRasterizationState = &rs, .pMultisampleState = &ms,
        .layout = o->gfx_layout, .renderPass = o->rp, .subpass = 0, .basePipelineIndex = -1 };
    TRY(vkCreateGraphicsPipelines(c->device, VK_NULL_HANDLE, 1, &gpci, NULL, &o->gfx));
    return 1;
}

static void destroy_graphics(const Ctx *c, RecordObjects *o)
{
    if (o->gfx) vkDestroyPipeline(c->device, o->gfx, NULL);
    if (o->vs) vkDestroyShaderModule(c->device, o->vs, NULL);
    if (o->gfx_layout) vkDestroyPipelineLayout(c->device, o->gfx_layout, NULL);
    if (o->fb) vkDestroyFramebuffer(c->device, o->fb, NULL);
    if (o->rp) vkDestroyRenderPass(c->device, o->rp, NULL);
}

/* Records `cmds` commands of one kind per round; per round, the time of the vkCmd* calls alone (ns per
 * command) and of vkBeginCommandBuffer .. vkEndCommandBuffer (ns per command, set-up commands included). */
static int record(const Cmd *x, const RecordObjects *o, int kind, const char *name, const char *name_begin_end)
{
    int reps = (int)env_long("BENCH_RECORD_REPS", 15), warm = (int)env_long("BENCH_RECORD_WARMUP", 2);
    int cmds = (int)env_long("BENCH_RECORD_CMDS", 10000);
    double *s = calloc((size_t)reps, sizeof *s), *sbe = calloc((size_t)reps, sizeof *sbe);
    int n = 0;
    VkMemoryBarrier mb = { .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER, .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT, .dstAccessMask = VK_ACCESS_SHADER_READ_BIT };
    VkClearValue none = { 0 };
    VkRenderPassBeginInfo rpbi = { .sType = VK_STRUCTURE_TYPE_RENDER_PASS_BEGIN_INFO, .renderPass = o->rp, .framebuffer = o->fb,
                                   .renderArea = { { 0, 0 }, { 64, 64 } }, .clearValueCount = 0, .pClearValues = &none };
    for (int i = 0; i < warm + reps; i++) {
        VkResult r = vkResetCommandBuffer(x->cmd, 0);
        if (r != VK_SUCCESS) { free(s); free(sbe); set_reason("vkResetCommandBuffer", r); return 0; }
        VkCommandBufferBeginInfo bi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT };
        double tb = now_s();
        r = vkBeginCommandBuffer(x->cmd, &bi);
        if (r != VK_SUCCESS) { free(s); free(sbe); set_reason("vkBeginCommandBuffer", r); return 0; }
        double t0 = 0, t1 = 0;
        switch (kind) {
        case REC_DISPATCH:
            bind_compute(x->cmd, &o->k, (FmaParams){ 64, 1 });
            t0 = now_s();
            for (int j = 0; j < cmds; j++) vkCmdDispatch(x->cmd, 1, 1, 1);
            t1 = now_s();
            break;
        case REC_DRAW:
            vkCmdBeginRenderPass(x->cmd, &rpbi, VK_SUBPASS_CONTENTS_INLINE);
            vkCmdBindPipeline(x->cmd, VK_PIPELINE_BIND_POINT_GRAPHICS, o->gfx);
            t0 = now_s();
            for (int j = 0; j < cmds; j++) vkCmdDraw(x->cmd, 3, 1, 0, 0);
            t1 = now_s();
            vkCmdEndRenderPass(x->cmd);
            break;
        case REC_BIND_SETS:
            vkCmdBindPipeline(x->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, o->k.pipeline);
            t0 = now_s();
            for (int j = 0; j < cmds; j++) vkCmdBindDescriptorSets(x->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, o->k.layout, 0, 1, &o->k.set, 0, NULL);
            t1 = now_s();
            break;
        case REC_BARRIER:
            t0 = now_s();
            for (int j = 0; j < cmds; j++)
                vkCmdPipelineBarrier(x->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
            t1 = now_s();
            break;
        }
        r = vkEndCommandBuffer(x->cmd);
        double te = now_s();
        if (r != VK_SUCCESS) { free(s); free(sbe); set_reason("vkEndCommandBuffer", r); return 0; }
        if (i >= warm) { s[n] = (t1 - t0) * 1e9 / cmds; sbe[n] = (te - tb) * 1e9 / cmds; n++; }
    }
    emit(name, s, n);
    if (name_begin_end) emit(name_begin_end, sbe, n);
    free(s);
    free(sbe);
    return 1;
}

static void group_record(const Ctx *c)
{
    static const char *names[] = { "record_dispatch_ns", "record_draw_ns", "record_bind_sets_ns", "record_barrier_ns" };
    RecordObjects o;
    memset(&o, 0, sizeof o);
    Buf src, dst;
    Cmd x;
    int ok = create_buffer(c, &src, 256, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, 1) && create_buffer(c, &dst, 256, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, 1)
          && create_compute(c, &o.k, &src, &dst) && create_cmd(c, &x);
    if (!ok) {
        for (int i = 0; i < 4; i++) emit_na(names[i], "set-up: %s", g_reason);
        emit_na("record_dispatch_begin_end_ns", "set-up: %s", g_reason);
        return;
    }
    char gfx_reason[1100] = "";
    if (!create_graphics(c, &o)) snprintf(gfx_reason, sizeof gfx_reason, "set-up: %s", g_reason);
    for (int kind = 0; kind < 4; kind++) {
        if (kind == REC_DRAW && gfx_reason[0]) { emit_na(names[kind], "%s", gfx_reason); continue; }
        if (!record(&x, &o, kind, names[kind], kind == REC_DISPATCH ? "record_dispatch_begin_end_ns" : NULL)) {
            emit_na(names[kind], "%s", g_reason);
            if (kind == REC_DISPATCH) emit_na("record_dispatch_begin_end_ns", "%s", g_reason);
        }
    }
    destroy_cmd(c, &x);
    destroy_graphics(c, &o);
    destroy_compute(c, &o.k);
    destroy_buffer(c, &src);
    destroy_buffer(c, &dst);
}

/* ---------------------------------------------------------------- group: submits */

static int submits_per_s(const Ctx *c)
{
    int reps = (int)env_long("BENCH_SUBMITS_REPS", 7), warm = (int)env_long("BENCH_SUBMITS_WARMUP", 1);
    int per = (int)env_long("BENCH_SUBMITS", 40), dispatches = (int)env_long("BENCH_SUBMIT_DISPATCHES", 100);
    Buf src, dst;
    Compute k;
    Cmd x;
    if (!create_buffer(c, &src, 256, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, 1) || !create_buffer(c, &dst, 256, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, 1)) return 0;
    memset(src.mapped, 0, src.size);
    if (!create_compute(c, &k, &src, &dst) || !create_cmd(c, &x)) return 0;
    /* Submitted again while a previous submission may still be pending: SIMULTANEOUS_USE. */
    if (!begin(x.cmd, VK_COMMAND_BUFFER_USAGE_SIMULTANEOUS_USE_BIT)) return 0;
    bind_compute(x.cmd, &k, (FmaParams){ 64, 1 });
    for (int j = 0; j < dispatches; j++) vkCmdDispatch(x.cmd, 1, 1, 1);
    TRY(vkEndCommandBuffer(x.cmd));
    VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &x.cmd };
    double *s = calloc((size_t)reps, sizeof *s);
    int n = 0;
    for (int i = 0; i < warm + reps; i++) {
        double t0 = now_s();
        for (int j = 0; j < per; j++) {
            VkResult r = vkQueueSubmit(c->queue, 1, &si, j == per - 1 ? x.fence : VK_NULL_HANDLE);
            if (r != VK_SUCCESS) { free(s); set_reason("vkQueueSubmit", r); return 0; }
        }
        VkResult r = vkWaitForFences(c->device, 1, &x.fence, VK_TRUE, g_timeout_ns);
        double t1 = now_s();
        if (r != VK_SUCCESS) { free(s); set_reason("vkWaitForFences", r); return 0; }
        TRY(vkResetFences(c->device, 1, &x.fence));
        if (i >= warm) s[n++] = per / (t1 - t0);
    }
    float *out = dst.mapped, want = fma_ref(0.0f, 1);
    if (!(fabsf(out[0] - want) <= 1e-4f)) { free(s); FAIL("the dispatches did not run: dst[0] = %g, want %g", out[0], want); }
    emit("submits_per_s", s, n);
    free(s);
    destroy_cmd(c, &x);
    destroy_compute(c, &k);
    destroy_buffer(c, &src);
    destroy_buffer(c, &dst);
    return 1;
}

static void group_submits(const Ctx *c)
{
    if (!submits_per_s(c)) emit_na("submits_per_s", "%s", g_reason);
}

/* ---------------------------------------------------------------- group: threads */

/* One recording thread: its own pool and command buffer; per round, begin .. BENCH_RECORD_CMDS dispatches .. end. */
typedef struct {
    const Ctx *c;
    const Compute *k;
    pthread_barrier_t *start;
    int reps, warm, cmds;
    double rate; /* median commands per second, 0 when a call failed */
    char reason[256];
} Recorder;

static void *record_thread(void *arg)
{
    Recorder *t = arg;
    t->rate = 0;
    Cmd x;
    if (!create_cmd(t->c, &x)) { snprintf(t->reason, sizeof t->reason, "%.200s", g_reason); pthread_barrier_wait(t->start); return NULL; }
    double *s = calloc((size_t)t->reps, sizeof *s);
    int n = 0;
    pthread_barrier_wait(t->start);
    VkCommandBufferBeginInfo bi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT };
    for (int i = 0; i < t->warm + t->reps; i++) {
        double t0 = now_s();
        VkResult r = vkResetCommandBuffer(x.cmd, 0);
        if (r == VK_SUCCESS) r = vkBeginCommandBuffer(x.cmd, &bi);
        if (r != VK_SUCCESS) { snprintf(t->reason, sizeof t->reason, "vkBeginCommandBuffer returned %s", vkres(r)); break; }
        bind_compute(x.cmd, t->k, (FmaParams){ 64, 1 });
        for (int j = 0; j < t->cmds; j++) vkCmdDispatch(x.cmd, 1, 1, 1);
        r = vkEndCommandBuffer(x.cmd);
        double t1 = now_s();
        if (r != VK_SUCCESS) { snprintf(t->reason, sizeof t->reason, "vkEndCommandBuffer returned %s", vkres(r)); break; }
        if (i >= t->warm) s[n++] = t->cmds / (t1 - t0);
    }
    if (n == t->reps) t->rate = median(s, n);
    free(s);
    destroy_cmd(t->c, &x);
    return NULL;
}

/* `threads` threads record at once, each into its own pool; the metric is the mean of their per-thread rates. */
static int record_rate(const Ctx *c, const Compute *k, int threads, const char *name)
{
    Recorder t[2];
    pthread_t id[2];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    for (int i = 0; i < threads; i++) {
        t[i] = (Recorder){ .c = c, .k = k, .start = &start, .reps = (int)env_long("BENCH_RECORD_REPS", 15),
                           .warm = (int)env_long("BENCH_RECORD_WARMUP", 2), .cmds = (int)env_long("BENCH_RECORD_CMDS", 10000) };
        pthread_create(&id[i], NULL, record_thread, &t[i]);
    }
    double rates[2];
    int ok = 1;
    for (int i = 0; i < threads; i++) {
        pthread_join(id[i], NULL);
        if (t[i].rate <= 0) { ok = 0; snprintf(g_reason, sizeof g_reason, "thread %d: %s", i, t[i].reason); }
        rates[i] = t[i].rate / 1e6;
    }
    pthread_barrier_destroy(&start);
    if (!ok) return 0;
    double mean = 0;
    for (int i = 0; i < threads; i++) mean += rates[i] / threads;
    printf("metric\t%s\t%s\t%.6g\tn=%d,min=%.6g,max=%.6g\n", name, metric(name)->unit, mean, threads,
           threads > 1 && rates[1] < rates[0] ? rates[1] : rates[0], threads > 1 && rates[1] > rates[0] ? rates[1] : rates[0]);
    fflush(stdout);
    return 1;
}

static void group_threads(const Ctx *c)
{
    Buf src, dst;
    Compute k;
    if (!create_buffer(c, &src, 256, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, 1) || !create_buffer(c, &dst, 256, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, 1)
        || !create_compute(c, &k, &src, &dst)) {
        emit_na("record_rate_1t_mps", "set-up: %s", g_reason);
        emit_na("record_rate_2t_mps", "set-up: %s", g_reason);
        return;
    }
    if (!record_rate(c, &k, 1, "record_rate_1t_mps")) emit_na("record_rate_1t_mps", "%s", g_reason);
    if (!record_rate(c, &k, 2, "record_rate_2t_mps")) emit_na("record_rate_2t_mps", "%s", g_reason);
    destroy_compute(c, &k);
    destroy_buffer(c, &src);
    destroy_buffer(c, &dst);
}

/* ---------------------------------------------------------------- group: frames */

/* Per frame: vkResetCommandPool, then 100 (BENCH_FRAME_CBS) command buffers each begun, given one small dispatch
 * and ended, all in one vkQueueSubmit with a fence, then the wait. Frames per second over BENCH_FRAMES frames. */
static int frames(const Ctx *c)
{
    int reps = (int)env_long("BENCH_FRAMES_REPS", 7), warm = (int)env_long("BENCH_FRAMES_WARMUP", 1);
    int per = (int)env_long("BENCH_FRAMES", 20), cbs = (int)env_long("BENCH_FRAME_CBS", 100);
    Buf src, dst;
    Compute k;
    if (!create_buffer(c, &src, 256, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, 1) || !create_buffer(c, &dst, 256, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, 1)) return 0;
    memset(src.mapped, 0, src.size);
    memset(dst.mapped, 0, dst.size);
    if (!create_compute(c, &k, &src, &dst)) return 0;
    VkCommandPoolCreateInfo cpci = { .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, .flags = VK_COMMAND_POOL_CREATE_TRANSIENT_BIT, .queueFamilyIndex = c->family };
    VkCommandPool pool;
    TRY(vkCreateCommandPool(c->device, &cpci, NULL, &pool));
    VkCommandBuffer *cmd = calloc((size_t)cbs, sizeof *cmd);
    VkCommandBufferAllocateInfo cbai = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, .commandPool = pool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = (uint32_t)cbs };
    TRY(vkAllocateCommandBuffers(c->device, &cbai, cmd));
    VkFenceCreateInfo fci = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
    VkFence fence;
    TRY(vkCreateFence(c->device, &fci, NULL, &fence));
    VkCommandBufferBeginInfo bi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT };
    VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = (uint32_t)cbs, .pCommandBuffers = cmd };
    double *s = calloc((size_t)reps, sizeof *s);
    int n = 0;
    for (int i = 0; i < warm + reps; i++) {
        double t0 = now_s();
        for (int f = 0; f < per; f++) {
            TRY(vkResetCommandPool(c->device, pool, 0));
            for (int j = 0; j < cbs; j++) {
                TRY(vkBeginCommandBuffer(cmd[j], &bi));
                bind_compute(cmd[j], &k, (FmaParams){ 64, 1 });
                vkCmdDispatch(cmd[j], 1, 1, 1);
                TRY(vkEndCommandBuffer(cmd[j]));
            }
            TRY(vkQueueSubmit(c->queue, 1, &si, fence));
            TRY(vkWaitForFences(c->device, 1, &fence, VK_TRUE, g_timeout_ns));
            TRY(vkResetFences(c->device, 1, &fence));
        }
        double t1 = now_s();
        if (i >= warm) s[n++] = per / (t1 - t0);
    }
    float *out = dst.mapped, want = fma_ref(0.0f, 1);
    if (!(fabsf(out[0] - want) <= 1e-4f)) { free(s); FAIL("the dispatches did not run: dst[0] = %g, want %g", out[0], want); }
    emit("frames_100cb_per_s", s, n);
    free(s);
    free(cmd);
    vkDestroyFence(c->device, fence, NULL);
    vkDestroyCommandPool(c->device, pool, NULL);
    destroy_compute(c, &k);
    destroy_buffer(c, &src);
    destroy_buffer(c, &dst);
    return 1;
}

static void group_frames(const Ctx *c)
{
    if (!frames(c)) emit_na("frames_100cb_per_s", "%s", g_reason);
}

/* ---------------------------------------------------------------- group: upload */

static int upload(const Ctx *c)
{
    int reps = (int)env_long("BENCH_UPLOAD_REPS", 20), warm = (int)env_long("BENCH_UPLOAD_WARMUP", 2);
    VkDeviceSize bytes = (VkDeviceSize)env_long("BENCH_UPLOAD_MB", 32) << 20;
    Buf staging, dst;
    Cmd x;
    if (!create_buffer(c, &staging, bytes, VK_BUFFER_USAGE_TRANSFER_SRC_BIT, 1)) return 0;
    if (!create_buffer(c, &dst, bytes, VK_BUFFER_USAGE_TRANSFER_DST_BIT, 0)) return 0;
    if (!create_cmd(c, &x)) return 0;
    if (!begin(x.cmd, 0)) return 0;
    VkBufferCopy region = { 0, 0, bytes };
    vkCmdCopyBuffer(x.cmd, staging.buffer, dst.buffer, 1, &region);
    VkMemoryBarrier mb = { .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER, .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT, .dstAccessMask = VK_ACCESS_HOST_READ_BIT };
    vkCmdPipelineBarrier(x.cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
    TRY(vkEndCommandBuffer(x.cmd));
    uint8_t *host = malloc((size_t)bytes);
    if (!host) FAIL("out of host memory");
    double *s = calloc((size_t)reps, sizeof *s), *sm = calloc((size_t)reps, sizeof *sm);
    int n = 0;
    for (int i = 0; i < warm + reps; i++) {
        memset(host, (int)(i * 37 + 1), (size_t)bytes); /* fresh content each round, outside the timing */
        for (size_t j = 0; j < bytes; j += 4096) host[j] = (uint8_t)(j >> 12);
        double t0 = now_s();
        memcpy(staging.mapped, host, (size_t)bytes);
        double tm = now_s();
        if (!submit_wait(c, x.cmd, x.fence)) { free(host); free(s); free(sm); return 0; }
        double t1 = now_s();
        if (i >= warm) { s[n] = bytes / (t1 - t0) * 1e-9; sm[n] = bytes / (tm - t0) * 1e-9; n++; }
    }
    /* Check the last copy arrived, where the destination can be read. */
    if (dst.mapped && memcmp(dst.mapped, host, (size_t)bytes) != 0) { free(host); free(s); free(sm); FAIL("the copied data differs from what was uploaded"); }
    emit("upload_gbps", s, n);
    emit("upload_memcpy_gbps", sm, n);
    free(host);
    free(s);
    free(sm);
    destroy_cmd(c, &x);
    destroy_buffer(c, &staging);
    destroy_buffer(c, &dst);
    return 1;
}

static void group_upload(const Ctx *c)
{
    if (!upload(c)) { emit_na("upload_gbps", "%s", g_reason); emit_na("upload_memcpy_gbps", "%s", g_reason); }
}

/* ---------------------------------------------------------------- group: compute */

static int compute(const Ctx *c)
{
    int reps = (int)env_long("BENCH_COMPUTE_REPS", 15), warm = (int)env_long("BENCH_COMPUTE_WARMUP", 1);
    uint32_t elems = (uint32_t)env_long("BENCH_COMPUTE_ELEMS", 1 << 20), iters = (uint32_t)env_long("BENCH_COMPUTE_ITERS", 128);
    Buf src, dst;
    Compute k;
    Cmd x;
    if (!create_buffer(c, &src, (VkDeviceSize)elems * 4, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, 1)) return 0;
    if (!create_buffer(c, &dst, (VkDeviceSize)elems * 4, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, 1)) return 0;
    float *in = src.mapped, *out = dst.mapped;
    for (uint32_t i = 0; i < elems; i++) in[i] = (float)(i % 1000) * 0.01f;
    memset(out, 0, dst.size);
    if (!create_compute(c, &k, &src, &dst) || !create_cmd(c, &x)) return 0;
    if (!begin(x.cmd, 0)) return 0;
    bind_compute(x.cmd, &k, (FmaParams){ elems, iters });
    vkCmdDispatch(x.cmd, (elems + 63) / 64, 1, 1);
    VkMemoryBarrier mb = { .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER, .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT, .dstAccessMask = VK_ACCESS_HOST_READ_BIT };
    vkCmdPipelineBarrier(x.cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
    TRY(vkEndCommandBuffer(x.cmd));
    double *s = calloc((size_t)reps, sizeof *s);
    int n = 0;
    double flop = (double)elems * iters * 8.0;
    for (int i = 0; i < warm + reps; i++) {
        double t0 = now_s();
        if (!submit_wait(c, x.cmd, x.fence)) { free(s); return 0; }
        double t1 = now_s();
        if (i >= warm) s[n++] = flop / (t1 - t0) * 1e-9;
    }
    for (uint32_t i = 0; i < elems; i += elems / 61 + 1) {
        float want = fma_ref(in[i], iters);
        if (!(fabsf(out[i] - want) <= 1e-3f * fabsf(want) + 1e-3f)) { free(s); FAIL("wrong result: dst[%u] = %g, want %g", i, out[i], want); }
    }
    emit("compute_gflops", s, n);
    fprintf(stderr, "bench: compute: %u elements x %u iterations, %.3g GFLOP per dispatch\n", elems, iters, flop * 1e-9);
    free(s);
    destroy_cmd(c, &x);
    destroy_compute(c, &k);
    destroy_buffer(c, &src);
    destroy_buffer(c, &dst);
    return 1;
}

static void group_compute(const Ctx *c)
{
    if (!compute(c)) emit_na("compute_gflops", "%s", g_reason);
}

/* ---------------------------------------------------------------- main */

typedef struct { const char *name; void (*run)(const Ctx *); } Group;
static const Group GROUPS[] = {
    { "create", NULL }, { "submit", group_submit }, { "query", group_query }, { "record", group_record },
    { "submits", group_submits }, { "threads", group_threads }, { "frames", group_frames }, { "upload", group_upload },
    { "compute", group_compute },
};

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < METRIC_COUNT; i++)
            printf("metric-info\t%s\t%s\t%s\t%s\t%s\t%s\n", METRICS[i].group, METRICS[i].name, METRICS[i].unit, METRICS[i].better, METRICS[i].target, METRICS[i].label);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "--groups") == 0) {
        for (size_t i = 0; i < sizeof GROUPS / sizeof GROUPS[0]; i++) printf("%s\n", GROUPS[i].name);
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: bench --list | --groups | GROUP SHADER_DIR\n");
        return 2;
    }
    g_shader_dir = argv[2];
    g_timeout_ns = (uint64_t)env_long("BENCH_TIMEOUT_S", 60) * 1000000000ull;
    const Group *g = NULL;
    for (size_t i = 0; i < sizeof GROUPS / sizeof GROUPS[0]; i++) if (strcmp(GROUPS[i].name, argv[1]) == 0) g = &GROUPS[i];
    if (!g) { fprintf(stderr, "bench: unknown group %s\n", argv[1]); return 2; }
    if (!g->run) { group_create(); return 0; }
    Ctx c;
    if (!create_ctx(&c)) {
        for (size_t i = 0; i < METRIC_COUNT; i++)
            if (strcmp(METRICS[i].group, g->name) == 0) emit_na(METRICS[i].name, "set-up: %s", g_reason);
        destroy_ctx(&c);
        return 0;
    }
    g->run(&c);
    destroy_ctx(&c);
    return 0;
}
