/* An offscreen render client as an application would write it. One frame of a small scene, rendered at
 * 4 samples and resolved to a single-sample RGBA8 image, either through a VkRenderPass + VkFramebuffer
 * (default) or through Vulkan 1.3 dynamic rendering (--dynamic). The scene:
 *   - a textured quad (a procedural 16x16 RGBA8 texture uploaded through a staging buffer,
 *     vkCmdCopyBufferToImage and layout barriers, sampled through a combined image sampler descriptor);
 *   - an opaque red triangle whose depth runs through the quad's plane, so the depth test cuts it;
 *   - a semi-transparent green triangle drawn last with standard alpha blending;
 * all from one vertex buffer and one index buffer (both device-local, filled through a staging buffer)
 * with vkCmdDrawIndexed. The resolved image is copied to a HOST_VISIBLE buffer, read after a fence,
 * written as a binary PPM (P6), and summarised as `checksum: <FNV-1a 64 of the RGB bytes>`,
 * `nonblack: <pixels>` and `colours: <distinct RGB values>`.
 * Usage: render VERT.spv FRAG.spv OUT.ppm [--dynamic] [--provoke-validation] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vulkan/vulkan.h>

#define CHECK(call) do { VkResult r_ = (call); if (r_ != VK_SUCCESS) { \
    fprintf(stderr, "FAILED %s = %d (line %d)\n", #call, r_, __LINE__); exit(1); } } while (0)
#define FAIL(...) do { fprintf(stderr, "FAILED: " __VA_ARGS__); fprintf(stderr, "\n"); exit(1); } while (0)

enum { WIDTH = 128, HEIGHT = 128, TEX_SIZE = 16 };
#define SAMPLES VK_SAMPLE_COUNT_4_BIT
#define COLOR_FORMAT VK_FORMAT_R8G8B8A8_UNORM
#define DEPTH_FORMAT VK_FORMAT_D32_SFLOAT

static VkPhysicalDevice pd;
static VkDevice device;

typedef struct { float pos[3]; float uv[2]; uint8_t color[4]; } Vertex;

/* Quad: slightly rotated, at depth 0.5, texture repeated twice. Red triangle: depth from 0.2 to 0.8, so it
 * passes in front of the quad on one side and behind it on the other. Green triangle: in front of everything,
 * alpha 0.5. */
static const Vertex vertices[] = {
    { { -0.70f, -0.75f, 0.5f }, { 0.0f, 0.0f }, { 255, 255, 255, 255 } },
    { {  0.75f, -0.65f, 0.5f }, { 2.0f, 0.0f }, { 255, 255, 255, 255 } },
    { {  0.65f,  0.75f, 0.5f }, { 2.0f, 2.0f }, { 255, 255, 255, 255 } },
    { { -0.75f,  0.65f, 0.5f }, { 0.0f, 2.0f }, { 255, 255, 255, 255 } },

    { { -0.95f,  0.10f, 0.2f }, { 0.0f, 0.0f }, { 230, 30, 30, 255 } },
    { {  0.40f, -0.95f, 0.8f }, { 0.0f, 0.0f }, { 230, 30, 30, 255 } },
    { {  0.55f,  0.90f, 0.8f }, { 0.0f, 0.0f }, { 230, 30, 30, 255 } },

    { { -0.30f, -0.90f, 0.1f }, { 0.0f, 0.0f }, { 20, 220, 60, 128 } },
    { {  0.95f,  0.30f, 0.1f }, { 0.0f, 0.0f }, { 20, 220, 60, 128 } },
    { { -0.50f,  0.95f, 0.1f }, { 0.0f, 0.0f }, { 20, 220, 60, 128 } },
};
/* Indices are relative to each primitive's first vertex (vertexOffset in vkCmdDrawIndexed). */
static const uint16_t indices[] = { 0, 1, 2, 2, 3, 0,   0, 1, 2,   0, 1, 2 };

static uint32_t find_memory(uint32_t bits, VkMemoryPropertyFlags want)
{
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(pd, &mp);
    for (uint32_t i = 0; i < mp.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (mp.memoryTypes[i].propertyFlags & want) == want) return i;
    FAIL("no memory type with properties 0x%x in bits 0x%x", want, bits);
}

static void create_buffer(VkDeviceSize size, VkBufferUsageFlags usage, VkMemoryPropertyFlags props, VkBuffer *buffer, VkDeviceMemory *memory)
{
    VkBufferCreateInfo bci = { .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = size, .usage = usage, .sharingMode = VK_SHARING_MODE_EXCLUSIVE };
    CHECK(vkCreateBuffer(device, &bci, NULL, buffer));
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(device, *buffer, &req);
    VkMemoryAllocateInfo mai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = req.size, .memoryTypeIndex = find_memory(req.memoryTypeBits, props) };
    CHECK(vkAllocateMemory(device, &mai, NULL, memory));
    CHECK(vkBindBufferMemory(device, *buffer, *memory, 0));
}

static void create_image(uint32_t w, uint32_t h, VkFormat format, VkSampleCountFlagBits samples, VkImageUsageFlags usage,
                         VkImageAspectFlags aspect, VkImage *image, VkDeviceMemory *memory, VkImageView *view)
{
    VkImageCreateInfo ici = { .sType = VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO, .imageType = VK_IMAGE_TYPE_2D, .format = format,
        .extent = { w, h, 1 }, .mipLevels = 1, .arrayLayers = 1, .samples = samples, .tiling = VK_IMAGE_TILING_OPTIMAL,
        .usage = usage, .sharingMode = VK_SHARING_MODE_EXCLUSIVE, .initialLayout = VK_IMAGE_LAYOUT_UNDEFINED };
    CHECK(vkCreateImage(device, &ici, NULL, image));
    VkMemoryRequirements req;
    vkGetImageMemoryRequirements(device, *image, &req);
    VkMemoryAllocateInfo mai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = req.size,
                                 .memoryTypeIndex = find_memory(req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT) };
    CHECK(vkAllocateMemory(device, &mai, NULL, memory));
    CHECK(vkBindImageMemory(device, *image, *memory, 0));
    VkImageViewCreateInfo vci = { .sType = VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO, .image = *image, .viewType = VK_IMAGE_VIEW_TYPE_2D,
        .format = format, .subresourceRange = { aspect, 0, 1, 0, 1 } };
    CHECK(vkCreateImageView(device, &vci, NULL, view));
}

static void image_barrier(VkCommandBuffer cmd, VkImage image, VkImageAspectFlags aspect, VkImageLayout from, VkImageLayout to,
                          VkPipelineStageFlags srcStage, VkAccessFlags srcAccess, VkPipelineStageFlags dstStage, VkAccessFlags dstAccess)
{
    VkImageMemoryBarrier b = { .sType = VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER, .srcAccessMask = srcAccess, .dstAccessMask = dstAccess,
        .oldLayout = from, .newLayout = to, .srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED, .dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED,
        .image = image, .subresourceRange = { aspect, 0, 1, 0, 1 } };
    vkCmdPipelineBarrier(cmd, srcStage, dstStage, 0, 0, NULL, 0, NULL, 1, &b);
}

static VkShaderModule load_shader(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (size <= 0 || size % 4) FAIL("%s: not a SPIR-V file (%ld bytes)", path, size);
    uint32_t *code = malloc((size_t)size);
    if (fread(code, 1, (size_t)size, f) != (size_t)size) FAIL("%s: short read", path);
    fclose(f);
    VkShaderModuleCreateInfo smci = { .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, .codeSize = (size_t)size, .pCode = code };
    VkShaderModule module;
    CHECK(vkCreateShaderModule(device, &smci, NULL, &module));
    free(code);
    return module;
}

static void submit_and_wait(VkQueue queue, VkCommandBuffer cmd, VkFence fence)
{
    VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &cmd };
    CHECK(vkQueueSubmit(queue, 1, &si, fence));
    CHECK(vkWaitForFences(device, 1, &fence, VK_TRUE, 30ull * 1000 * 1000 * 1000));
    CHECK(vkResetFences(device, 1, &fence));
}

int main(int argc, char **argv)
{
    if (argc < 4) { fprintf(stderr, "usage: render VERT.spv FRAG.spv OUT.ppm [--dynamic] [--multi-draw] [--provoke-validation]\n"); return 2; }
    int dynamic = 0, provoke = 0, multi = 0;
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--dynamic") == 0) dynamic = 1;
        else if (strcmp(argv[i], "--multi-draw") == 0) multi = 1;
        else if (strcmp(argv[i], "--provoke-validation") == 0) provoke = 1;
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }

    /* ---- instance, device, queue ---- */
    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .pApplicationName = "guesticd render", .apiVersion = VK_API_VERSION_1_3 };
    VkInstanceCreateInfo ici = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app };
    VkInstance instance;
    CHECK(vkCreateInstance(&ici, NULL, &instance));
    uint32_t n = 1;
    VkResult er = vkEnumeratePhysicalDevices(instance, &n, &pd);
    if ((er != VK_SUCCESS && er != VK_INCOMPLETE) || n == 0) FAIL("no physical device (%d)", er);
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(pd, &props);
    printf("device: %s\n", props.deviceName);
    if (props.apiVersion < VK_API_VERSION_1_3) FAIL("device supports Vulkan %u.%u, need 1.3", VK_API_VERSION_MAJOR(props.apiVersion), VK_API_VERSION_MINOR(props.apiVersion));
    VkSampleCountFlags counts = props.limits.framebufferColorSampleCounts & props.limits.framebufferDepthSampleCounts;
    if (!(counts & SAMPLES)) FAIL("4 samples not supported for colour and depth (0x%x)", counts);

    VkPhysicalDeviceVulkan13Features have13 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES };
    VkPhysicalDeviceFeatures2 have = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &have13 };
    vkGetPhysicalDeviceFeatures2(pd, &have);
    if (!have13.dynamicRendering) FAIL("dynamicRendering not supported");

    VkFormatProperties fp;
    vkGetPhysicalDeviceFormatProperties(pd, COLOR_FORMAT, &fp);
    VkFormatFeatureFlags needColor = VK_FORMAT_FEATURE_COLOR_ATTACHMENT_BIT | VK_FORMAT_FEATURE_COLOR_ATTACHMENT_BLEND_BIT |
        VK_FORMAT_FEATURE_SAMPLED_IMAGE_BIT | VK_FORMAT_FEATURE_SAMPLED_IMAGE_FILTER_LINEAR_BIT | VK_FORMAT_FEATURE_TRANSFER_SRC_BIT | VK_FORMAT_FEATURE_TRANSFER_DST_BIT;
    if ((fp.optimalTilingFeatures & needColor) != needColor) FAIL("R8G8B8A8_UNORM lacks features (0x%x)", fp.optimalTilingFeatures);
    vkGetPhysicalDeviceFormatProperties(pd, DEPTH_FORMAT, &fp);
    if (!(fp.optimalTilingFeatures & VK_FORMAT_FEATURE_DEPTH_STENCIL_ATTACHMENT_BIT)) FAIL("D32_SFLOAT is not a depth attachment format");
    vkGetPhysicalDeviceFormatProperties(pd, VK_FORMAT_R32G32B32_SFLOAT, &fp);
    if (!(fp.bufferFeatures & VK_FORMAT_FEATURE_VERTEX_BUFFER_BIT)) FAIL("R32G32B32_SFLOAT is not a vertex format");

    uint32_t qfCount = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &qfCount, NULL);
    VkQueueFamilyProperties qfs[16];
    if (qfCount > 16) qfCount = 16;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &qfCount, qfs);
    uint32_t family = UINT32_MAX;
    for (uint32_t i = 0; i < qfCount; i++) if (qfs[i].queueFlags & VK_QUEUE_GRAPHICS_BIT) { family = i; break; }
    if (family == UINT32_MAX) FAIL("no graphics queue");

    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = family, .queueCount = 1, .pQueuePriorities = &prio };
    /* --multi-draw: the same frame through VK_EXT_multi_draw, its draws read from a padded array (stride 20). */
    VkPhysicalDeviceMultiDrawFeaturesEXT wantMulti = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MULTI_DRAW_FEATURES_EXT, .multiDraw = VK_TRUE };
    VkPhysicalDeviceVulkan13Features want13 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES, .pNext = multi ? &wantMulti : NULL, .dynamicRendering = VK_TRUE };
    const char *multiExt = "VK_EXT_multi_draw";
    VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .pNext = &want13, .queueCreateInfoCount = 1, .pQueueCreateInfos = &qci,
                               .enabledExtensionCount = multi ? 1 : 0, .ppEnabledExtensionNames = &multiExt };
    CHECK(vkCreateDevice(pd, &dci, NULL, &device));
    VkQueue queue;
    vkGetDeviceQueue(device, family, 0, &queue);

    VkCommandPoolCreateInfo cpoolci = { .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT, .queueFamilyIndex = family };
    VkCommandPool cpool;
    CHECK(vkCreateCommandPool(device, &cpoolci, NULL, &cpool));
    VkCommandBufferAllocateInfo cbai = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, .commandPool = cpool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = 2 };
    VkCommandBuffer cmds[2];
    CHECK(vkAllocateCommandBuffers(device, &cbai, cmds));
    /* --provoke-validation: one deliberate misuse (an undefined flag bit the driver ignores), so a test can
     * prove the validation layer is really watching when it reports nothing for the run without it. */
    VkFenceCreateInfo fci = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO, .flags = provoke ? 0x80 : 0 };
    VkFence fence;
    CHECK(vkCreateFence(device, &fci, NULL, &fence));

    /* ---- resources ---- */
    const VkDeviceSize vbytes = sizeof vertices, ibytes = sizeof indices, tbytes = TEX_SIZE * TEX_SIZE * 4;
    VkBuffer staging, vbuf, ibuf, readback;
    VkDeviceMemory stagingMem, vmem, imem, readbackMem;
    create_buffer(vbytes + ibytes + tbytes, VK_BUFFER_USAGE_TRANSFER_SRC_BIT,
                  VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, &staging, &stagingMem);
    create_buffer(vbytes, VK_BUFFER_USAGE_VERTEX_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, &vbuf, &vmem);
    create_buffer(ibytes, VK_BUFFER_USAGE_INDEX_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, &ibuf, &imem);
    const VkDeviceSize pixelBytes = (VkDeviceSize)WIDTH * HEIGHT * 4;
    create_buffer(pixelBytes, VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                  VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, &readback, &readbackMem);

    uint8_t *s;
    CHECK(vkMapMemory(device, stagingMem, 0, VK_WHOLE_SIZE, 0, (void **)&s));
    memcpy(s, vertices, vbytes);
    memcpy(s + vbytes, indices, ibytes);
    uint8_t *texels = s + vbytes + ibytes;       /* a checkerboard of two gradients, every texel distinct */
    for (uint32_t y = 0; y < TEX_SIZE; y++)
        for (uint32_t x = 0; x < TEX_SIZE; x++) {
            uint8_t *t = texels + 4 * (y * TEX_SIZE + x);
            int dark = ((x / 4) + (y / 4)) & 1;
            t[0] = (uint8_t)(dark ? 40 + x * 8 : 255 - x * 4);
            t[1] = (uint8_t)(dark ? 40 + y * 8 : 200 + y * 3);
            t[2] = (uint8_t)(dark ? 160 : 60 + (x ^ y) * 10);
            t[3] = 255;
        }
    vkUnmapMemory(device, stagingMem);

    VkImage texImage, colorImage, depthImage, resolveImage;
    VkDeviceMemory texMem, colorMem, depthMem, resolveMem;
    VkImageView texView, colorView, depthView, resolveView;
    create_image(TEX_SIZE, TEX_SIZE, COLOR_FORMAT, VK_SAMPLE_COUNT_1_BIT, VK_IMAGE_USAGE_SAMPLED_BIT | VK_IMAGE_USAGE_TRANSFER_DST_BIT,
                 VK_IMAGE_ASPECT_COLOR_BIT, &texImage, &texMem, &texView);
    create_image(WIDTH, HEIGHT, COLOR_FORMAT, SAMPLES, VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT,
                 VK_IMAGE_ASPECT_COLOR_BIT, &colorImage, &colorMem, &colorView);
    create_image(WIDTH, HEIGHT, DEPTH_FORMAT, SAMPLES, VK_IMAGE_USAGE_DEPTH_STENCIL_ATTACHMENT_BIT,
                 VK_IMAGE_ASPECT_DEPTH_BIT, &depthImage, &depthMem, &depthView);
    create_image(WIDTH, HEIGHT, COLOR_FORMAT, VK_SAMPLE_COUNT_1_BIT, VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT | VK_IMAGE_USAGE_TRANSFER_SRC_BIT,
                 VK_IMAGE_ASPECT_COLOR_BIT, &resolveImage, &resolveMem, &resolveView);

    VkSamplerCreateInfo sci = { .sType = VK_STRUCTURE_TYPE_SAMPLER_CREATE_INFO, .magFilter = VK_FILTER_LINEAR, .minFilter = VK_FILTER_LINEAR,
        .mipmapMode = VK_SAMPLER_MIPMAP_MODE_NEAREST, .addressModeU = VK_SAMPLER_ADDRESS_MODE_REPEAT, .addressModeV = VK_SAMPLER_ADDRESS_MODE_REPEAT,
        .addressModeW = VK_SAMPLER_ADDRESS_MODE_REPEAT, .maxLod = 0.0f, .borderColor = VK_BORDER_COLOR_FLOAT_OPAQUE_BLACK };
    VkSampler sampler;
    CHECK(vkCreateSampler(device, &sci, NULL, &sampler));

    /* ---- upload: vertices, indices and texture from the staging buffer ---- */
    VkCommandBufferBeginInfo cbbi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT };
    VkCommandBuffer up = cmds[0];
    CHECK(vkBeginCommandBuffer(up, &cbbi));
    VkBufferCopy vcopy = { 0, 0, vbytes }, icopy = { vbytes, 0, ibytes };
    vkCmdCopyBuffer(up, staging, vbuf, 1, &vcopy);
    vkCmdCopyBuffer(up, staging, ibuf, 1, &icopy);
    image_barrier(up, texImage, VK_IMAGE_ASPECT_COLOR_BIT, VK_IMAGE_LAYOUT_UNDEFINED, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL,
                  VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, 0, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT);
    VkBufferImageCopy tcopy = { .bufferOffset = vbytes + ibytes, .imageSubresource = { VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1 },
                                .imageExtent = { TEX_SIZE, TEX_SIZE, 1 } };
    vkCmdCopyBufferToImage(up, staging, texImage, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, 1, &tcopy);
    image_barrier(up, texImage, VK_IMAGE_ASPECT_COLOR_BIT, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, VK_IMAGE_LAYOUT_SHADER_READ_ONLY_OPTIMAL,
                  VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_FRAGMENT_SHADER_BIT, VK_ACCESS_SHADER_READ_BIT);
    VkBufferMemoryBarrier bufBarriers[2] = {
        { .sType = VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER, .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT, .dstAccessMask = VK_ACCESS_VERTEX_ATTRIBUTE_READ_BIT,
          .srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED, .dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED, .buffer = vbuf, .size = VK_WHOLE_SIZE },
        { .sType = VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER, .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT, .dstAccessMask = VK_ACCESS_INDEX_READ_BIT,
          .srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED, .dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED, .buffer = ibuf, .size = VK_WHOLE_SIZE },
    };
    vkCmdPipelineBarrier(up, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_VERTEX_INPUT_BIT, 0, 0, NULL, 2, bufBarriers, 0, NULL);
    CHECK(vkEndCommandBuffer(up));
    submit_and_wait(queue, up, fence);

    /* ---- descriptors ---- */
    VkDescriptorSetLayoutBinding binding = { .binding = 0, .descriptorType = VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER, .descriptorCount = 1,
                                             .stageFlags = VK_SHADER_STAGE_FRAGMENT_BIT };
    VkDescriptorSetLayoutCreateInfo dslci = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO, .bindingCount = 1, .pBindings = &binding };
    VkDescriptorSetLayout dsl;
    CHECK(vkCreateDescriptorSetLayout(device, &dslci, NULL, &dsl));
    VkDescriptorPoolSize ps = { .type = VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER, .descriptorCount = 1 };
    VkDescriptorPoolCreateInfo dpci = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, .maxSets = 1, .poolSizeCount = 1, .pPoolSizes = &ps };
    VkDescriptorPool dpool;
    CHECK(vkCreateDescriptorPool(device, &dpci, NULL, &dpool));
    VkDescriptorSetAllocateInfo dsai = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO, .descriptorPool = dpool, .descriptorSetCount = 1, .pSetLayouts = &dsl };
    VkDescriptorSet set;
    CHECK(vkAllocateDescriptorSets(device, &dsai, &set));
    VkDescriptorImageInfo dii = { .sampler = sampler, .imageView = texView, .imageLayout = VK_IMAGE_LAYOUT_SHADER_READ_ONLY_OPTIMAL };
    VkWriteDescriptorSet write = { .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, .dstSet = set, .dstBinding = 0, .descriptorCount = 1,
                                   .descriptorType = VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER, .pImageInfo = &dii };
    vkUpdateDescriptorSets(device, 1, &write, 0, NULL);

    VkPushConstantRange pcr = { .stageFlags = VK_SHADER_STAGE_FRAGMENT_BIT, .offset = 0, .size = sizeof(float) };
    VkPipelineLayoutCreateInfo plci = { .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, .setLayoutCount = 1, .pSetLayouts = &dsl,
                                        .pushConstantRangeCount = 1, .pPushConstantRanges = &pcr };
    VkPipelineLayout layout;
    CHECK(vkCreatePipelineLayout(device, &plci, NULL, &layout));

    /* ---- render pass + framebuffer (render-pass path only) ---- */
    VkRenderPass renderPass = VK_NULL_HANDLE;
    VkFramebuffer framebuffer = VK_NULL_HANDLE;
    if (!dynamic) {
        VkAttachmentDescription atts[3] = {
            { .format = COLOR_FORMAT, .samples = SAMPLES, .loadOp = VK_ATTACHMENT_LOAD_OP_CLEAR, .storeOp = VK_ATTACHMENT_STORE_OP_DONT_CARE,
              .stencilLoadOp = VK_ATTACHMENT_LOAD_OP_DONT_CARE, .stencilStoreOp = VK_ATTACHMENT_STORE_OP_DONT_CARE,
              .initialLayout = VK_IMAGE_LAYOUT_UNDEFINED, .finalLayout = VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL },
            { .format = DEPTH_FORMAT, .samples = SAMPLES, .loadOp = VK_ATTACHMENT_LOAD_OP_CLEAR, .storeOp = VK_ATTACHMENT_STORE_OP_DONT_CARE,
              .stencilLoadOp = VK_ATTACHMENT_LOAD_OP_DONT_CARE, .stencilStoreOp = VK_ATTACHMENT_STORE_OP_DONT_CARE,
              .initialLayout = VK_IMAGE_LAYOUT_UNDEFINED, .finalLayout = VK_IMAGE_LAYOUT_DEPTH_STENCIL_ATTACHMENT_OPTIMAL },
            { .format = COLOR_FORMAT, .samples = VK_SAMPLE_COUNT_1_BIT, .loadOp = VK_ATTACHMENT_LOAD_OP_DONT_CARE, .storeOp = VK_ATTACHMENT_STORE_OP_STORE,
              .stencilLoadOp = VK_ATTACHMENT_LOAD_OP_DONT_CARE, .stencilStoreOp = VK_ATTACHMENT_STORE_OP_DONT_CARE,
              .initialLayout = VK_IMAGE_LAYOUT_UNDEFINED, .finalLayout = VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL },
        };
        VkAttachmentReference colorRef = { 0, VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL };
        VkAttachmentReference depthRef = { 1, VK_IMAGE_LAYOUT_DEPTH_STENCIL_ATTACHMENT_OPTIMAL };
        VkAttachmentReference resolveRef = { 2, VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL };
        VkSubpassDescription subpass = { .pipelineBindPoint = VK_PIPELINE_BIND_POINT_GRAPHICS, .colorAttachmentCount = 1,
            .pColorAttachments = &colorRef, .pResolveAttachments = &resolveRef, .pDepthStencilAttachment = &depthRef };
        VkSubpassDependency deps[2] = {
            { .srcSubpass = VK_SUBPASS_EXTERNAL, .dstSubpass = 0,
              .srcStageMask = VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT | VK_PIPELINE_STAGE_EARLY_FRAGMENT_TESTS_BIT | VK_PIPELINE_STAGE_LATE_FRAGMENT_TESTS_BIT,
              .dstStageMask = VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT | VK_PIPELINE_STAGE_EARLY_FRAGMENT_TESTS_BIT | VK_PIPELINE_STAGE_LATE_FRAGMENT_TESTS_BIT,
              .srcAccessMask = 0,
              .dstAccessMask = VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT | VK_ACCESS_COLOR_ATTACHMENT_READ_BIT | VK_ACCESS_DEPTH_STENCIL_ATTACHMENT_READ_BIT | VK_ACCESS_DEPTH_STENCIL_ATTACHMENT_WRITE_BIT },
            { .srcSubpass = 0, .dstSubpass = VK_SUBPASS_EXTERNAL,
              .srcStageMask = VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT, .dstStageMask = VK_PIPELINE_STAGE_TRANSFER_BIT,
              .srcAccessMask = VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT, .dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT },
        };
        VkRenderPassCreateInfo rpci = { .sType = VK_STRUCTURE_TYPE_RENDER_PASS_CREATE_INFO, .attachmentCount = 3, .pAttachments = atts,
            .subpassCount = 1, .pSubpasses = &subpass, .dependencyCount = 2, .pDependencies = deps };
        CHECK(vkCreateRenderPass(device, &rpci, NULL, &renderPass));
        VkImageView views[3] = { colorView, depthView, resolveView };
        VkFramebufferCreateInfo fbci = { .sType = VK_STRUCTURE_TYPE_FRAMEBUFFER_CREATE_INFO, .renderPass = renderPass, .attachmentCount = 3,
            .pAttachments = views, .width = WIDTH, .height = HEIGHT, .layers = 1 };
        CHECK(vkCreateFramebuffer(device, &fbci, NULL, &framebuffer));
    }

    /* ---- pipelines: opaque (depth write, no blend) and transparent (depth test only, alpha blend) ---- */
    VkShaderModule vs = load_shader(argv[1]), fs = load_shader(argv[2]);
    VkPipelineShaderStageCreateInfo stages[2] = {
        { .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, .stage = VK_SHADER_STAGE_VERTEX_BIT, .module = vs, .pName = "main" },
        { .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, .stage = VK_SHADER_STAGE_FRAGMENT_BIT, .module = fs, .pName = "main" },
    };
    VkVertexInputBindingDescription vib = { .binding = 0, .stride = sizeof(Vertex), .inputRate = VK_VERTEX_INPUT_RATE_VERTEX };
    VkVertexInputAttributeDescription vias[3] = {
        { .location = 0, .binding = 0, .format = VK_FORMAT_R32G32B32_SFLOAT, .offset = offsetof(Vertex, pos) },
        { .location = 1, .binding = 0, .format = VK_FORMAT_R32G32_SFLOAT, .offset = offsetof(Vertex, uv) },
        { .location = 2, .binding = 0, .format = VK_FORMAT_R8G8B8A8_UNORM, .offset = offsetof(Vertex, color) },
    };
    VkPipelineVertexInputStateCreateInfo vis = { .sType = VK_STRUCTURE_TYPE_PIPELINE_VERTEX_INPUT_STATE_CREATE_INFO,
        .vertexBindingDescriptionCount = 1, .pVertexBindingDescriptions = &vib, .vertexAttributeDescriptionCount = 3, .pVertexAttributeDescriptions = vias };
    VkPipelineInputAssemblyStateCreateInfo ias = { .sType = VK_STRUCTURE_TYPE_PIPELINE_INPUT_ASSEMBLY_STATE_CREATE_INFO, .topology = VK_PRIMITIVE_TOPOLOGY_TRIANGLE_LIST };
    VkPipelineViewportStateCreateInfo vps = { .sType = VK_STRUCTURE_TYPE_PIPELINE_VIEWPORT_STATE_CREATE_INFO, .viewportCount = 1, .scissorCount = 1 };
    VkPipelineRasterizationStateCreateInfo rs = { .sType = VK_STRUCTURE_TYPE_PIPELINE_RASTERIZATION_STATE_CREATE_INFO, .polygonMode = VK_POLYGON_MODE_FILL,
        .cullMode = VK_CULL_MODE_NONE, .frontFace = VK_FRONT_FACE_COUNTER_CLOCKWISE, .lineWidth = 1.0f };
    VkPipelineMultisampleStateCreateInfo ms = { .sType = VK_STRUCTURE_TYPE_PIPELINE_MULTISAMPLE_STATE_CREATE_INFO, .rasterizationSamples = SAMPLES };
    VkPipelineDepthStencilStateCreateInfo dss[2] = {
        { .sType = VK_STRUCTURE_TYPE_PIPELINE_DEPTH_STENCIL_STATE_CREATE_INFO, .depthTestEnable = VK_TRUE, .depthWriteEnable = VK_TRUE,
          .depthCompareOp = VK_COMPARE_OP_LESS, .maxDepthBounds = 1.0f },
        { .sType = VK_STRUCTURE_TYPE_PIPELINE_DEPTH_STENCIL_STATE_CREATE_INFO, .depthTestEnable = VK_TRUE, .depthWriteEnable = VK_FALSE,
          .depthCompareOp = VK_COMPARE_OP_LESS, .maxDepthBounds = 1.0f },
    };
    const VkColorComponentFlags rgba = VK_COLOR_COMPONENT_R_BIT | VK_COLOR_COMPONENT_G_BIT | VK_COLOR_COMPONENT_B_BIT | VK_COLOR_COMPONENT_A_BIT;
    VkPipelineColorBlendAttachmentState blends[2] = {
        { .blendEnable = VK_FALSE, .colorWriteMask = rgba },
        { .blendEnable = VK_TRUE, .srcColorBlendFactor = VK_BLEND_FACTOR_SRC_ALPHA, .dstColorBlendFactor = VK_BLEND_FACTOR_ONE_MINUS_SRC_ALPHA,
          .colorBlendOp = VK_BLEND_OP_ADD, .srcAlphaBlendFactor = VK_BLEND_FACTOR_ONE, .dstAlphaBlendFactor = VK_BLEND_FACTOR_ONE_MINUS_SRC_ALPHA,
          .alphaBlendOp = VK_BLEND_OP_ADD, .colorWriteMask = rgba },
    };
    VkPipelineColorBlendStateCreateInfo cbs[2];
    VkDynamicState dynStates[2] = { VK_DYNAMIC_STATE_VIEWPORT, VK_DYNAMIC_STATE_SCISSOR };
    VkPipelineDynamicStateCreateInfo dyn = { .sType = VK_STRUCTURE_TYPE_PIPELINE_DYNAMIC_STATE_CREATE_INFO, .dynamicStateCount = 2, .pDynamicStates = dynStates };
    VkFormat colorFormat = COLOR_FORMAT;
    VkPipelineRenderingCreateInfo prci = { .sType = VK_STRUCTURE_TYPE_PIPELINE_RENDERING_CREATE_INFO, .colorAttachmentCount = 1,
        .pColorAttachmentFormats = &colorFormat, .depthAttachmentFormat = DEPTH_FORMAT, .stencilAttachmentFormat = VK_FORMAT_UNDEFINED };
    VkGraphicsPipelineCreateInfo gpcis[2];
    for (int p = 0; p < 2; p++) {
        cbs[p] = (VkPipelineColorBlendStateCreateInfo){ .sType = VK_STRUCTURE_TYPE_PIPELINE_COLOR_BLEND_STATE_CREATE_INFO,
                                                        .attachmentCount = 1, .pAttachments = &blends[p] };
        gpcis[p] = (VkGraphicsPipelineCreateInfo){ .sType = VK_STRUCTURE_TYPE_GRAPHICS_PIPELINE_CREATE_INFO, .pNext = dynamic ? &prci : NULL,
            .stageCount = 2, .pStages = stages, .pVertexInputState = &vis, .pInputAssemblyState = &ias, .pViewportState = &vps,
            .pRasterizationState = &rs, .pMultisampleState = &ms, .pDepthStencilState = &dss[p], .pColorBlendState = &cbs[p],
            .pDynamicState = &dyn, .layout = layout, .renderPass = renderPass, .subpass = 0, .basePipelineIndex = -1 };
    }
    VkPipeline pipelines[2];
    CHECK(vkCreateGraphicsPipelines(device, VK_NULL_HANDLE, 2, gpcis, NULL, pipelines));

    /* ---- the frame ---- */
    VkCommandBuffer cmd = cmds[1];
    CHECK(vkBeginCommandBuffer(cmd, &cbbi));
    VkClearValue clears[2] = { { .color = { { 0.0f, 0.0f, 0.0f, 1.0f } } }, { .depthStencil = { 1.0f, 0 } } };
    VkRect2D area = { { 0, 0 }, { WIDTH, HEIGHT } };
    if (!dynamic) {
        VkRenderPassBeginInfo rpbi = { .sType = VK_STRUCTURE_TYPE_RENDER_PASS_BEGIN_INFO, .renderPass = renderPass, .framebuffer = framebuffer,
            .renderArea = area, .clearValueCount = 2, .pClearValues = clears };
        vkCmdBeginRenderPass(cmd, &rpbi, VK_SUBPASS_CONTENTS_INLINE);
    } else {
        image_barrier(cmd, colorImage, VK_IMAGE_ASPECT_COLOR_BIT, VK_IMAGE_LAYOUT_UNDEFINED, VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL,
                      VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT, 0, VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT,
                      VK_ACCESS_COLOR_ATTACHMENT_READ_BIT | VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT);
        image_barrier(cmd, resolveImage, VK_IMAGE_ASPECT_COLOR_BIT, VK_IMAGE_LAYOUT_UNDEFINED, VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL,
                      VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT, 0, VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT,
                      VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT);
        image_barrier(cmd, depthImage, VK_IMAGE_ASPECT_DEPTH_BIT, VK_IMAGE_LAYOUT_UNDEFINED, VK_IMAGE_LAYOUT_DEPTH_ATTACHMENT_OPTIMAL,
                      VK_PIPELINE_STAGE_EARLY_FRAGMENT_TESTS_BIT | VK_PIPELINE_STAGE_LATE_FRAGMENT_TESTS_BIT, 0,
                      VK_PIPELINE_STAGE_EARLY_FRAGMENT_TESTS_BIT | VK_PIPELINE_STAGE_LATE_FRAGMENT_TESTS_BIT,
                      VK_ACCESS_DEPTH_STENCIL_ATTACHMENT_READ_BIT | VK_ACCESS_DEPTH_STENCIL_ATTACHMENT_WRITE_BIT);
        VkRenderingAttachmentInfo colorAtt = { .sType = VK_STRUCTURE_TYPE_RENDERING_ATTACHMENT_INFO, .imageView = colorView,
            .imageLayout = VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL, .resolveMode = VK_RESOLVE_MODE_AVERAGE_BIT, .resolveImageView = resolveView,
            .resolveImageLayout = VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL, .loadOp = VK_ATTACHMENT_LOAD_OP_CLEAR,
            .storeOp = VK_ATTACHMENT_STORE_OP_DONT_CARE, .clearValue = clears[0] };
        VkRenderingAttachmentInfo depthAtt = { .sType = VK_STRUCTURE_TYPE_RENDERING_ATTACHMENT_INFO, .imageView = depthView,
            .imageLayout = VK_IMAGE_LAYOUT_DEPTH_ATTACHMENT_OPTIMAL, .resolveMode = VK_RESOLVE_MODE_NONE, .loadOp = VK_ATTACHMENT_LOAD_OP_CLEAR,
            .storeOp = VK_ATTACHMENT_STORE_OP_DONT_CARE, .clearValue = clears[1] };
        VkRenderingInfo ri = { .sType = VK_STRUCTURE_TYPE_RENDERING_INFO, .renderArea = area, .layerCount = 1,
            .colorAttachmentCount = 1, .pColorAttachments = &colorAtt, .pDepthAttachment = &depthAtt };
        vkCmdBeginRendering(cmd, &ri);
    }
    VkViewport viewport = { 0.0f, 0.0f, (float)WIDTH, (float)HEIGHT, 0.0f, 1.0f };
    vkCmdSetViewport(cmd, 0, 1, &viewport);
    vkCmdSetScissor(cmd, 0, 1, &area);
    VkDeviceSize zero = 0;
    vkCmdBindVertexBuffers(cmd, 0, 1, &vbuf, &zero);
    vkCmdBindIndexBuffer(cmd, ibuf, 0, VK_INDEX_TYPE_UINT16);
    vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_GRAPHICS, layout, 0, 1, &set, 0, NULL);
    const float textured = 1.0f, flat = 0.0f;
    vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_GRAPHICS, pipelines[0]);
    vkCmdPushConstants(cmd, layout, VK_SHADER_STAGE_FRAGMENT_BIT, 0, sizeof textured, &textured);
    if (!multi) {
        vkCmdDrawIndexed(cmd, 6, 1, 0, 0, 0);                 /* the textured quad */
        vkCmdPushConstants(cmd, layout, VK_SHADER_STAGE_FRAGMENT_BIT, 0, sizeof flat, &flat);
        vkCmdDrawIndexed(cmd, 3, 1, 6, 4, 0);                 /* the red triangle, through the quad's plane */
        vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_GRAPHICS, pipelines[1]);
        vkCmdDrawIndexed(cmd, 3, 1, 9, 7, 0);                 /* the translucent green triangle */
    } else {
        PFN_vkCmdDrawMultiIndexedEXT drawMulti = (PFN_vkCmdDrawMultiIndexedEXT)vkGetDeviceProcAddr(device, "vkCmdDrawMultiIndexedEXT");
        if (!drawMulti) FAIL("vkCmdDrawMultiIndexedEXT not exposed");
        /* The application's own records, with the draw first and 8 bytes of its data after it. */
        struct { VkMultiDrawIndexedInfoEXT draw; uint32_t tag[2]; } quad[2] = { { { 0, 3, 0 }, { 0xDEAD, 0xBEEF } }, { { 3, 3, 0 }, { 0xDEAD, 0xBEEF } } },
                                                                  red = { { 6, 3, 4 }, { 0, 0 } }, green = { { 9, 3, 7 }, { 0, 0 } };
        drawMulti(cmd, 2, &quad[0].draw, 1, 0, sizeof quad[0], NULL);    /* the textured quad, one triangle a draw */
        vkCmdPushConstants(cmd, layout, VK_SHADER_STAGE_FRAGMENT_BIT, 0, sizeof flat, &flat);
        drawMulti(cmd, 1, &red.draw, 1, 0, sizeof red, NULL);
        vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_GRAPHICS, pipelines[1]);
        drawMulti(cmd, 1, &green.draw, 1, 0, sizeof green, NULL);
    }
    if (!dynamic) {
        vkCmdEndRenderPass(cmd);                          /* resolve done; final layout TRANSFER_SRC_OPTIMAL */
    } else {
        vkCmdEndRendering(cmd);
        image_barrier(cmd, resolveImage, VK_IMAGE_ASPECT_COLOR_BIT, VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL, VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL,
                      VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT, VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT,
                      VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_READ_BIT);
    }
    VkBufferImageCopy rcopy = { .bufferOffset = 0, .imageSubresource = { VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1 }, .imageExtent = { WIDTH, HEIGHT, 1 } };
    vkCmdCopyImageToBuffer(cmd, resolveImage, VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, readback, 1, &rcopy);
    VkBufferMemoryBarrier hostBarrier = { .sType = VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER, .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_HOST_READ_BIT, .srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED, .dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED,
        .buffer = readback, .size = VK_WHOLE_SIZE };
    vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 0, NULL, 1, &hostBarrier, 0, NULL);
    CHECK(vkEndCommandBuffer(cmd));
    submit_and_wait(queue, cmd, fence);

    /* ---- read back, write the PPM, summarise ---- */
    const uint8_t *pixels;
    CHECK(vkMapMemory(device, readbackMem, 0, VK_WHOLE_SIZE, 0, (void **)&pixels));
    uint8_t *rgb = malloc((size_t)WIDTH * HEIGHT * 3);
    uint64_t hash = 0xcbf29ce484222325ull;
    uint32_t nonblack = 0, colours = 0;
    uint32_t *seen = calloc(1u << 19, sizeof(uint32_t));   /* one bit per 24-bit colour */
    for (uint32_t i = 0; i < (uint32_t)WIDTH * HEIGHT; i++) {
        const uint8_t *p = pixels + 4 * i;
        for (int c = 0; c < 3; c++) { rgb[3 * i + c] = p[c]; hash = (hash ^ p[c]) * 0x100000001b3ull; }
        if (p[0] | p[1] | p[2]) nonblack++;
        uint32_t key = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
        if (!(seen[key >> 5] & (1u << (key & 31)))) { seen[key >> 5] |= 1u << (key & 31); colours++; }
    }
    vkUnmapMemory(device, readbackMem);
    free(seen);
    FILE *out = fopen(argv[3], "wb");
    if (!out) { perror(argv[3]); return 1; }
    fprintf(out, "P6\n%d %d\n255\n", WIDTH, HEIGHT);
    if (fwrite(rgb, 1, (size_t)WIDTH * HEIGHT * 3, out) != (size_t)WIDTH * HEIGHT * 3 || fclose(out) != 0) FAIL("writing %s", argv[3]);
    free(rgb);
    printf("mode: %s\n", dynamic ? "dynamic rendering" : "render pass");
    printf("checksum: %016llx\n", (unsigned long long)hash);
    printf("nonblack: %u\n", nonblack);
    printf("colours: %u\n", colours);

    /* ---- tear down (the validation layer reports anything left behind) ---- */
    vkDestroyPipeline(device, pipelines[0], NULL);
    vkDestroyPipeline(device, pipelines[1], NULL);
    vkDestroyShaderModule(device, vs, NULL);
    vkDestroyShaderModule(device, fs, NULL);
    if (framebuffer) vkDestroyFramebuffer(device, framebuffer, NULL);
    if (renderPass) vkDestroyRenderPass(device, renderPass, NULL);
    vkDestroyPipelineLayout(device, layout, NULL);
    vkDestroyDescriptorPool(device, dpool, NULL);
    vkDestroyDescriptorSetLayout(device, dsl, NULL);
    vkDestroySampler(device, sampler, NULL);
    VkImage images[4] = { texImage, colorImage, depthImage, resolveImage };
    VkImageView views[4] = { texView, colorView, depthView, resolveView };
    VkDeviceMemory imageMems[4] = { texMem, colorMem, depthMem, resolveMem };
    for (int i = 0; i < 4; i++) { vkDestroyImageView(device, views[i], NULL); vkDestroyImage(device, images[i], NULL); vkFreeMemory(device, imageMems[i], NULL); }
    VkBuffer buffers[4] = { staging, vbuf, ibuf, readback };
    VkDeviceMemory bufferMems[4] = { stagingMem, vmem, imem, readbackMem };
    for (int i = 0; i < 4; i++) { vkDestroyBuffer(device, buffers[i], NULL); vkFreeMemory(device, bufferMems[i], NULL); }
    vkDestroyFence(device, fence, NULL);
    vkFreeCommandBuffers(device, cpool, 2, cmds);
    vkDestroyCommandPool(device, cpool, NULL);
    vkDestroyDevice(device, NULL);
    vkDestroyInstance(instance, NULL);
    printf("done\n");
    return 0;
}
