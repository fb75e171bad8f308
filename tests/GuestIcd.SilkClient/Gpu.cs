using System.Runtime.InteropServices;
using Silk.NET.Core.Native;
using Silk.NET.Vulkan;
using Buffer = Silk.NET.Vulkan.Buffer;

namespace GuestIcd.SilkClient;

/// <summary>A failed Vulkan call: the call's text and its VkResult.</summary>
public sealed class VulkanException(string call, Result result)
    : Exception($"FAILED {call} = {result} ({(int)result})")
{
    public Result Result { get; } = result;
}

/// <summary>The instance, the first physical device, one device with a graphics+compute queue, and the helpers
/// both workloads share. Every VkResult goes through <see cref="Check"/>.</summary>
public sealed unsafe class Gpu : IDisposable
{
    public readonly Vk Vk;
    public readonly Instance Instance;
    public readonly PhysicalDevice PhysicalDevice;
    public readonly Device Device;
    public readonly Queue Queue;
    public readonly uint QueueFamily;
    public readonly string DeviceName;
    readonly PhysicalDeviceMemoryProperties _memory;

    public static void Check(Result r, string call)
    {
        if (r != Result.Success) throw new VulkanException(call, r);
    }

    public Gpu()
    {
        Vk = Vk.GetApi(); // loads the system loader, libvulkan.so.1

        var appName = SilkMarshal.StringToPtr("guesticd silk client");
        try
        {
            var app = new ApplicationInfo
            {
                SType = StructureType.ApplicationInfo,
                PApplicationName = (byte*)appName,
                ApplicationVersion = 1,
                PEngineName = (byte*)appName,
                EngineVersion = 1,
                ApiVersion = Vk.Version13,
            };
            var ici = new InstanceCreateInfo { SType = StructureType.InstanceCreateInfo, PApplicationInfo = &app };
            Instance instance;
            Check(Vk.CreateInstance(&ici, null, &instance), "vkCreateInstance");
            Instance = instance;
        }
        finally { SilkMarshal.Free(appName); }
        Vk.CurrentInstance = Instance;

        uint count = 0;
        Check(Vk.EnumeratePhysicalDevices(Instance, &count, null), "vkEnumeratePhysicalDevices(count)");
        if (count == 0) throw new InvalidOperationException("no physical device");
        var devices = new PhysicalDevice[count];
        fixed (PhysicalDevice* pd = devices)
        {
            var r = Vk.EnumeratePhysicalDevices(Instance, &count, pd);
            if (r != Result.Incomplete) Check(r, "vkEnumeratePhysicalDevices");
        }
        PhysicalDevice = devices[0];

        PhysicalDeviceProperties props;
        Vk.GetPhysicalDeviceProperties(PhysicalDevice, &props);
        DeviceName = SilkMarshal.PtrToString((nint)props.DeviceName) ?? "";
        if (props.ApiVersion < Vk.Version13)
            throw new InvalidOperationException($"device {DeviceName} supports only API {props.ApiVersion >> 22}.{(props.ApiVersion >> 12) & 0x3ff}");
        PhysicalDeviceMemoryProperties mp;
        Vk.GetPhysicalDeviceMemoryProperties(PhysicalDevice, &mp);
        _memory = mp;

        uint families = 0;
        Vk.GetPhysicalDeviceQueueFamilyProperties(PhysicalDevice, &families, null);
        var qfs = new QueueFamilyProperties[families];
        fixed (QueueFamilyProperties* p = qfs) Vk.GetPhysicalDeviceQueueFamilyProperties(PhysicalDevice, &families, p);
        const QueueFlags want = QueueFlags.GraphicsBit | QueueFlags.ComputeBit;
        QueueFamily = uint.MaxValue;
        for (uint i = 0; i < families; i++)
            if ((qfs[i].QueueFlags & want) == want && qfs[i].QueueCount > 0) { QueueFamily = i; break; }
        if (QueueFamily == uint.MaxValue) throw new InvalidOperationException("no queue family with graphics and compute");

        float priority = 1f;
        var qci = new DeviceQueueCreateInfo
        {
            SType = StructureType.DeviceQueueCreateInfo, QueueFamilyIndex = QueueFamily, QueueCount = 1, PQueuePriorities = &priority,
        };
        var dci = new DeviceCreateInfo { SType = StructureType.DeviceCreateInfo, QueueCreateInfoCount = 1, PQueueCreateInfos = &qci };
        Device device;
        Check(Vk.CreateDevice(PhysicalDevice, &dci, null, &device), "vkCreateDevice");
        Device = device;
        Vk.CurrentDevice = Device;
        Queue queue;
        Vk.GetDeviceQueue(Device, QueueFamily, 0, &queue);
        Queue = queue;
    }

    /// <summary>The first memory type allowed by <paramref name="bits"/> with all of <paramref name="want"/>.</summary>
    public uint FindMemory(uint bits, MemoryPropertyFlags want)
    {
        for (int i = 0; i < _memory.MemoryTypeCount; i++)
            if ((bits & (1u << i)) != 0 && (_memory.MemoryTypes[i].PropertyFlags & want) == want) return (uint)i;
        return uint.MaxValue;
    }

    public sealed class HostBuffer
    {
        public Buffer Buffer;
        public DeviceMemory Memory;
        public void* Mapped;
        public ulong Size;
    }

    /// <summary>A buffer bound to its own HOST_VISIBLE|HOST_COHERENT allocation, mapped whole.</summary>
    public HostBuffer CreateHostBuffer(ulong size, BufferUsageFlags usage, string what)
    {
        var hb = new HostBuffer { Size = size };
        var bci = new BufferCreateInfo { SType = StructureType.BufferCreateInfo, Size = size, Usage = usage, SharingMode = SharingMode.Exclusive };
        Buffer buffer;
        Check(Vk.CreateBuffer(Device, &bci, null, &buffer), $"vkCreateBuffer({what})");
        hb.Buffer = buffer;
        MemoryRequirements req;
        Vk.GetBufferMemoryRequirements(Device, buffer, &req);
        var type = FindMemory(req.MemoryTypeBits, MemoryPropertyFlags.HostVisibleBit | MemoryPropertyFlags.HostCoherentBit);
        if (type == uint.MaxValue) throw new InvalidOperationException($"no HOST_VISIBLE|HOST_COHERENT memory type for {what}");
        var mai = new MemoryAllocateInfo { SType = StructureType.MemoryAllocateInfo, AllocationSize = req.Size, MemoryTypeIndex = type };
        DeviceMemory memory;
        Check(Vk.AllocateMemory(Device, &mai, null, &memory), $"vkAllocateMemory({what})");
        hb.Memory = memory;
        Check(Vk.BindBufferMemory(Device, hb.Buffer, hb.Memory, 0), $"vkBindBufferMemory({what})");
        void* p;
        Check(Vk.MapMemory(Device, hb.Memory, 0, Vk.WholeSize, 0, &p), $"vkMapMemory({what})");
        hb.Mapped = p;
        return hb;
    }

    public void Destroy(HostBuffer hb)
    {
        Vk.UnmapMemory(Device, hb.Memory);
        Vk.DestroyBuffer(Device, hb.Buffer, null);
        Vk.FreeMemory(Device, hb.Memory, null);
    }

    public ShaderModule LoadShader(string name)
    {
        var path = Path.Combine(AppContext.BaseDirectory, "shaders", name);
        var code = File.ReadAllBytes(path);
        if (code.Length == 0 || code.Length % 4 != 0) throw new InvalidDataException($"{path} is not SPIR-V ({code.Length} bytes)");
        fixed (byte* c = code)
        {
            var smci = new ShaderModuleCreateInfo { SType = StructureType.ShaderModuleCreateInfo, CodeSize = (nuint)code.Length, PCode = (uint*)c };
            ShaderModule module;
            Check(Vk.CreateShaderModule(Device, &smci, null, &module), $"vkCreateShaderModule({name})");
            return module;
        }
    }

    /// <summary>A command pool, one primary command buffer recorded by <paramref name="record"/>, one submit,
    /// a fence waited on (10 s), its status checked; everything freed again.</summary>
    public void RunOnce(string what, Action<CommandBuffer> record)
    {
        var cpci = new CommandPoolCreateInfo { SType = StructureType.CommandPoolCreateInfo, QueueFamilyIndex = QueueFamily };
        CommandPool pool;
        Check(Vk.CreateCommandPool(Device, &cpci, null, &pool), $"vkCreateCommandPool({what})");
        try
        {
            var cbai = new CommandBufferAllocateInfo
            {
                SType = StructureType.CommandBufferAllocateInfo, CommandPool = pool, Level = CommandBufferLevel.Primary, CommandBufferCount = 1,
            };
            CommandBuffer cmd;
            Check(Vk.AllocateCommandBuffers(Device, &cbai, &cmd), $"vkAllocateCommandBuffers({what})");
            var bi = new CommandBufferBeginInfo { SType = StructureType.CommandBufferBeginInfo, Flags = CommandBufferUsageFlags.OneTimeSubmitBit };
            Check(Vk.BeginCommandBuffer(cmd, &bi), $"vkBeginCommandBuffer({what})");
            record(cmd);
            Check(Vk.EndCommandBuffer(cmd), $"vkEndCommandBuffer({what})");

            var fci = new FenceCreateInfo { SType = StructureType.FenceCreateInfo };
            Fence fence;
            Check(Vk.CreateFence(Device, &fci, null, &fence), $"vkCreateFence({what})");
            try
            {
                var si = new SubmitInfo { SType = StructureType.SubmitInfo, CommandBufferCount = 1, PCommandBuffers = &cmd };
                Check(Vk.QueueSubmit(Queue, 1, &si, fence), $"vkQueueSubmit({what})");
                Check(Vk.WaitForFences(Device, 1, &fence, true, 10_000_000_000UL), $"vkWaitForFences({what})");
                Check(Vk.GetFenceStatus(Device, fence), $"vkGetFenceStatus({what})");
            }
            finally { Vk.DestroyFence(Device, fence, null); }
            Vk.FreeCommandBuffers(Device, pool, 1, &cmd);
        }
        finally { Vk.DestroyCommandPool(Device, pool, null); }
    }

    /// <summary>One deliberate misuse the driver ignores: a fence created with an undefined flag bit.</summary>
    public void ProvokeValidation()
    {
        var fci = new FenceCreateInfo { SType = StructureType.FenceCreateInfo, Flags = (FenceCreateFlags)0x80 };
        Fence fence;
        Check(Vk.CreateFence(Device, &fci, null, &fence), "vkCreateFence(provoked)");
        Vk.DestroyFence(Device, fence, null);
    }

    public void Dispose()
    {
        if (Device.Handle != 0)
        {
            Check(Vk.DeviceWaitIdle(Device), "vkDeviceWaitIdle");
            Vk.DestroyDevice(Device, null);
        }
        if (Instance.Handle != 0) Vk.DestroyInstance(Instance, null);
        Vk.Dispose();
    }

    /// <summary>"main", null-terminated, for shader stages; lives as long as the process.</summary>
    public static readonly byte* EntryMain = (byte*)Marshal.StringToHGlobalAnsi("main");
}
