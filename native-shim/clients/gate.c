/* A misbehaving application with one misuse per mode, each a class the host's valid-usage gate must
 * refuse before the driver sees it (ranges, lifetimes, handles, limits, enabled commands and features,
 * command-buffer state). It sets up a valid device, buffers and a compute pipeline, commits the misuse,
 * then prints the result of the call that reports it ("result=N"; VK_ERROR_DEVICE_LOST is -4).
 * Usage: gate SHADER.spv MODE */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vulkan/vulkan.h>

#define CHECK(call) do { VkResult r_ = (call); if (r_ != VK_SUCCESS) { printf("setup failed: %s = %d (line %d)\n", #call, r_, __LINE__); return 1; } } while (0)

static VkPhysicalDevice pd;
static VkDevice device;
static VkQueue queue;
static uint32_t family;

static uint32_t host_memory(uint32_t bits)
{
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(pd, &mp);
    for (uint32_t i = 0; i < mp.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (mp.memoryTypes[i].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT)) return i;
    return 0;
}

static VkResult make_device(VkDevice *out, uint32_t queues, const char *extension, const void *features)
{
    float prio[2] = { 1.0f, 1.0f };
    VkDeviceQueueCreateInfo qci = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = family, .queueCount = queues, .pQueuePriorities = prio };
    VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .pNext = features, .queueCreateInfoCount = 1, .pQueueCreateInfos = &qci,
                               .enabledExtensionCount = extension ? 1 : 0, .ppEnabledExtensionNames = &extension };
    return vkCreateDevice(pd, &dci, NULL, out);
}

static VkBufferUsageFlags extra_usage;

static VkResult make_buffer(VkDevice dev, VkDeviceSize size, VkDeviceSize memSize, VkBuffer *buffer, VkDeviceMemory *memory)
{
    VkBufferCreateInfo bci = { .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = size,
        .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT | VK_BUFFER_USAGE_INDIRECT_BUFFER_BIT | extra_usage };
    VkResult r = vkCreateBuffer(dev, &bci, NULL, buffer);
    if (r) return r;
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(dev, *buffer, &req);
    VkMemoryAllocateInfo mai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = memSize ? memSize : req.size, .memoryTypeIndex = host_memory(req.memoryTypeBits) };
    r = vkAllocateMemory(dev, &mai, NULL, memory);
    if (r) return r;
    return vkBindBufferMemory(dev, *buffer, *memory, 0);
}

static void report(const char *what, VkResult r) { printf("%s result=%d\n", what, r); }

int main(int argc, char **argv)
{
    if (argc < 3) { fprintf(stderr, "usage: gate SHADER.spv MODE\n"); return 2; }
    const char *mode = argv[2];
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 2; }
    fseek(f, 0, SEEK_END);
    long codeSize = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint32_t *code = malloc(codeSize);
    if (fread(code, 1, codeSize, f) != (size_t)codeSize) return 2;
    fclose(f);

    int old_api = strcmp(mode, "core-above-version") == 0;
    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .apiVersion = old_api ? VK_API_VERSION_1_0 : VK_API_VERSION_1_3 };
    VkInstanceCreateInfo ici = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app };
    VkInstance instance;
    CHECK(vkCreateInstance(&ici, NULL, &instance));
    uint32_t n = 1;
    if (vkEnumeratePhysicalDevices(instance, &n, &pd) < 0 || n == 0) return 3;
    uint32_t qfCount = 1;
    VkQueueFamilyProperties qf;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &qfCount, &qf);
    family = 0;

    /* Device creation itself: the precise results. */
    if (strcmp(mode, "too-many-queues") == 0) { VkDevice d; report("vkCreateDevice(2 queues of a 1-queue family)", make_device(&d, qf.queueCount + 1, NULL, NULL)); return 0; }
    if (strcmp(mode, "missing-extension") == 0) { VkDevice d; report("vkCreateDevice(unknown extension)", make_device(&d, 1, "VK_GATE_not_an_extension", NULL)); return 0; }
    if (strcmp(mode, "device-address") == 0) {
        VkPhysicalDeviceVulkan12Features v12 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES, .bufferDeviceAddress = VK_TRUE };
        VkDevice d;
        report("vkCreateDevice(bufferDeviceAddress)", make_device(&d, 1, NULL, &v12));
        return 0;
    }
    /* The extension commands' modes enable their extension and feature: the gate's own checks are on trial. */
    VkPhysicalDeviceMultiDrawFeaturesEXT multiDraw = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MULTI_DRAW_FEATURES_EXT, .multiDraw = VK_TRUE };
    VkPhysicalDeviceVulkan13Features v13 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES, .pNext = &multiDraw, .dynamicRendering = VK_TRUE };
    VkPhysicalDeviceVertexInputDynamicStateFeaturesEXT vertexInput = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VERTEX_INPUT_DYNAMIC_STATE_FEATURES_EXT, .vertexInputDynamicState = VK_TRUE };
    VkPhysicalDeviceTransformFeedbackFeaturesEXT xfb = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_TRANSFORM_FEEDBACK_FEATURES_EXT, .transformFeedback = VK_TRUE };
    VkPhysicalDeviceColorWriteEnableFeaturesEXT colorWrite = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COLOR_WRITE_ENABLE_FEATURES_EXT, .colorWriteEnable = VK_TRUE };
    int multi_mode = strcmp(mode, "multi-draw-no-pipeline") == 0, vertex_mode = strcmp(mode, "vertex-input-limit") == 0, xfb_mode = strcmp(mode, "xfb-range") == 0;
    int color_mode = strcmp(mode, "color-write-range") == 0;
    if (multi_mode) CHECK(make_device(&device, 1, "VK_EXT_multi_draw", &v13));
    else if (vertex_mode) CHECK(make_device(&device, 1, "VK_EXT_vertex_input_dynamic_state", &vertexInput));
    else if (xfb_mode) CHECK(make_device(&device, 1, "VK_EXT_transform_feedback", &xfb));
    else if (color_mode) CHECK(make_device(&device, 1, "VK_EXT_color_write_enable", &colorWrite));
    else CHECK(make_device(&device, 1, NULL, NULL));
    vkGetDeviceQueue(device, family, 0, &queue);

    VkBuffer buffer;
    VkDeviceMemory memory;
    if (strcmp(mode, "struct-not-enabled") == 0) {
        /* A VK_EXT_memory_priority struct on a device that did not enable the extension: the driver would read it anyway. */
        VkMemoryPriorityAllocateInfoEXT prio = { .sType = VK_STRUCTURE_TYPE_MEMORY_PRIORITY_ALLOCATE_INFO_EXT, .priority = 1.0f };
        VkMemoryAllocateInfo mai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .pNext = &prio, .allocationSize = 4096, .memoryTypeIndex = 0 };
        report("vkAllocateMemory(with VkMemoryPriorityAllocateInfoEXT)", vkAllocateMemory(device, &mai, NULL, &memory));
        return 0;
    }
    if (strcmp(mode, "render-pass-attachment") == 0 || strcmp(mode, "render-pass2-dependency") == 0) {
        /* A subpass naming attachment 5 of a pass with one, or a dependency on subpass 3 of one: the driver
         * would index past the pass's own arrays. Creations are not waited for: the refusal shows at the next wait. */
        VkRenderPass rp;
        VkResult r;
        if (strcmp(mode, "render-pass-attachment") == 0) {
            VkAttachmentDescription ad = { .format = VK_FORMAT_R8G8B8A8_UNORM, .samples = VK_SAMPLE_COUNT_1_BIT,
                .loadOp = VK_ATTACHMENT_LOAD_OP_CLEAR, .storeOp = VK_ATTACHMENT_STORE_OP_STORE, .stencilLoadOp = VK_ATTACHMENT_LOAD_OP_DONT_CARE,
                .stencilStoreOp = VK_ATTACHMENT_STORE_OP_DONT_CARE, .finalLayout = VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL };
            VkAttachmentReference ref = { 5, VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL };
            VkSubpassDescription sd = { .pipelineBindPoint = VK_PIPELINE_BIND_POINT_GRAPHICS, .colorAttachmentCount = 1, .pColorAttachments = &ref };
            VkRenderPassCreateInfo ci = { .sType = VK_STRUCTURE_TYPE_RENDER_PASS_CREATE_INFO, .attachmentCount = 1, .pAttachments = &ad, .subpassCount = 1, .pSubpasses = &sd };
            r = vkCreateRenderPass(device, &ci, NULL, &rp);
        } else {
            VkAttachmentDescription2 ad = { .sType = VK_STRUCTURE_TYPE_ATTACHMENT_DESCRIPTION_2, .format = VK_FORMAT_R8G8B8A8_UNORM, .samples = VK_SAMPLE_COUNT_1_BIT,
                .loadOp = VK_ATTACHMENT_LOAD_OP_CLEAR, .storeOp = VK_ATTACHMENT_STORE_OP_STORE, .stencilLoadOp = VK_ATTACHMENT_LOAD_OP_DONT_CARE,
                .stencilStoreOp = VK_ATTACHMENT_STORE_OP_DONT_CARE, .finalLayout = VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL };
            VkAttachmentReference2 ref = { .sType = VK_STRUCTURE_TYPE_ATTACHMENT_REFERENCE_2, .attachment = 0, .layout = VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL, .aspectMask = VK_IMAGE_ASPECT_COLOR_BIT };
            VkSubpassDescription2 sd = { .sType = VK_STRUCTURE_TYPE_SUBPASS_DESCRIPTION_2, .pipelineBindPoint = VK_PIPELINE_BIND_POINT_GRAPHICS, .colorAttachmentCount = 1, .pColorAttachments = &ref };
            VkSubpassDependency2 dep = { .sType = VK_STRUCTURE_TYPE_SUBPASS_DEPENDENCY_2, .srcSubpass = 0, .dstSubpass = 3,
                .srcStageMask = VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT, .dstStageMask = VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT,
                .srcAccessMask = VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT, .dstAccessMask = VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT };
            VkRenderPassCreateInfo2 ci = { .sType = VK_STRUCTURE_TYPE_RENDER_PASS_CREATE_INFO_2, .attachmentCount = 1, .pAttachments = &ad,
                .subpassCount = 1, .pSubpasses = &sd, .dependencyCount = 1, .pDependencies = &dep };
            r = vkCreateRenderPass2(device, &ci, NULL, &rp);
        }
        if (r) report("vkCreateRenderPass(out-of-range reference)", r);
        else report("vkDeviceWaitIdle after vkCreateRenderPass(out-of-range reference)", vkDeviceWaitIdle(device));
        return 0;
    }
    if (strcmp(mode, "bind-oversize") == 0) {
        /* 64 MiB of buffer bound to 4 KiB of memory: a fill would write over the host heap. */
        VkBufferCreateInfo bci = { .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = 64u << 20, .usage = VK_BUFFER_USAGE_TRANSFER_DST_BIT };
        CHECK(vkCreateBuffer(device, &bci, NULL, &buffer));
        VkMemoryAllocateInfo mai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = 4096, .memoryTypeIndex = 0 };
        CHECK(vkAllocateMemory(device, &mai, NULL, &memory));
        /* Protocol 1.2 does not wait for a bind's result: the refusal shows at the next wait. */
        VkResult br = vkBindBufferMemory(device, buffer, memory, 0);
        if (br) report("vkBindBufferMemory(64 MiB buffer, 4 KiB memory)", br);
        else report("vkDeviceWaitIdle after vkBindBufferMemory(64 MiB buffer, 4 KiB memory)", vkDeviceWaitIdle(device));
        return 0;
    }
    if (xfb_mode) extra_usage = VK_BUFFER_USAGE_TRANSFORM_FEEDBACK_BUFFER_BIT_EXT;
    CHECK(make_buffer(device, 4096, 0, &buffer, &memory));

    /* A compute pipeline like the compute client's: set 0 with two storage buffers, 8 bytes of push constants. */
    VkDescriptorSetLayoutBinding bindings[2] = {
        { .binding = 0, .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = 1, .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT },
        { .binding = 1, .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = 1, .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT },
    };
    VkDescriptorSetLayoutCreateInfo dslci = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO, .bindingCount = 2, .pBindings = bindings };
    VkDescriptorSetLayout dsl;
    CHECK(vkCreateDescriptorSetLayout(device, &dslci, NULL, &dsl));
    VkPushConstantRange pcr = { .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .offset = 0, .size = 8 };
    int no_sets = strcmp(mode, "layout-lacks-set") == 0;
    VkPipelineLayoutCreateInfo plci = { .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, .setLayoutCount = no_sets ? 0 : 1, .pSetLayouts = &dsl,
                                        .pushConstantRangeCount = 1, .pPushConstantRanges = &pcr };
    VkPipelineLayout layout;
    CHECK(vkCreatePipelineLayout(device, &plci, NULL, &layout));
    if (strcmp(mode, "invalid-spirv") == 0) code[3] = 1; /* the id bound: every id of the module is now out of range */
    VkShaderModuleCreateInfo smci = { .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, .codeSize = (size_t)codeSize, .pCode = code };
    VkShaderModule module;
    CHECK(vkCreateShaderModule(device, &smci, NULL, &module));
    VkComputePipelineCreateInfo cpci = { .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO, .layout = layout,
        .stage = { .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, .stage = VK_SHADER_STAGE_COMPUTE_BIT, .module = module,
                   .pName = strcmp(mode, "wrong-entry-point") == 0 ? "not_main" : "main" } };
    VkPipeline pipeline;
    VkResult pr = vkCreateComputePipelines(device, VK_NULL_HANDLE, 1, &cpci, NULL, &pipeline);
    if (no_sets) { report("vkCreateComputePipelines(layout without the shader's set)", pr); return 0; }
    if (strcmp(mode, "invalid-spirv") == 0 || strcmp(mode, "wrong-entry-point") == 0) { report("vkCreateComputePipelines(bad shader)", pr); return 0; }
    CHECK(pr);
    VkDescriptorPoolSize ps = { .type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = 2 };
    VkDescriptorPoolCreateInfo dpci = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, .maxSets = 1, .poolSizeCount = 1, .pPoolSizes = &ps };
    VkDescriptorPool dpool;
    CHECK(vkCreateDescriptorPool(device, &dpci, NULL, &dpool));
    VkDescriptorSetAllocateInfo dsai = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO, .descriptorPool = dpool, .descriptorSetCount = 1, .pSetLayouts = &dsl };
    VkDescriptorSet set;
    CHECK(vkAllocateDescriptorSets(device, &dsai, &set));
    VkDescriptorBufferInfo infos[2] = { { buffer, 0, VK_WHOLE_SIZE }, { buffer, 0, VK_WHOLE_SIZE } };
    if (strcmp(mode, "descriptor-range") == 0) infos[1].range = 8192; /* past the 4096-byte buffer */
    VkWriteDescriptorSet writes[2];
    for (int b = 0; b < 2; b++)
        writes[b] = (VkWriteDescriptorSet){ .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, .dstSet = set, .dstBinding = (uint32_t)b, .descriptorCount = 1,
            .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .pBufferInfo = &infos[b] };
    if (strcmp(mode, "descriptor-binding") == 0) writes[1].dstBinding = 7; /* not in the layout */
    vkUpdateDescriptorSets(device, 2, writes, 0, NULL);

    VkCommandPoolCreateInfo cpoolci = { .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT, .queueFamilyIndex = family };
    VkCommandPool cpool;
    CHECK(vkCreateCommandPool(device, &cpoolci, NULL, &cpool));
    VkCommandBufferAllocateInfo cbai = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, .commandPool = cpool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = 1 };
    VkCommandBuffer cmd;
    CHECK(vkAllocateCommandBuffers(device, &cbai, &cmd));
    VkCommandBufferBeginInfo bi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO };
    uint32_t params[2] = { 3, 16 };

    if (strcmp(mode, "destroy-instance-first") == 0) {
        /* An application bug, not an attack: the instance goes while its device lives. */
        vkDestroyInstance(instance, NULL);
        printf("destroyed the instance first\n");
        return 0;
    }
    if (strcmp(mode, "outside-begin") != 0) {
        VkResult br = vkBeginCommandBuffer(cmd, &bi); /* the first call that waits after an asynchronous misuse */
        if (br) { report("vkBeginCommandBuffer", br); return 0; }
    }
    VkBuffer other = VK_NULL_HANDLE;
    VkDeviceMemory otherMemory;
    VkDevice device2;
    if (strcmp(mode, "fill-range") == 0) vkCmdFillBuffer(cmd, buffer, 8192, 256, 0xAB);
    else if (strcmp(mode, "copy-range") == 0) { VkBufferCopy c = { 0, 2048, 4096 }; vkCmdCopyBuffer(cmd, buffer, buffer, 1, &c); }
    else if (strcmp(mode, "update-range") == 0) { uint32_t data[64] = { 0 }; vkCmdUpdateBuffer(cmd, buffer, 4000, sizeof data, data); }
    else if (strcmp(mode, "dispatch-no-pipeline") == 0) vkCmdDispatch(cmd, 1, 1, 1);
    else if (strcmp(mode, "outside-begin") == 0) vkCmdFillBuffer(cmd, buffer, 0, 256, 0xAB);
    else if (strcmp(mode, "draw-outside-render-pass") == 0) vkCmdDraw(cmd, 3, 1, 0, 0);
    else if (strcmp(mode, "null-handle") == 0) vkCmdFillBuffer(cmd, VK_NULL_HANDLE, 0, 256, 0xAB);
    else if (multi_mode) {
        /* Two draws inside dynamic rendering with no graphics pipeline bound: the driver would draw with none. */
        VkRenderingInfo ri = { .sType = VK_STRUCTURE_TYPE_RENDERING_INFO, .renderArea = { { 0, 0 }, { 16, 16 } }, .layerCount = 1 };
        vkCmdBeginRendering(cmd, &ri);
        VkMultiDrawInfoEXT draws[2] = { { 0, 3 }, { 3, 3 } };
        PFN_vkCmdDrawMultiEXT drawMulti = (PFN_vkCmdDrawMultiEXT)vkGetDeviceProcAddr(device, "vkCmdDrawMultiEXT");
        if (!drawMulti) { printf("vkCmdDrawMultiEXT not exposed\n"); return 0; }
        drawMulti(cmd, 2, draws, 1, 0, sizeof draws[0]);
        vkCmdEndRendering(cmd);
    }
    else if (vertex_mode) {
        /* A vertex binding number far past maxVertexInputBindings: the driver indexes its binding array with it. */
        VkVertexInputBindingDescription2EXT binding = { .sType = VK_STRUCTURE_TYPE_VERTEX_INPUT_BINDING_DESCRIPTION_2_EXT, .binding = 1000, .stride = 16,
            .inputRate = VK_VERTEX_INPUT_RATE_VERTEX, .divisor = 1 };
        PFN_vkCmdSetVertexInputEXT setVertexInput = (PFN_vkCmdSetVertexInputEXT)vkGetDeviceProcAddr(device, "vkCmdSetVertexInputEXT");
        if (!setVertexInput) { printf("vkCmdSetVertexInputEXT not exposed\n"); return 0; }
        setVertexInput(cmd, 1, &binding, 0, NULL);
    }
    else if (color_mode) {
        /* One more color attachment than the device has: drivers keep these in an array of maxColorAttachments. */
        VkPhysicalDeviceProperties props;
        vkGetPhysicalDeviceProperties(pd, &props);
        VkBool32 enables[64] = { 0 };
        uint32_t count = props.limits.maxColorAttachments + 1;
        PFN_vkCmdSetColorWriteEnableEXT setColorWrite = (PFN_vkCmdSetColorWriteEnableEXT)vkGetDeviceProcAddr(device, "vkCmdSetColorWriteEnableEXT");
        if (!setColorWrite || count > 64) { printf("vkCmdSetColorWriteEnableEXT not usable\n"); return 0; }
        setColorWrite(cmd, count, enables);
    }
    else if (xfb_mode) {
        /* 8 KiB of transform feedback output bound over a 4 KiB buffer: the driver would write past it. */
        VkDeviceSize offset = 0, size = 8192;
        PFN_vkCmdBindTransformFeedbackBuffersEXT bindXfb = (PFN_vkCmdBindTransformFeedbackBuffersEXT)vkGetDeviceProcAddr(device, "vkCmdBindTransformFeedbackBuffersEXT");
        if (!bindXfb) { printf("vkCmdBindTransformFeedbackBuffersEXT not exposed\n"); return 0; }
        bindXfb(cmd, 0, 1, &buffer, &offset, &size);
    }
    else if (strcmp(mode, "core-above-version") == 0 || strcmp(mode, "extension-not-enabled") == 0) {
        /* A 1.3 command on a 1.0 instance; an extension command the device did not enable. The ICD hands out
         * every entry point; the host's driver has none for these, and its loader stub would jump through NULL. */
        const char *name = old_api ? "vkCmdSetCullMode" : "vkCmdSetLineStippleEXT";
        PFN_vkVoidFunction fn = vkGetDeviceProcAddr(device, name);
        if (!fn) { printf("%s not exposed\n", name); return 0; }
        if (old_api) ((PFN_vkCmdSetCullMode)fn)(cmd, VK_CULL_MODE_BACK_BIT);
        else ((PFN_vkCmdSetLineStippleEXT)fn)(cmd, 1, 0xAAAA);
    }
    else {
        vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline);
        if (strcmp(mode, "sets-unbound") != 0) vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, layout, 0, 1, &set, 0, NULL);
        if (strcmp(mode, "push-range") == 0) { uint32_t big[32] = { 0 }; vkCmdPushConstants(cmd, layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof big, big); }
        else vkCmdPushConstants(cmd, layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof params, params);
        if (strcmp(mode, "dispatch-limit") == 0) vkCmdDispatch(cmd, 0x7FFFFFFF, 1, 1);
        else if (strcmp(mode, "indirect-range") == 0) vkCmdDispatchIndirect(cmd, buffer, 4092);
        else if (strcmp(mode, "other-device") == 0) {
            CHECK(make_device(&device2, 1, NULL, NULL));
            CHECK(make_buffer(device2, 4096, 0, &other, &otherMemory));
            vkCmdFillBuffer(cmd, other, 0, 256, 0xAB); /* device2's buffer in device1's command buffer */
        }
        else if (strcmp(mode, "freed-memory") == 0) {
            vkFreeMemory(device, memory, NULL); /* still bound to the buffer */
            vkCmdFillBuffer(cmd, buffer, 0, 256, 0xAB);
        }
        else if (strcmp(mode, "destroyed-buffer") == 0) {
            CHECK(make_buffer(device, 4096, 0, &other, &otherMemory));
            vkCmdFillBuffer(cmd, other, 0, 256, 0xAB);
        }
        else if (strcmp(mode, "image-copy-range") == 0) {
            VkImageCreateInfo ic = { .sType = VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO, .imageType = VK_IMAGE_TYPE_2D, .format = VK_FORMAT_R8G8B8A8_UNORM,
                .extent = { 16, 16, 1 }, .mipLevels = 1, .arrayLayers = 1, .samples = VK_SAMPLE_COUNT_1_BIT, .tiling = VK_IMAGE_TILING_OPTIMAL,
                .usage = VK_IMAGE_USAGE_TRANSFER_DST_BIT };
            VkImage image;
            CHECK(vkCreateImage(device, &ic, NULL, &image));
            VkMemoryRequirements req;
            vkGetImageMemoryRequirements(device, image, &req);
            VkMemoryAllocateInfo mai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = req.size, .memoryTypeIndex = host_memory(req.memoryTypeBits) };
            VkDeviceMemory im;
            CHECK(vkAllocateMemory(device, &mai, NULL, &im));
            CHECK(vkBindImageMemory(device, image, im, 0));
            /* 16x16 RGBA8 needs 1024 bytes of buffer; from offset 3584 of 4096 they are not there. */
            VkBufferImageCopy region = { .bufferOffset = 3584, .imageSubresource = { VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1 }, .imageExtent = { 16, 16, 1 } };
            vkCmdCopyBufferToImage(cmd, buffer, image, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, 1, &region);
        }
        else if (strcmp(mode, "image-view-range") == 0) {
            VkImageCreateInfo ic = { .sType = VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO, .imageType = VK_IMAGE_TYPE_2D, .format = VK_FORMAT_R8G8B8A8_UNORM,
                .extent = { 16, 16, 1 }, .mipLevels = 1, .arrayLayers = 1, .samples = VK_SAMPLE_COUNT_1_BIT, .tiling = VK_IMAGE_TILING_OPTIMAL,
                .usage = VK_IMAGE_USAGE_SAMPLED_BIT };
            VkImage image;
            CHECK(vkCreateImage(device, &ic, NULL, &image));
            VkMemoryRequirements req;
            vkGetImageMemoryRequirements(device, image, &req);
            VkMemoryAllocateInfo mai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = req.size, .memoryTypeIndex = host_memory(req.memoryTypeBits) };
            VkDeviceMemory im;
            CHECK(vkAllocateMemory(device, &mai, NULL, &im));
            CHECK(vkBindImageMemory(device, image, im, 0));
            VkImageViewCreateInfo vci = { .sType = VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO, .image = image, .viewType = VK_IMAGE_VIEW_TYPE_2D,
                .format = VK_FORMAT_R8G8B8A8_UNORM, .subresourceRange = { VK_IMAGE_ASPECT_COLOR_BIT, 3, 1, 0, 1 } }; /* mip 3 of 1 */
            VkImageView view;
            report("vkCreateImageView(mip 3 of 1)", vkCreateImageView(device, &vci, NULL, &view));
            report("vkDeviceWaitIdle", vkDeviceWaitIdle(device));
            return 0;
        }
        else vkCmdDispatch(cmd, 1, 1, 1);
    }
    VkResult r = vkEndCommandBuffer(cmd);
    if (r) { report("vkEndCommandBuffer", r); return 0; }
    if (strcmp(mode, "destroyed-buffer") == 0) vkDestroyBuffer(device, other, NULL); /* recorded, then destroyed: the command buffer is invalid */
    VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &cmd };
    r = vkQueueSubmit(queue, 1, &si, VK_NULL_HANDLE);
    if (r) { report("vkQueueSubmit", r); return 0; }
    report("vkQueueWaitIdle", vkQueueWaitIdle(queue));
    return 0;
}
