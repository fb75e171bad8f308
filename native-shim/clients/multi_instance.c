/* Two VkInstances in one process, two VkDevices on each, all four used at once from their own threads,
 * each doing checked compute work. Each instance sets its objects up in the same order, so through an ICD
 * that numbers handles per connection, the two instances' descriptor update templates, fences, sets and
 * buffers carry the same handle values, while each device's template lays pData out differently: state
 * kept per process instead of per instance/device would bind the wrong buffers or answer the wrong
 * fence, and the element checks fail.
 *
 * Usage: multi_instance SHADER.spv [ROUNDS] [ELEMENTS]
 * stdout is the same on any correct driver; stderr says whether the two instances' templates coincided. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stddef.h>
#include "compute_kit.h"

enum { INSTANCES = 2, DEVICES = 2 };

typedef struct {
    int inst, dev, variant;
    VkPhysicalDevice pd;
    VkDevice device;
    VkQueue queue;
    kit_pipeline pipe;
    kit_job job;
    VkDescriptorUpdateTemplate tmpl;
    size_t in_at, out_at; /* where this device's template expects the two buffer infos in pData */
    VkCommandPool cpool;
    VkCommandBuffer cmd;
    VkFence fence;
    int failed;
    uint32_t verified;
} device_ctx;

typedef struct {
    int inst;
    VkInstance instance;
    device_ctx devs[DEVICES];
    int failed;
} instance_ctx;

static spirv g_spv;
static uint32_t g_rounds = 8, g_count = 65536;
static pthread_barrier_t g_instances_ready, g_workers_ready, g_phase;
static instance_ctx g_inst[INSTANCES];

/* Four pData layouts: two entries in binding order, two entries in reverse order, one entry of two
 * descriptors with a gap between them (stride 32), one with a bigger gap and offset (stride 56). */
static int make_template(device_ctx *d)
{
    VkDescriptorUpdateTemplateEntry e[2];
    uint32_t n;
    memset(e, 0, sizeof e);
    for (int i = 0; i < 2; i++) { e[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER; e[i].descriptorCount = 1; e[i].stride = sizeof(VkDescriptorBufferInfo); }
    switch (d->variant) {
    case 0: n = 2; e[0].dstBinding = 0; e[0].offset = d->in_at = 0; e[1].dstBinding = 1; e[1].offset = d->out_at = 24; break;
    case 1: n = 2; e[0].dstBinding = 1; e[0].offset = d->out_at = 8; e[1].dstBinding = 0; e[1].offset = d->in_at = 40; break;
    case 2: n = 1; e[0].dstBinding = 0; e[0].descriptorCount = 2; e[0].stride = 32; e[0].offset = d->in_at = 16; d->out_at = 48; break;
    default: n = 1; e[0].dstBinding = 0; e[0].descriptorCount = 2; e[0].stride = 56; e[0].offset = d->in_at = 72; d->out_at = 128; break;
    }
    VkDescriptorUpdateTemplateCreateInfo tci = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_UPDATE_TEMPLATE_CREATE_INFO, .descriptorUpdateEntryCount = n,
        .pDescriptorUpdateEntries = e, .templateType = VK_DESCRIPTOR_UPDATE_TEMPLATE_TYPE_DESCRIPTOR_SET, .descriptorSetLayout = d->pipe.dsl };
    KCHECK(vkCreateDescriptorUpdateTemplate(d->device, &tci, NULL, &d->tmpl));
    return 0;
}

static int setup_device(device_ctx *d)
{
    uint32_t family = kit_compute_family(d->pd, NULL);
    if (family == UINT32_MAX) { fprintf(stderr, "no compute queue\n"); return 1; }
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = family, .queueCount = 1, .pQueuePriorities = &prio };
    VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1, .pQueueCreateInfos = &qci };
    KCHECK(vkCreateDevice(d->pd, &dci, NULL, &d->device));
    vkGetDeviceQueue(d->device, family, 0, &d->queue);
    if (kit_pipeline_create(d->device, &g_spv, &d->pipe) || kit_job_create(d->pd, d->device, &d->pipe, g_count, &d->job) || make_template(d)) return 1;
    VkCommandPoolCreateInfo cpci = { .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT, .queueFamilyIndex = family };
    KCHECK(vkCreateCommandPool(d->device, &cpci, NULL, &d->cpool));
    VkCommandBufferAllocateInfo cbai = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, .commandPool = d->cpool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = 1 };
    KCHECK(vkAllocateCommandBuffers(d->device, &cbai, &d->cmd));
    VkFenceCreateInfo fci = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
    KCHECK(vkCreateFence(d->device, &fci, NULL, &d->fence));
    return 0;
}

static void teardown_device(device_ctx *d)
{
    vkDestroyFence(d->device, d->fence, NULL);
    vkFreeCommandBuffers(d->device, d->cpool, 1, &d->cmd);
    vkDestroyCommandPool(d->device, d->cpool, NULL);
    vkDestroyDescriptorUpdateTemplate(d->device, d->tmpl, NULL);
    kit_job_destroy(d->device, &d->job);
    kit_pipeline_destroy(d->device, &d->pipe);
    vkDestroyDevice(d->device, NULL);
}

static int rounds(device_ctx *d)
{
    char label[64];
    snprintf(label, sizeof label, "instance %d device %d", d->inst, d->dev);
    for (uint32_t round = 0; round < g_rounds; round++) {
        uint32_t seed = (uint32_t)d->variant * 1000u + round, mul = 3u + (uint32_t)d->variant * 2u + round;
        kit_fill(&d->job, seed);
        /* The set is rewritten through this device's template every round, while the other three do the same. */
        unsigned char blob[256];
        memset(blob, 0xA5, sizeof blob);
        VkDescriptorBufferInfo in = { d->job.buffers[0], 0, VK_WHOLE_SIZE }, out = { d->job.buffers[1], 0, VK_WHOLE_SIZE };
        memcpy(blob + d->in_at, &in, sizeof in);
        memcpy(blob + d->out_at, &out, sizeof out);
        vkUpdateDescriptorSetWithTemplate(d->device, d->job.set, d->tmpl, blob);

        VkCommandBufferBeginInfo bi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT };
        KCHECK(vkBeginCommandBuffer(d->cmd, &bi));
        kit_record(d->cmd, &d->pipe, &d->job, mul);
        KCHECK(vkEndCommandBuffer(d->cmd));
        VkResult before = vkGetFenceStatus(d->device, d->fence);
        if (before != VK_NOT_READY) { fprintf(stderr, "%s round %u: unsubmitted fence status %d\n", label, round, before); return 1; }
        VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &d->cmd };
        KCHECK(vkQueueSubmit(d->queue, 1, &si, d->fence));
        KCHECK(vkWaitForFences(d->device, 1, &d->fence, VK_TRUE, 30ull * 1000 * 1000 * 1000));
        KCHECK(vkGetFenceStatus(d->device, d->fence));
        KCHECK(vkResetFences(d->device, 1, &d->fence));
        uint32_t bad = kit_check(&d->job, seed, mul, label);
        if (bad) { fprintf(stderr, "%s round %u: %u of %u elements wrong\n", label, round, bad, d->job.count); return 1; }
        d->verified++;
    }
    return 0;
}

/* In turn, one instance's devices signal their fences while the other's, with the same handle values, ask
 * the status of theirs, which nothing has signaled: it must be VK_NOT_READY. Every worker passes every
 * barrier, failed or not, so that no one waits forever. */
static int crossed_fences(device_ctx *d)
{
    int failed = 0;
    for (int signaler = 0; signaler < INSTANCES; signaler++) {
        if (d->inst == signaler) {
            /* An empty submit signals the fence once earlier work is done. */
            if (vkQueueSubmit(d->queue, 0, NULL, d->fence) != VK_SUCCESS
                || vkWaitForFences(d->device, 1, &d->fence, VK_TRUE, 30ull * 1000 * 1000 * 1000) != VK_SUCCESS) failed = 1;
        }
        pthread_barrier_wait(&g_phase);
        if (d->inst != signaler) {
            VkResult s = vkGetFenceStatus(d->device, d->fence);
            if (s != VK_NOT_READY) { fprintf(stderr, "instance %d device %d: unsignaled fence status %d while the other instance's is signaled\n", d->inst, d->dev, s); failed = 1; }
        }
        pthread_barrier_wait(&g_phase);
        if (d->inst == signaler && vkResetFences(d->device, 1, &d->fence) != VK_SUCCESS) failed = 1;
        pthread_barrier_wait(&g_phase);
    }
    return failed;
}

static void *worker(void *arg)
{
    device_ctx *d = arg;
    pthread_barrier_wait(&g_workers_ready);
    d->failed = crossed_fences(d) || rounds(d);
    return NULL;
}

static int run_instance(instance_ctx *c)
{
    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .pApplicationName = "guesticd multi_instance", .apiVersion = VK_API_VERSION_1_3 };
    VkInstanceCreateInfo ici = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app };
    KCHECK(vkCreateInstance(&ici, NULL, &c->instance));
    uint32_t n = 1;
    VkPhysicalDevice pd;
    VkResult er = vkEnumeratePhysicalDevices(c->instance, &n, &pd);
    if ((er != VK_SUCCESS && er != VK_INCOMPLETE) || n == 0) { fprintf(stderr, "no physical device\n"); return 1; }
    /* Both devices are set up before either computes, in the same order on both instances. */
    for (int d = 0; d < DEVICES; d++) {
        device_ctx *dc = &c->devs[d];
        dc->inst = c->inst; dc->dev = d; dc->variant = c->inst * DEVICES + d; dc->pd = pd;
        if (setup_device(dc)) return 1;
    }
    /* Both instances are live and set up before any work starts. */
    pthread_barrier_wait(&g_instances_ready);
    pthread_t t[DEVICES];
    for (int d = 0; d < DEVICES; d++) pthread_create(&t[d], NULL, worker, &c->devs[d]);
    int failed = 0;
    for (int d = 0; d < DEVICES; d++) { pthread_join(t[d], NULL); failed |= c->devs[d].failed; }
    for (int d = 0; d < DEVICES; d++) teardown_device(&c->devs[d]);
    vkDestroyInstance(c->instance, NULL);
    return failed;
}

static void *instance_thread(void *arg)
{
    instance_ctx *c = arg;
    c->failed = run_instance(c);
    if (c->failed) {
        /* Keep the other threads from waiting forever on a barrier this instance will never reach. */
        fprintf(stderr, "instance %d failed\n", c->inst);
        fflush(NULL);
        _Exit(1);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: multi_instance SHADER.spv [ROUNDS] [ELEMENTS]\n"); return 2; }
    if (argc > 2) g_rounds = (uint32_t)atoi(argv[2]);
    if (argc > 3) g_count = (uint32_t)atoi(argv[3]);
    if (load_spirv(argv[1], &g_spv)) return 2;
    pthread_barrier_init(&g_instances_ready, NULL, INSTANCES);
    pthread_barrier_init(&g_workers_ready, NULL, INSTANCES * DEVICES);
    pthread_barrier_init(&g_phase, NULL, INSTANCES * DEVICES);
    pthread_t t[INSTANCES];
    for (int i = 0; i < INSTANCES; i++) { g_inst[i].inst = i; pthread_create(&t[i], NULL, instance_thread, &g_inst[i]); }
    for (int i = 0; i < INSTANCES; i++) pthread_join(t[i], NULL);
    int same = 0;
    for (int d = 0; d < DEVICES; d++) same += g_inst[0].devs[d].tmpl == g_inst[1].devs[d].tmpl && g_inst[0].devs[d].fence == g_inst[1].devs[d].fence;
    fprintf(stderr, "devices whose template and fence handles coincide across the two instances: %d of %d\n", same, DEVICES);
    for (int i = 0; i < INSTANCES; i++)
        for (int d = 0; d < DEVICES; d++)
            printf("instance %d device %d: %u rounds of %u elements verified\n", i, d, g_inst[i].devs[d].verified, g_count);
    printf("done\n");
    free(g_spv.code);
    return 0;
}
