using GuestIcd.Protocol;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkImageAspectFlags;

namespace GuestIcd.HostSim.Gate;

internal sealed class ImageState(ulong device, in VkImageCreateInfo ci)
{
    public readonly ulong Device = device;
    public readonly VkImageType Type = ci.imageType;
    public readonly VkFormat Format = ci.format;
    public readonly VkExtent3D Extent = ci.extent;
    public readonly uint Mips = ci.mipLevels, Layers = ci.arrayLayers;
    public readonly VkImageCreateFlags Flags = ci.flags;
    public readonly VkSampleCountFlagBits Samples = ci.samples;
    public VkMemoryRequirements Requirements;
    public ulong Memory;

    public uint Width(uint mip) => Math.Max(1u, Extent.width >> (int)Math.Min(mip, 31u));
    public uint Height(uint mip) => Math.Max(1u, Extent.height >> (int)Math.Min(mip, 31u));
    public uint Depth(uint mip) => Math.Max(1u, Extent.depth >> (int)Math.Min(mip, 31u));
}

internal sealed class ImageViewState(ulong device, ulong image, uint baseMip, uint layers, uint width, uint height)
{
    public readonly ulong Device = device, Image = image;
    public readonly uint BaseMip = baseMip, Layers = layers, Width = width, Height = height;
}

/// <summary>Images and image views: creation against the format's limits, views inside their image, and
/// every region a copy, blit, resolve, clear or barrier names inside its subresource; the buffer side of
/// buffer↔image copies is sized from the format's texel block (registry format table).</summary>
internal sealed unsafe partial class ValidUsageGate
{
    readonly Dictionary<ulong, ImageState> _images = new();
    readonly Dictionary<ulong, ImageViewState> _imageViews = new();

    void CheckCreateImage(int cmd, ulong* a, DeviceState dev, ref ulong result, out bool refuse)
    {
        refuse = false;
        var ci = (VkImageCreateInfo*)a[1];
        var e = ci->extent;
        if (ci->format == VkFormat.VK_FORMAT_UNDEFINED) Fail(cmd, "VUID-VkImageCreateInfo-pNext-01975", "format is VK_FORMAT_UNDEFINED");
        if (e.width == 0 || e.height == 0 || e.depth == 0) Fail(cmd, "VUID-VkImageCreateInfo-extent-00944", $"extent {e.width}x{e.height}x{e.depth} has a zero");
        if (ci->mipLevels == 0) Fail(cmd, "VUID-VkImageCreateInfo-mipLevels-00947", "mipLevels is 0");
        if (ci->arrayLayers == 0) Fail(cmd, "VUID-VkImageCreateInfo-arrayLayers-00948", "arrayLayers is 0");
        if (ci->imageType == VkImageType.VK_IMAGE_TYPE_1D && (e.height != 1 || e.depth != 1)) Fail(cmd, "VUID-VkImageCreateInfo-imageType-00956", "a 1D image with height or depth");
        if (ci->imageType == VkImageType.VK_IMAGE_TYPE_2D && e.depth != 1) Fail(cmd, "VUID-VkImageCreateInfo-imageType-00957", "a 2D image with depth");
        if (ci->imageType == VkImageType.VK_IMAGE_TYPE_3D && ci->arrayLayers != 1) Fail(cmd, "VUID-VkImageCreateInfo-imageType-00961", "a 3D image with layers");
        uint largest = Math.Max(e.width, Math.Max(e.height, e.depth));
        if (ci->mipLevels > 32 - uint.LeadingZeroCount(largest)) Fail(cmd, "VUID-VkImageCreateInfo-mipLevels-00958", $"{ci->mipLevels} mip levels for extent {largest}");
        if ((ci->flags & (VkImageCreateFlags.VK_IMAGE_CREATE_SPARSE_BINDING_BIT | VkImageCreateFlags.VK_IMAGE_CREATE_SPARSE_RESIDENCY_BIT
                          | VkImageCreateFlags.VK_IMAGE_CREATE_SPARSE_ALIASED_BIT)) != 0)
            Fail(cmd, "VUID-VkImageCreateInfo-flags-00969", "sparse images are not served by hostsim");
        if (Formats.Of(ci->format).BlockSize == 0) Fail(cmd, "VUID-VkImageCreateInfo-format-parameter", $"format {ci->format} is not a format of the registry");
        // What the driver itself says it can create (VUID-VkImageCreateInfo-imageCreateMaxMipLevels-02251 and the limits after it).
        var query = (delegate* unmanaged<VkPhysicalDevice, VkFormat, VkImageType, VkImageTiling, VkImageUsageFlags, VkImageCreateFlags, VkImageFormatProperties*, VkResult>)
            InstanceFn<nint>("vkGetPhysicalDeviceImageFormatProperties");
        VkImageFormatProperties p;
        if (ci->tiling != VkImageTiling.VK_IMAGE_TILING_DRM_FORMAT_MODIFIER_EXT)
        {
            var r = query(dev.Physical, ci->format, ci->imageType, ci->tiling, ci->usage, ci->flags, &p);
            if (r != VkResult.VK_SUCCESS)
            {
                Log($"vkCreateImage: the device cannot create this image ({r}; VUID-VkImageCreateInfo-imageCreateMaxMipLevels-02251)");
                result = Result(VkResult.VK_ERROR_FORMAT_NOT_SUPPORTED);
                refuse = true;
                return;
            }
            if (e.width > p.maxExtent.width || e.height > p.maxExtent.height || e.depth > p.maxExtent.depth)
                Fail(cmd, "VUID-VkImageCreateInfo-extent-02252", $"extent {e.width}x{e.height}x{e.depth} exceeds {p.maxExtent.width}x{p.maxExtent.height}x{p.maxExtent.depth}");
            if (ci->mipLevels > p.maxMipLevels) Fail(cmd, "VUID-VkImageCreateInfo-mipLevels-02255", $"{ci->mipLevels} mip levels exceed {p.maxMipLevels}");
            if (ci->arrayLayers > p.maxArrayLayers) Fail(cmd, "VUID-VkImageCreateInfo-arrayLayers-02256", $"{ci->arrayLayers} layers exceed {p.maxArrayLayers}");
            if (((uint)ci->samples & (uint)p.sampleCounts) == 0) Fail(cmd, "VUID-VkImageCreateInfo-samples-02258", $"{ci->samples} is not a supported sample count");
        }
    }

    void RecordCreateImage(ulong* a, DeviceState dev)
    {
        ulong h = *(ulong*)a[3];
        if (h == 0) return;
        var s = new ImageState(dev.Handle, *(VkImageCreateInfo*)a[1]);
        var get = dev.Fn<nint>("vkGetImageMemoryRequirements", _instanceProc);
        VkMemoryRequirements req;
        ((delegate* unmanaged<nint, ulong, VkMemoryRequirements*, void>)get)((nint)dev.Handle, h, &req);
        s.Requirements = req;
        _images[h] = s;
    }

    void ForgetImage(ulong h)
    {
        if (_images.Remove(h, out var i)) Unbind(i.Memory);
    }

    ImageState UsedImage(int cmd, ulong image, string what)
    {
        if (!_images.TryGetValue(image, out var i)) Fail(cmd, $"VUID-{N(cmd)}-{what}-parameter", $"{what} is not a live image of this session");
        if (i.Memory == 0) Fail(cmd, $"VUID-{N(cmd)}-{what}-07966", $"{what} is not bound to memory");
        if (_memory.TryGetValue(i.Memory, out var m) && m.GuestFreed) Fail(cmd, $"VUID-{N(cmd)}-{what}-07966", $"{what} is bound to memory the guest freed");
        return i;
    }

    static void Layers(int cmd, ImageState i, in VkImageSubresourceLayers s, string what)
    {
        if (s.mipLevel >= i.Mips) Fail(cmd, $"VUID-{N(cmd)}-{what}-07967", $"mip level {s.mipLevel} of {i.Mips}");
        uint count = s.layerCount == VkConstants.VK_REMAINING_ARRAY_LAYERS ? i.Layers - Math.Min(s.baseArrayLayer, i.Layers) : s.layerCount;
        if (count == 0 || s.baseArrayLayer >= i.Layers || count > i.Layers - s.baseArrayLayer)
            Fail(cmd, $"VUID-{N(cmd)}-{what}-07968", $"layers [{s.baseArrayLayer}, +{s.layerCount}) of {i.Layers}");
    }

    static void Range(int cmd, ImageState i, in VkImageSubresourceRange r, string vuid)
    {
        uint levels = r.levelCount == VkConstants.VK_REMAINING_MIP_LEVELS ? i.Mips - Math.Min(r.baseMipLevel, i.Mips) : r.levelCount;
        uint layers = r.layerCount == VkConstants.VK_REMAINING_ARRAY_LAYERS ? i.Layers - Math.Min(r.baseArrayLayer, i.Layers) : r.layerCount;
        if (r.baseMipLevel >= i.Mips || levels == 0 || levels > i.Mips - r.baseMipLevel)
            Fail(cmd, vuid, $"mip levels [{r.baseMipLevel}, +{r.levelCount}) of {i.Mips}");
        if (r.baseArrayLayer >= i.Layers || layers == 0 || layers > i.Layers - r.baseArrayLayer)
            Fail(cmd, vuid, $"array layers [{r.baseArrayLayer}, +{r.layerCount}) of {i.Layers}");
    }

    /// <summary>The box [offset, offset+extent) inside the mip level.</summary>
    static void Box(int cmd, ImageState i, uint mip, VkOffset3D o, VkExtent3D e, string vuid)
    {
        if (o.x < 0 || o.y < 0 || o.z < 0) Fail(cmd, V(cmd, vuid), $"offset ({o.x},{o.y},{o.z}) is negative");
        if (e.width == 0 || e.height == 0 || e.depth == 0) Fail(cmd, V(cmd, vuid), "a region with a zero extent");
        if ((ulong)o.x + e.width > i.Width(mip) || (ulong)o.y + e.height > i.Height(mip) || (ulong)o.z + e.depth > i.Depth(mip))
            Fail(cmd, V(cmd, vuid), $"region ({o.x},{o.y},{o.z})+{e.width}x{e.height}x{e.depth} runs past mip {mip} ({i.Width(mip)}x{i.Height(mip)}x{i.Depth(mip)})");
    }

    /// <summary>The buffer side of one buffer↔image region: the last byte it reaches, from the texel block.</summary>
    void BufferImageRegion(int cmd, BufferState b, ImageState img, in VkBufferImageCopy r, string vuidBuffer, string vuidImage)
    {
        Layers(cmd, img, r.imageSubresource, "imageSubresource");
        Box(cmd, img, r.imageSubresource.mipLevel, r.imageOffset, r.imageExtent, vuidImage);
        var f = Formats.Of(img.Format);
        var aspect = r.imageSubresource.aspectMask;
        uint elem = f.BlockSize, bw = f.BlockWidth, bh = f.BlockHeight, bd = f.BlockDepth;
        if ((aspect & VK_IMAGE_ASPECT_DEPTH_BIT) != 0) elem = f.DepthBytes;
        else if ((aspect & VK_IMAGE_ASPECT_STENCIL_BIT) != 0) elem = f.StencilBytes;
        else if ((aspect & VK_IMAGE_ASPECT_PLANE_0_BIT) != 0) elem = f.Plane0Size;
        else if ((aspect & VK_IMAGE_ASPECT_PLANE_1_BIT) != 0) elem = f.Plane1Size;
        else if ((aspect & VK_IMAGE_ASPECT_PLANE_2_BIT) != 0) elem = f.Plane2Size;
        if (elem == 0 || (aspect & (aspect - 1)) != 0) Fail(cmd, "VUID-VkBufferImageCopy-aspectMask-00212", $"aspect {aspect} does not name one aspect of {img.Format}");
        if (bw == 0 || bh == 0 || bd == 0) bw = bh = bd = 1;
        uint rowLength = r.bufferRowLength == 0 ? r.imageExtent.width : r.bufferRowLength;
        uint imageHeight = r.bufferImageHeight == 0 ? r.imageExtent.height : r.bufferImageHeight;
        if (rowLength < r.imageExtent.width) Fail(cmd, "VUID-VkBufferImageCopy-bufferRowLength-00195", $"bufferRowLength {rowLength} < width {r.imageExtent.width}");
        if (imageHeight < r.imageExtent.height) Fail(cmd, "VUID-VkBufferImageCopy-bufferImageHeight-00196", $"bufferImageHeight {imageHeight} < height {r.imageExtent.height}");
        if (r.bufferOffset % (aspect == VK_IMAGE_ASPECT_DEPTH_BIT || aspect == VK_IMAGE_ASPECT_STENCIL_BIT ? 4u : elem) != 0)
            Fail(cmd, "VUID-VkBufferImageCopy-bufferOffset-00193", $"bufferOffset {r.bufferOffset} is not aligned to the {elem}-byte texel");
        // Buffer addressing (spec §"Copying Data Between Buffers and Images"), in blocks; 128-bit so nothing wraps.
        UInt128 rowBlocks = (rowLength + bw - 1) / bw, heightBlocks = (imageHeight + bh - 1) / bh;
        UInt128 w = (r.imageExtent.width + bw - 1) / bw, h = (r.imageExtent.height + bh - 1) / bh, d = (r.imageExtent.depth + bd - 1) / bd;
        uint layers = r.imageSubresource.layerCount == VkConstants.VK_REMAINING_ARRAY_LAYERS ? img.Layers - r.imageSubresource.baseArrayLayer : r.imageSubresource.layerCount;
        UInt128 slices = d * layers;
        UInt128 end = r.bufferOffset + ((slices - 1) * heightBlocks * rowBlocks + (h - 1) * rowBlocks + w) * elem;
        if (end > b.Size) Fail(cmd, V(cmd, vuidBuffer), $"the region reaches byte {end} of the {b.Size}-byte buffer");
    }

    void CheckBufferImageCopies(int cmd, ulong buffer, ulong image, uint count, VkBufferImageCopy* regions, bool toImage)
    {
        var b = UsedBuffer(cmd, buffer, toImage ? "srcBuffer" : "dstBuffer");
        var img = UsedImage(cmd, image, toImage ? "dstImage" : "srcImage");
        for (uint i = 0; i < count; i++)
            BufferImageRegion(cmd, b, img, regions[i], toImage ? "pRegions-00171" : "pRegions-00183", "pRegions-06218");
    }

    void CheckBufferImageCopies2(int cmd, ulong buffer, ulong image, uint count, VkBufferImageCopy2* regions, bool toImage)
    {
        var b = UsedBuffer(cmd, buffer, toImage ? "srcBuffer" : "dstBuffer");
        var img = UsedImage(cmd, image, toImage ? "dstImage" : "srcImage");
        for (uint i = 0; i < count; i++)
        {
            var r2 = regions[i];
            var r = new VkBufferImageCopy
            {
                bufferOffset = r2.bufferOffset, bufferRowLength = r2.bufferRowLength, bufferImageHeight = r2.bufferImageHeight,
                imageSubresource = r2.imageSubresource, imageOffset = r2.imageOffset, imageExtent = r2.imageExtent,
            };
            BufferImageRegion(cmd, b, img, r, toImage ? "VUID-VkCopyBufferToImageInfo2-pRegions-00171" : "VUID-VkCopyImageToBufferInfo2-pRegions-00183",
                toImage ? "VUID-VkCopyBufferToImageInfo2-pRegions-06223" : "VUID-VkCopyImageToBufferInfo2-imageOffset-00197");
        }
    }

    void CheckImageCopy(int cmd, ImageState s, ImageState d, in VkImageSubresourceLayers ss, VkOffset3D so, in VkImageSubresourceLayers ds, VkOffset3D dO, VkExtent3D e)
    {
        Layers(cmd, s, ss, "srcSubresource");
        Layers(cmd, d, ds, "dstSubresource");
        Box(cmd, s, ss.mipLevel, so, e, "srcOffset-00144");
        // Copies between formats of different block extents scale the destination extent (compressed ↔ uncompressed).
        var fs = Formats.Of(s.Format);
        var fd = Formats.Of(d.Format);
        var de = e;
        if (fs.BlockWidth != fd.BlockWidth || fs.BlockHeight != fd.BlockHeight)
        {
            uint sw = Math.Max(1u, fs.BlockWidth), sh = Math.Max(1u, fs.BlockHeight), dw = Math.Max(1u, fd.BlockWidth), dh = Math.Max(1u, fd.BlockHeight);
            de.width = Math.Max(1, (uint)((ulong)(e.width + sw - 1) / sw * dw));
            de.height = Math.Max(1, (uint)((ulong)(e.height + sh - 1) / sh * dh));
        }
        Box(cmd, d, ds.mipLevel, dO, de, "dstOffset-00150");
        if (fs.BlockSize != fd.BlockSize) Fail(cmd, $"VUID-{N(cmd)}-srcImage-01548", $"formats {s.Format} and {d.Format} differ in texel block size");
    }

    void CheckCopyImage(int cmd, ulong src, ulong dst, uint count, VkImageCopy* regions)
    {
        var s = UsedImage(cmd, src, "srcImage");
        var d = UsedImage(cmd, dst, "dstImage");
        for (uint i = 0; i < count; i++)
            CheckImageCopy(cmd, s, d, regions[i].srcSubresource, regions[i].srcOffset, regions[i].dstSubresource, regions[i].dstOffset, regions[i].extent);
    }

    void CheckCopyImage2(int cmd, VkCopyImageInfo2* info)
    {
        var s = UsedImage(cmd, info->srcImage.Handle, "srcImage");
        var d = UsedImage(cmd, info->dstImage.Handle, "dstImage");
        for (uint i = 0; i < info->regionCount; i++)
        {
            var r = info->pRegions[i];
            CheckImageCopy(cmd, s, d, r.srcSubresource, r.srcOffset, r.dstSubresource, r.dstOffset, r.extent);
        }
    }

    /// <summary>Blit corners may be given in either order; both must lie in [0, extent] of the level.</summary>
    static void Corners(int cmd, ImageState i, uint mip, VkOffset3D a, VkOffset3D b, string vuid)
    {
        uint w = i.Width(mip), h = i.Height(mip), d = i.Depth(mip);
        if (a.x < 0 || a.y < 0 || a.z < 0 || b.x < 0 || b.y < 0 || b.z < 0
            || (uint)a.x > w || (uint)b.x > w || (uint)a.y > h || (uint)b.y > h || (uint)a.z > d || (uint)b.z > d)
            Fail(cmd, V(cmd, vuid), $"blit corners ({a.x},{a.y},{a.z})-({b.x},{b.y},{b.z}) outside mip {mip} ({w}x{h}x{d})");
    }

    void CheckBlit(int cmd, ImageState s, ImageState d, in VkImageSubresourceLayers ss, VkOffset3D s0, VkOffset3D s1, in VkImageSubresourceLayers ds, VkOffset3D d0, VkOffset3D d1)
    {
        Layers(cmd, s, ss, "srcSubresource");
        Layers(cmd, d, ds, "dstSubresource");
        Corners(cmd, s, ss.mipLevel, s0, s1, "srcOffset-00243");
        Corners(cmd, d, ds.mipLevel, d0, d1, "dstOffset-00248");
        if (s.Samples != VkSampleCountFlagBits.VK_SAMPLE_COUNT_1_BIT || d.Samples != VkSampleCountFlagBits.VK_SAMPLE_COUNT_1_BIT)
            Fail(cmd, $"VUID-{N(cmd)}-srcImage-00233", "blit of a multisampled image");
    }

    void CheckBlitImage(int cmd, ulong* a)
    {
        var s = UsedImage(cmd, a[1], "srcImage");
        var d = UsedImage(cmd, a[3], "dstImage");
        var regions = (VkImageBlit*)a[6];
        for (uint i = 0; i < (uint)a[5]; i++)
            CheckBlit(cmd, s, d, regions[i].srcSubresource, regions[i].srcOffsets[0], regions[i].srcOffsets[1], regions[i].dstSubresource, regions[i].dstOffsets[0], regions[i].dstOffsets[1]);
    }

    void CheckBlitImage2(int cmd, VkBlitImageInfo2* info)
    {
        var s = UsedImage(cmd, info->srcImage.Handle, "srcImage");
        var d = UsedImage(cmd, info->dstImage.Handle, "dstImage");
        for (uint i = 0; i < info->regionCount; i++)
        {
            var r = info->pRegions[i];
            CheckBlit(cmd, s, d, r.srcSubresource, r.srcOffsets[0], r.srcOffsets[1], r.dstSubresource, r.dstOffsets[0], r.dstOffsets[1]);
        }
    }

    void CheckResolve(int cmd, ulong src, ulong dst, uint count, VkImageResolve* regions)
    {
        var s = UsedImage(cmd, src, "srcImage");
        var d = UsedImage(cmd, dst, "dstImage");
        for (uint i = 0; i < count; i++)
        {
            var r = regions[i];
            Layers(cmd, s, r.srcSubresource, "srcSubresource");
            Layers(cmd, d, r.dstSubresource, "dstSubresource");
            Box(cmd, s, r.srcSubresource.mipLevel, r.srcOffset, r.extent, "srcOffset-00269");
            Box(cmd, d, r.dstSubresource.mipLevel, r.dstOffset, r.extent, "dstOffset-00272");
        }
    }

    void CheckResolve2(int cmd, VkResolveImageInfo2* info)
    {
        var s = UsedImage(cmd, info->srcImage.Handle, "srcImage");
        var d = UsedImage(cmd, info->dstImage.Handle, "dstImage");
        for (uint i = 0; i < info->regionCount; i++)
        {
            var r = info->pRegions[i];
            Layers(cmd, s, r.srcSubresource, "srcSubresource");
            Layers(cmd, d, r.dstSubresource, "dstSubresource");
            Box(cmd, s, r.srcSubresource.mipLevel, r.srcOffset, r.extent, "VUID-VkResolveImageInfo2-srcOffset-00269");
            Box(cmd, d, r.dstSubresource.mipLevel, r.dstOffset, r.extent, "VUID-VkResolveImageInfo2-dstOffset-00272");
        }
    }

    void CheckClearImage(int cmd, ulong* a, bool depth)
    {
        var img = UsedImage(cmd, a[1], "image");
        var ranges = (VkImageSubresourceRange*)a[5];
        for (uint i = 0; i < (uint)a[4]; i++)
            Range(cmd, img, ranges[i], depth ? "VUID-vkCmdClearDepthStencilImage-pRanges-01694" : "VUID-vkCmdClearColorImage-pRanges-01692");
    }

    void CheckImageBarrier(int cmd, ulong image, in VkImageSubresourceRange r)
    {
        if (!_images.TryGetValue(image, out var img)) Fail(cmd, "VUID-VkImageMemoryBarrier-image-parameter", "image is not a live image of this session");
        Range(cmd, img, r, "VUID-VkImageMemoryBarrier-subresourceRange-01486");
    }

    void CheckImageSubresourceLayout(int cmd, ulong* a)
    {
        var img = Lookup(_images, cmd, a[1], "image");
        var s = (VkImageSubresource*)a[2];
        if (s->mipLevel >= img.Mips) Fail(cmd, "VUID-vkGetImageSubresourceLayout-mipLevel-01716", $"mip level {s->mipLevel} of {img.Mips}");
        if (s->arrayLayer >= img.Layers) Fail(cmd, "VUID-vkGetImageSubresourceLayout-arrayLayer-01717", $"layer {s->arrayLayer} of {img.Layers}");
    }

    void CheckCreateImageView(int cmd, ulong* a)
    {
        var ci = (VkImageViewCreateInfo*)a[1];
        var img = UsedImage(cmd, ci->image.Handle, "image");
        var r = ci->subresourceRange;
        Range(cmd, img, r, "VUID-VkImageViewCreateInfo-subresourceRange-01718");
        uint layers = r.layerCount == VkConstants.VK_REMAINING_ARRAY_LAYERS ? img.Layers - r.baseArrayLayer : r.layerCount;
        var vt = ci->viewType;
        bool compatible = img.Type switch
        {
            VkImageType.VK_IMAGE_TYPE_1D => vt is VkImageViewType.VK_IMAGE_VIEW_TYPE_1D or VkImageViewType.VK_IMAGE_VIEW_TYPE_1D_ARRAY,
            VkImageType.VK_IMAGE_TYPE_2D => vt is VkImageViewType.VK_IMAGE_VIEW_TYPE_2D or VkImageViewType.VK_IMAGE_VIEW_TYPE_2D_ARRAY
                || vt is VkImageViewType.VK_IMAGE_VIEW_TYPE_CUBE or VkImageViewType.VK_IMAGE_VIEW_TYPE_CUBE_ARRAY && (img.Flags & VkImageCreateFlags.VK_IMAGE_CREATE_CUBE_COMPATIBLE_BIT) != 0,
            VkImageType.VK_IMAGE_TYPE_3D => vt == VkImageViewType.VK_IMAGE_VIEW_TYPE_3D
                || vt is VkImageViewType.VK_IMAGE_VIEW_TYPE_2D or VkImageViewType.VK_IMAGE_VIEW_TYPE_2D_ARRAY
                   && (img.Flags & (VkImageCreateFlags.VK_IMAGE_CREATE_2D_ARRAY_COMPATIBLE_BIT | VkImageCreateFlags.VK_IMAGE_CREATE_2D_VIEW_COMPATIBLE_BIT_EXT)) != 0,
            _ => false,
        };
        if (!compatible) Fail(cmd, "VUID-VkImageViewCreateInfo-subResourceRange-01021", $"a {vt} view of a {img.Type} image (flags {img.Flags})");
        if (vt is VkImageViewType.VK_IMAGE_VIEW_TYPE_1D or VkImageViewType.VK_IMAGE_VIEW_TYPE_2D or VkImageViewType.VK_IMAGE_VIEW_TYPE_3D && layers != 1)
            Fail(cmd, "VUID-VkImageViewCreateInfo-imageViewType-04973", $"a {vt} view of {layers} layers");
        if (vt == VkImageViewType.VK_IMAGE_VIEW_TYPE_CUBE && layers != 6) Fail(cmd, "VUID-VkImageViewCreateInfo-viewType-02960", $"a cube view of {layers} layers");
        if (vt == VkImageViewType.VK_IMAGE_VIEW_TYPE_CUBE_ARRAY && layers % 6 != 0) Fail(cmd, "VUID-VkImageViewCreateInfo-viewType-02961", $"a cube array view of {layers} layers");
        if (ci->format != img.Format)
        {
            var fi = Formats.Of(img.Format);
            var fv = Formats.Of(ci->format);
            if ((img.Flags & VkImageCreateFlags.VK_IMAGE_CREATE_MUTABLE_FORMAT_BIT) == 0)
                Fail(cmd, "VUID-VkImageViewCreateInfo-image-01762", $"view format {ci->format} differs from the image's {img.Format}, which is not mutable");
            bool blockTexel = (img.Flags & VkImageCreateFlags.VK_IMAGE_CREATE_BLOCK_TEXEL_VIEW_COMPATIBLE_BIT) != 0;
            if (fi.Planes == 0 && fv.BlockSize != fi.BlockSize)
                Fail(cmd, "VUID-VkImageViewCreateInfo-image-01761", $"view format {ci->format} ({fv.BlockSize} bytes) and image format {img.Format} ({fi.BlockSize} bytes) are not size-compatible");
            if (fi.Planes == 0 && !blockTexel && (fv.BlockWidth != fi.BlockWidth || fv.BlockHeight != fi.BlockHeight))
                Fail(cmd, "VUID-VkImageViewCreateInfo-image-01583", $"view format {ci->format} and image format {img.Format} have different texel blocks");
            if (fi.Planes != 0 && fv.BlockSize != fi.Plane0Size && fv.BlockSize != fi.Plane1Size && fv.BlockSize != fi.Plane2Size)
                Fail(cmd, "VUID-VkImageViewCreateInfo-image-01586", $"view format {ci->format} matches no plane of {img.Format}");
        }
    }

    void RecordCreateImageView(ulong* a, DeviceState dev)
    {
        ulong h = *(ulong*)a[3];
        if (h == 0) return;
        var ci = (VkImageViewCreateInfo*)a[1];
        if (!_images.TryGetValue(ci->image.Handle, out var img)) return;
        var r = ci->subresourceRange;
        uint layers = r.layerCount == VkConstants.VK_REMAINING_ARRAY_LAYERS ? img.Layers - r.baseArrayLayer : r.layerCount;
        if (ci->viewType == VkImageViewType.VK_IMAGE_VIEW_TYPE_3D) layers = img.Depth(r.baseMipLevel);
        _imageViews[h] = new ImageViewState(dev.Handle, ci->image.Handle, r.baseMipLevel, layers, img.Width(r.baseMipLevel), img.Height(r.baseMipLevel));
    }
}
