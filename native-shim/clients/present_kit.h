/* What swapchain.c and window.c share (static inline: a client uses what it needs): the source of every
 * frame, a host-visible buffer holding a W×H B8G8R8A8 gradient that vkCmdCopyBufferToImage puts on the
 * acquired image, and the per-frame objects (a command buffer of its own pool, the acquire and render
 * semaphores, a fence). The memory type comes from compute_kit.h. */
#ifndef GUESTICD_PRESENT_KIT_H
#define GUESTICD_PRESENT_KIT_H
#include <stdint.h>
#include <vulkan/vulkan.h>
#include "compute_kit.h"

typedef struct {
    VkBuffer buffer;
    VkDeviceMemory memory;
    VkCommandPool pool;
    VkCommandBuffer cmd;
    VkSemaphore acquired, rendered;
    VkFence done;
} kit_frames;

#define KIT_TRY(call) do { VkResult r_ = (call); if (r_ != VK_SUCCESS) return r_; } while (0)

/* The gradient: blue from x, green from y (the presentation tests check these values on screen). */
static inline VkResult kit_frames_create(VkPhysicalDevice pd, VkDevice device, uint32_t family, uint32_t w, uint32_t h, kit_frames *k)
{
    VkBufferCreateInfo bci = { .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = (VkDeviceSize)w * h * 4, .usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT };
    KIT_TRY(vkCreateBuffer(device, &bci, NULL, &k->buffer));
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(device, k->buffer, &req);
    uint32_t type = kit_memory_type(pd, req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
    if (type == UINT32_MAX) return VK_ERROR_OUT_OF_DEVICE_MEMORY;
    VkMemoryAllocateInfo mai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = req.size, .memoryTypeIndex = type };
    KIT_TRY(vkAllocateMemory(device, &mai, NULL, &k->memory));
    KIT_TRY(vkBindBufferMemory(device, k->buffer, k->memory, 0));
    uint8_t *px;
    KIT_TRY(vkMapMemory(device, k->memory, 0, VK_WHOLE_SIZE, 0, (void **)&px));
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++)
        {
            uint8_t *p = px + ((size_t)y * w + x) * 4;
            p[0] = (uint8_t)(x * 16); p[1] = (uint8_t)(y * 32); p[2] = 200; p[3] = 255;
        }
    VkCommandPoolCreateInfo pci = { .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT, .queueFamilyIndex = family };
    KIT_TRY(vkCreateCommandPool(device, &pci, NULL, &k->pool));
    VkCommandBufferAllocateInfo cai = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, .commandPool = k->pool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = 1 };
    KIT_TRY(vkAllocateCommandBuffers(device, &cai, &k->cmd));
    VkSemaphoreCreateInfo semci = { .sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO };
    KIT_TRY(vkCreateSemaphore(device, &semci, NULL, &k->acquired));
    KIT_TRY(vkCreateSemaphore(device, &semci, NULL, &k->rendered));
    VkFenceCreateInfo fci = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
    KIT_TRY(vkCreateFence(device, &fci, NULL, &k->done));
    return VK_SUCCESS;
}

static inline void kit_barrier(VkCommandBuffer cmd, VkImage image, VkImageLayout from, VkImageLayout to, VkAccessFlags src, VkAccessFlags dst)
{
    VkImageMemoryBarrier b = { .sType = VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER, .srcAccessMask = src, .dstAccessMask = dst,
        .oldLayout = from, .newLayout = to, .srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED, .dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED,
        .image = image, .subresourceRange = { VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1 } };
    vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, 0, 0, NULL, 0, NULL, 1, &b);
}

/* Frame f of the window clients: the image cleared to a colour of the frame's own, then the w x h gradient
 * copied to (gx + f % 20, gy), left in PRESENT_SRC. */
static inline VkResult kit_record_frame(const kit_frames *k, VkImage image, int f, int32_t gx, int32_t gy, uint32_t w, uint32_t h)
{
    VkCommandBuffer cmd = k->cmd;
    KIT_TRY(vkBeginCommandBuffer(cmd, &(VkCommandBufferBeginInfo){ .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO }));
    kit_barrier(cmd, image, VK_IMAGE_LAYOUT_UNDEFINED, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, 0, VK_ACCESS_TRANSFER_WRITE_BIT);
    VkClearColorValue cc = { .float32 = { (20 + f * 7 % 200) / 255.0f, (250 - f * 5 % 200) / 255.0f, 0.4f, 1.0f } };
    VkImageSubresourceRange range = { VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1 };
    vkCmdClearColorImage(cmd, image, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, &cc, 1, &range);
    kit_barrier(cmd, image, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, VK_ACCESS_TRANSFER_WRITE_BIT, VK_ACCESS_TRANSFER_WRITE_BIT);
    VkBufferImageCopy copy = { .imageSubresource = { VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1 }, .imageOffset = { gx + f % 20, gy, 0 }, .imageExtent = { w, h, 1 } };
    vkCmdCopyBufferToImage(cmd, k->buffer, image, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, 1, &copy);
    kit_barrier(cmd, image, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, VK_IMAGE_LAYOUT_PRESENT_SRC_KHR, VK_ACCESS_TRANSFER_WRITE_BIT, 0);
    return vkEndCommandBuffer(cmd);
}

static inline void kit_frames_destroy(VkDevice device, kit_frames *k)
{
    vkDestroyFence(device, k->done, NULL);
    vkDestroySemaphore(device, k->acquired, NULL);
    vkDestroySemaphore(device, k->rendered, NULL);
    vkDestroyCommandPool(device, k->pool, NULL);
    vkDestroyBuffer(device, k->buffer, NULL);
    vkFreeMemory(device, k->memory, NULL);
}
#endif
