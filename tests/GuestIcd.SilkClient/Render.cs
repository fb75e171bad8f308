using Silk.NET.Vulkan;
using static GuestIcd.SilkClient.Gpu;

namespace GuestIcd.SilkClient;

/// <summary>An offscreen render: a triangle generated from gl_VertexIndex with interpolated red/green/blue
/// corners, into a 64x64 RGBA8 colour attachment cleared to opaque black, copied to a HOST_VISIBLE buffer.
/// Prints the FNV-1a-64 of the pixels and how many are not black, so two runs can be compared.</summary>
public static unsafe class Render
{
    const uint Size = 64;
    const Format ColorFormat = Format.R8G8B8A8Unorm;

    public static int Run(Gpu gpu)
    {
        var vk = gpu.Vk;
        var device = gpu.Device;

        // The colour attachment: optimal tiling, device-local memory where there is such a type.
        var ici = new ImageCreateInfo
        {
            SType = StructureType.ImageCreateInfo, ImageType = ImageType.Type2D, Format = ColorFormat,
            Extent = new Extent3D(Size, Size, 1), MipLevels = 1, ArrayLayers = 1, Samples = SampleCountFlags.Count1Bit,
            Tiling = ImageTiling.Optimal, Usage = ImageUsageFlags.ColorAttachmentBit | ImageUsageFlags.TransferSrcBit,
            SharingMode = SharingMode.Exclusive, InitialLayout = ImageLayout.Undefined,
        };
        Image image;
        Check(vk.CreateImage(device, &ici, null, &image), "vkCreateImage");
        MemoryRequirements req;
        vk.GetImageMemoryRequirements(device, image, &req);
        var type = gpu.FindMemory(req.MemoryTypeBits, MemoryPropertyFlags.DeviceLocalBit);
        if (type == uint.MaxValue) type = gpu.FindMemory(req.MemoryTypeBits, 0);
        if (type == uint.MaxValue) throw new InvalidOperationException("no memory type for the colour attachment");
        var mai = new MemoryAllocateInfo { SType = StructureType.MemoryAllocateInfo, AllocationSize = req.Size, MemoryTypeIndex = type };
        DeviceMemory imageMemory;
        Check(vk.AllocateMemory(device, &mai, null, &imageMemory), "vkAllocateMemory(image)");
        Check(vk.BindImageMemory(device, image, imageMemory, 0), "vkBindImageMemory");

        var colorRange = new ImageSubresourceRange(ImageAspectFlags.ColorBit, 0, 1, 0, 1);
        var ivci = new ImageViewCreateInfo
        {
            SType = StructureType.ImageViewCreateInfo, Image = image, ViewType = ImageViewType.Type2D, Format = ColorFormat,
            Components = new ComponentMapping(ComponentSwizzle.Identity, ComponentSwizzle.Identity, ComponentSwizzle.Identity, ComponentSwizzle.Identity),
            SubresourceRange = colorRange,
        };
        ImageView view;
        Check(vk.CreateImageView(device, &ivci, null, &view), "vkCreateImageView");

        // One subpass, cleared on load, left in TRANSFER_SRC_OPTIMAL for the copy.
        var attachment = new AttachmentDescription
        {
            Format = ColorFormat, Samples = SampleCountFlags.Count1Bit, LoadOp = AttachmentLoadOp.Clear, StoreOp = AttachmentStoreOp.Store,
            StencilLoadOp = AttachmentLoadOp.DontCare, StencilStoreOp = AttachmentStoreOp.DontCare,
            InitialLayout = ImageLayout.Undefined, FinalLayout = ImageLayout.TransferSrcOptimal,
        };
        var colorRef = new AttachmentReference { Attachment = 0, Layout = ImageLayout.ColorAttachmentOptimal };
        var subpass = new SubpassDescription { PipelineBindPoint = PipelineBindPoint.Graphics, ColorAttachmentCount = 1, PColorAttachments = &colorRef };
        var deps = stackalloc SubpassDependency[2];
        deps[0] = new SubpassDependency
        {
            SrcSubpass = Vk.SubpassExternal, DstSubpass = 0,
            SrcStageMask = PipelineStageFlags.ColorAttachmentOutputBit, DstStageMask = PipelineStageFlags.ColorAttachmentOutputBit,
            SrcAccessMask = 0, DstAccessMask = AccessFlags.ColorAttachmentWriteBit,
        };
        deps[1] = new SubpassDependency
        {
            SrcSubpass = 0, DstSubpass = Vk.SubpassExternal,
            SrcStageMask = PipelineStageFlags.ColorAttachmentOutputBit, DstStageMask = PipelineStageFlags.TransferBit,
            SrcAccessMask = AccessFlags.ColorAttachmentWriteBit, DstAccessMask = AccessFlags.TransferReadBit,
        };
        var rpci = new RenderPassCreateInfo
        {
            SType = StructureType.RenderPassCreateInfo, AttachmentCount = 1, PAttachments = &attachment,
            SubpassCount = 1, PSubpasses = &subpass, DependencyCount = 2, PDependencies = deps,
        };
        RenderPass renderPass;
        Check(vk.CreateRenderPass(device, &rpci, null, &renderPass), "vkCreateRenderPass");

        var fbci = new FramebufferCreateInfo
        {
            SType = StructureType.FramebufferCreateInfo, RenderPass = renderPass, AttachmentCount = 1, PAttachments = &view,
            Width = Size, Height = Size, Layers = 1,
        };
        Framebuffer framebuffer;
        Check(vk.CreateFramebuffer(device, &fbci, null, &framebuffer), "vkCreateFramebuffer");

        var plci = new PipelineLayoutCreateInfo { SType = StructureType.PipelineLayoutCreateInfo };
        PipelineLayout layout;
        Check(vk.CreatePipelineLayout(device, &plci, null, &layout), "vkCreatePipelineLayout(render)");

        var vert = gpu.LoadShader("triangle.vert.spv");
        var frag = gpu.LoadShader("triangle.frag.spv");
        var stages = stackalloc PipelineShaderStageCreateInfo[2];
        stages[0] = new PipelineShaderStageCreateInfo
        {
            SType = StructureType.PipelineShaderStageCreateInfo, Stage = ShaderStageFlags.VertexBit, Module = vert, PName = EntryMain,
        };
        stages[1] = new PipelineShaderStageCreateInfo
        {
            SType = StructureType.PipelineShaderStageCreateInfo, Stage = ShaderStageFlags.FragmentBit, Module = frag, PName = EntryMain,
        };
        var vertexInput = new PipelineVertexInputStateCreateInfo { SType = StructureType.PipelineVertexInputStateCreateInfo };
        var inputAssembly = new PipelineInputAssemblyStateCreateInfo
        {
            SType = StructureType.PipelineInputAssemblyStateCreateInfo, Topology = PrimitiveTopology.TriangleList,
        };
        var viewport = new Viewport { X = 0, Y = 0, Width = Size, Height = Size, MinDepth = 0, MaxDepth = 1 };
        var scissor = new Rect2D(new Offset2D(0, 0), new Extent2D(Size, Size));
        var viewportState = new PipelineViewportStateCreateInfo
        {
            SType = StructureType.PipelineViewportStateCreateInfo, ViewportCount = 1, PViewports = &viewport, ScissorCount = 1, PScissors = &scissor,
        };
        var raster = new PipelineRasterizationStateCreateInfo
        {
            SType = StructureType.PipelineRasterizationStateCreateInfo, PolygonMode = PolygonMode.Fill, CullMode = CullModeFlags.None,
            FrontFace = FrontFace.CounterClockwise, LineWidth = 1,
        };
        var multisample = new PipelineMultisampleStateCreateInfo
        {
            SType = StructureType.PipelineMultisampleStateCreateInfo, RasterizationSamples = SampleCountFlags.Count1Bit,
        };
        var blendAttachment = new PipelineColorBlendAttachmentState
        {
            BlendEnable = false,
            ColorWriteMask = ColorComponentFlags.RBit | ColorComponentFlags.GBit | ColorComponentFlags.BBit | ColorComponentFlags.ABit,
        };
        var blend = new PipelineColorBlendStateCreateInfo
        {
            SType = StructureType.PipelineColorBlendStateCreateInfo, AttachmentCount = 1, PAttachments = &blendAttachment,
        };
        var gpci = new GraphicsPipelineCreateInfo
        {
            SType = StructureType.GraphicsPipelineCreateInfo, StageCount = 2, PStages = stages,
            PVertexInputState = &vertexInput, PInputAssemblyState = &inputAssembly, PViewportState = &viewportState,
            PRasterizationState = &raster, PMultisampleState = &multisample, PColorBlendState = &blend,
            Layout = layout, RenderPass = renderPass, Subpass = 0, BasePipelineIndex = -1,
        };
        Pipeline pipeline;
        Check(vk.CreateGraphicsPipelines(device, default, 1, &gpci, null, &pipeline), "vkCreateGraphicsPipelines");

        ulong bytes = Size * Size * 4;
        var readback = gpu.CreateHostBuffer(bytes, BufferUsageFlags.TransferDstBit, "readback");
        var pixels = (byte*)readback.Mapped;
        new Span<byte>(pixels, (int)bytes).Fill(0x5A); // anything the copy does not overwrite shows in the checksum

        // Copies: a local whose address was taken cannot be captured by the recording lambda.
        var (rp, fb, pl, img, buf) = (renderPass, framebuffer, pipeline, image, readback.Buffer);
        gpu.RunOnce("render", cmd =>
        {
            var clear = new ClearValue { Color = new ClearColorValue { Float32_0 = 0, Float32_1 = 0, Float32_2 = 0, Float32_3 = 1 } };
            var rpbi = new RenderPassBeginInfo
            {
                SType = StructureType.RenderPassBeginInfo, RenderPass = rp, Framebuffer = fb,
                RenderArea = new Rect2D(new Offset2D(0, 0), new Extent2D(Size, Size)), ClearValueCount = 1, PClearValues = &clear,
            };
            vk.CmdBeginRenderPass(cmd, &rpbi, SubpassContents.Inline);
            vk.CmdBindPipeline(cmd, PipelineBindPoint.Graphics, pl);
            vk.CmdDraw(cmd, 3, 1, 0, 0);
            vk.CmdEndRenderPass(cmd);
            var region = new BufferImageCopy
            {
                BufferOffset = 0, BufferRowLength = 0, BufferImageHeight = 0,
                ImageSubresource = new ImageSubresourceLayers(ImageAspectFlags.ColorBit, 0, 0, 1),
                ImageOffset = new Offset3D(0, 0, 0), ImageExtent = new Extent3D(Size, Size, 1),
            };
            vk.CmdCopyImageToBuffer(cmd, img, ImageLayout.TransferSrcOptimal, buf, 1, &region);
            var barrier = new BufferMemoryBarrier
            {
                SType = StructureType.BufferMemoryBarrier, SrcAccessMask = AccessFlags.TransferWriteBit, DstAccessMask = AccessFlags.HostReadBit,
                SrcQueueFamilyIndex = Vk.QueueFamilyIgnored, DstQueueFamilyIndex = Vk.QueueFamilyIgnored,
                Buffer = buf, Offset = 0, Size = Vk.WholeSize,
            };
            vk.CmdPipelineBarrier(cmd, PipelineStageFlags.TransferBit, PipelineStageFlags.HostBit, 0, 0, null, 1, &barrier, 0, null);
        });

        ulong hash = 0xcbf29ce484222325UL;
        int nonBlack = 0;
        for (int i = 0; i < (int)bytes; i++) { hash ^= pixels[i]; hash *= 0x100000001b3UL; }
        for (int p = 0; p < (int)(Size * Size); p++)
            if ((pixels[p * 4] | pixels[p * 4 + 1] | pixels[p * 4 + 2]) != 0) nonBlack++;
        // Sanity: the triangle's centroid is lit with all three colours, the top corners stay the clear colour.
        byte* Pixel(uint x, uint y) => pixels + (y * Size + x) * 4;
        var centre = Pixel(32, 40);
        var corner = Pixel(0, 0);
        var problems = new List<string>();
        if (centre[0] == 0 || centre[1] == 0 || centre[2] == 0 || centre[3] != 255)
            problems.Add($"centre pixel is ({centre[0]},{centre[1]},{centre[2]},{centre[3]}), want all channels lit");
        if (corner[0] != 0 || corner[1] != 0 || corner[2] != 0 || corner[3] != 255)
            problems.Add($"corner pixel is ({corner[0]},{corner[1]},{corner[2]},{corner[3]}), want opaque black");
        if (nonBlack == 0 || nonBlack >= Size * Size) problems.Add($"{nonBlack} non-black pixels of {Size * Size}");

        vk.DestroyPipeline(device, pipeline, null);
        vk.DestroyShaderModule(device, vert, null);
        vk.DestroyShaderModule(device, frag, null);
        vk.DestroyPipelineLayout(device, layout, null);
        vk.DestroyFramebuffer(device, framebuffer, null);
        vk.DestroyRenderPass(device, renderPass, null);
        vk.DestroyImageView(device, view, null);
        vk.DestroyImage(device, image, null);
        vk.FreeMemory(device, imageMemory, null);
        gpu.Destroy(readback);

        Console.WriteLine($"render: checksum {hash:x16} nonblack {nonBlack}");
        foreach (var p in problems) Console.WriteLine("render: " + p);
        return problems.Count == 0 ? 0 : 1;
    }
}
