using System.Runtime.InteropServices;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;
using GuestIcd.Vulkan;
using Microsoft.Extensions.Logging;
using static GuestIcd.Vulkan.VkResult;

namespace GuestIcd.HostSim;

/// <summary>Device memory on the host side: HOST_VISIBLE allocations are imported from the guest's shared
/// heap (VK_EXT_external_memory_host), so the driver works on the very pages the guest maps.</summary>
internal sealed unsafe partial class Session
{
    const string ExternalMemoryHost = "VK_EXT_external_memory_host";

    /// <summary>Devices are created with VK_EXT_external_memory_host whenever the guest brought a heap and the
    /// host device has it; the guest does not see the extension (it is not carried), only its effect.</summary>
    ulong CreateDevice(ulong* a)
    {
        var ci = (VkDeviceCreateInfo*)a[1];
        if (_heap != null && !Enabled(ci, ExternalMemoryHost) && DeviceHasExtension(new VkPhysicalDevice((nint)a[0]), ExternalMemoryHost))
        {
            var names = (byte**)_arena.Alloc((nuint)(ci->enabledExtensionCount + 1) * 8);
            for (uint i = 0; i < ci->enabledExtensionCount; i++) names[i] = ci->ppEnabledExtensionNames[i];
            names[ci->enabledExtensionCount] = Utf8(ExternalMemoryHost);
            ci->ppEnabledExtensionNames = names;
            ci->enabledExtensionCount++;
        }
        var r = Trampolines.Invoke(Tables.vkCreateDevice, Fn(Tables.vkCreateDevice), a);
        if ((int)(uint)r == 0)
        {
            _physicalDevices[(*(VkDevice*)a[3]).Handle] = new VkPhysicalDevice((nint)a[0]);
            RememberQueueFamily(*(VkDevice*)a[3], ci);
        }
        return r;
    }

    static bool Enabled(VkDeviceCreateInfo* ci, string name)
    {
        for (uint i = 0; i < ci->enabledExtensionCount; i++)
            if (Marshal.PtrToStringUTF8((nint)ci->ppEnabledExtensionNames[i]) == name) return true;
        return false;
    }

    bool DeviceHasExtension(VkPhysicalDevice pd, string name)
    {
        var fn = (delegate* unmanaged<VkPhysicalDevice, byte*, uint*, VkExtensionProperties*, VkResult>)Fn(Tables.vkEnumerateDeviceExtensionProperties);
        uint n = 0;
        fn(pd, null, &n, null);
        var props = new VkExtensionProperties[n];
        fixed (VkExtensionProperties* p = props) fn(pd, null, &n, p);
        foreach (var e in props.AsSpan(0, (int)n))
            if (HostVulkan.Str(MemoryMarshal.CreateReadOnlySpan(in e.extensionName[0], 256)) == name) return true;
        return false;
    }

    byte* Utf8(string s)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(s);
        var p = (byte*)_arena.Alloc((nuint)bytes.Length + 1, 1);
        bytes.CopyTo(new Span<byte>(p, bytes.Length));
        return p;
    }

    /// <summary>A buffer may be bound to memory imported from the guest's heap, and the spec wants the import's
    /// handle type declared at creation (VUID-vkBindBufferMemory-memory-02727); the guest cannot know.</summary>
    ulong CreateBuffer(ulong* a)
    {
        var ci = (VkBufferCreateInfo*)a[1];
        if (_heap != null)
        {
            var ext = (VkExternalMemoryBufferCreateInfo*)FindInChain(ci->pNext, VkStructureType.VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO);
            if (ext == null)
            {
                ext = (VkExternalMemoryBufferCreateInfo*)_arena.Alloc((nuint)sizeof(VkExternalMemoryBufferCreateInfo));
                ext->sType = VkStructureType.VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO;
                ext->pNext = ci->pNext;
                ci->pNext = ext;
            }
            ext->handleTypes |= VkExternalMemoryHandleTypeFlags.VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT;
        }
        return Trampolines.Invoke(Tables.vkCreateBuffer, Fn(Tables.vkCreateBuffer), a);
    }

    /// <summary>The same for images (VUID-vkBindImageMemory-memory-02729), where the host device can import
    /// host allocations for that kind of image; otherwise the image is created as the guest asked.</summary>
    ulong CreateImage(ulong* a)
    {
        var ci = (VkImageCreateInfo*)a[1];
        if (_heap != null && FindInChain(ci->pNext, VkStructureType.VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_IMAGE_CREATE_INFO) == null
            && CanImportForImage(new VkDevice((nint)a[0]), ci))
        {
            var ext = (VkExternalMemoryImageCreateInfo*)_arena.Alloc((nuint)sizeof(VkExternalMemoryImageCreateInfo));
            ext->sType = VkStructureType.VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_IMAGE_CREATE_INFO;
            ext->pNext = ci->pNext;
            ext->handleTypes = VkExternalMemoryHandleTypeFlags.VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT;
            ci->pNext = ext;
        }
        return Trampolines.Invoke(Tables.vkCreateImage, Fn(Tables.vkCreateImage), a);
    }

    bool CanImportForImage(VkDevice device, VkImageCreateInfo* ci)
    {
        if (!_physicalDevices.TryGetValue(device.Handle, out var pd)) return false;
        var external = new VkPhysicalDeviceExternalImageFormatInfo
        {
            sType = VkStructureType.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_IMAGE_FORMAT_INFO,
            handleType = VkExternalMemoryHandleTypeFlagBits.VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT,
        };
        var info = new VkPhysicalDeviceImageFormatInfo2
        {
            sType = VkStructureType.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_IMAGE_FORMAT_INFO_2, pNext = &external,
            format = ci->format, type = ci->imageType, tiling = ci->tiling, usage = ci->usage, flags = ci->flags,
        };
        var externalProps = new VkExternalImageFormatProperties { sType = VkStructureType.VK_STRUCTURE_TYPE_EXTERNAL_IMAGE_FORMAT_PROPERTIES };
        var props = new VkImageFormatProperties2 { sType = VkStructureType.VK_STRUCTURE_TYPE_IMAGE_FORMAT_PROPERTIES_2, pNext = &externalProps };
        var query = (delegate* unmanaged<VkPhysicalDevice, VkPhysicalDeviceImageFormatInfo2*, VkImageFormatProperties2*, VkResult>)
            Fn(Tables.vkGetPhysicalDeviceImageFormatProperties2);
        return query(pd, &info, &props) == VK_SUCCESS
               && (externalProps.externalMemoryProperties.externalMemoryFeatures & VkExternalMemoryFeatureFlags.VK_EXTERNAL_MEMORY_FEATURE_IMPORTABLE_BIT) != 0;
    }

    /// <summary>Which physical device each device was created on (image import queries need it).</summary>
    readonly Dictionary<nint, VkPhysicalDevice> _physicalDevices = new();

    static void* FindInChain(void* node, VkStructureType sType)
    {
        for (; node != null; node = ((VkBaseInStructure*)node)->pNext)
            if (((VkBaseInStructure*)node)->sType == sType) return node;
        return null;
    }

    /// <summary>vkAllocateMemory of the range [offset, offset+size) of the guest's heap.</summary>
    ulong AllocateShared(ulong* a, ulong offset, ulong size)
    {
        if (_heap == null) throw new ProtocolException("shared allocation on a connection without a shared heap");
        if (offset % 4096 != 0 || size % 4096 != 0 || size == 0 || offset >= _heapBytes || size > _heapBytes - offset)
            throw new ProtocolException($"shared range [{offset}, +{size}) is not page-aligned inside the {_heapBytes}-byte heap");
        var device = new VkDevice((nint)a[0]);
        var ai = (VkMemoryAllocateInfo*)a[1];
        if (ai->allocationSize > size) throw new ProtocolException($"allocation of {ai->allocationSize} bytes in a {size}-byte shared range");
        _objects.PendingOwner = _objects.IdOf(ObjDevice, a[0]);
        if (_objects.PendingOverLimit) return RefuseOverObjectQuota(Tables.vkAllocateMemory);
        if (!WithinMemoryQuota(size)) { _objects.DiscardCreates(); return Result(VK_ERROR_OUT_OF_DEVICE_MEMORY); }
        void* host = _heap + offset;
        // The guest's allocator reuses freed ranges: what it sees must start zeroed all the same.
        ZeroShared((byte*)host, size);

        var props = new VkMemoryHostPointerPropertiesEXT { sType = VkStructureType.VK_STRUCTURE_TYPE_MEMORY_HOST_POINTER_PROPERTIES_EXT };
        var query = (delegate* unmanaged<VkDevice, VkExternalMemoryHandleTypeFlagBits, void*, VkMemoryHostPointerPropertiesEXT*, VkResult>)
            HostVulkan.GetInstanceProcAddr(_instance, "vkGetMemoryHostPointerPropertiesEXT");
        if (query == null || query(device, VkExternalMemoryHandleTypeFlagBits.VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT, host, &props) != VK_SUCCESS
            || (props.memoryTypeBits & (1u << (int)ai->memoryTypeIndex)) == 0)
        {
            log.LogWarning("session {Session}: memory type {Type} cannot import guest memory on this host", Id, ai->memoryTypeIndex);
            _objects.DiscardCreates();
            return Result(VK_ERROR_OUT_OF_DEVICE_MEMORY);
        }
        var import = (VkImportMemoryHostPointerInfoEXT*)_arena.Alloc((nuint)sizeof(VkImportMemoryHostPointerInfoEXT));
        import->sType = VkStructureType.VK_STRUCTURE_TYPE_IMPORT_MEMORY_HOST_POINTER_INFO_EXT;
        import->pNext = ai->pNext;
        import->handleType = VkExternalMemoryHandleTypeFlagBits.VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT;
        import->pHostPointer = host;
        ai->pNext = import;
        // An imported range must be a whole number of import-alignment units; the guest reserved the full pages.
        ai->allocationSize = size;
        var r = (VkResult)(int)Trampolines.Invoke(Tables.vkAllocateMemory, Fn(Tables.vkAllocateMemory), a);
        if (r != VK_SUCCESS) { _objects.DiscardCreates(); return Result(r); }
        // Mapped for its whole life so that vkFlush/InvalidateMappedMemoryRanges from the guest are valid here.
        var memory = *(VkDeviceMemory*)a[3];
        var map = (delegate* unmanaged<VkDevice, VkDeviceMemory, ulong, ulong, VkMemoryMapFlags, void**, VkResult>)Fn(Tables.vkMapMemory);
        void* mapped;
        map(device, memory, 0, VkConstants.VK_WHOLE_SIZE, 0, &mapped);
        _objects.CommitCreates();
        _memorySizes[memory.Handle] = size;
        _memoryBytes += size;
        SharedBytes += size;
        return Result(r);
    }

    public ulong SharedBytes;

    Quotas Limits => options.Quotas ?? Quotas.Default;

    /// <summary>Device memory this session holds now (driver allocations and imported heap ranges), against
    /// <see cref="Quotas.DeviceMemoryBytes"/>.</summary>
    ulong _memoryBytes;

    bool WithinMemoryQuota(ulong bytes)
    {
        if (bytes <= Limits.DeviceMemoryBytes - Math.Min(_memoryBytes, Limits.DeviceMemoryBytes)) return true;
        log.LogWarning("session {Session}: an allocation of {Bytes} bytes refused (VK_ERROR_OUT_OF_DEVICE_MEMORY): the session holds {Held} of its {Quota}-byte device-memory quota",
            Id, bytes, _memoryBytes, Limits.DeviceMemoryBytes);
        return false;
    }

    /// <summary>vkAllocateMemory of driver memory (no shared heap, or a type the heap does not serve): within the
    /// quota, and zeroed before the guest sees it.</summary>
    ulong AllocateMemory(ulong* a)
    {
        var device = new VkDevice((nint)a[0]);
        var ai = (VkMemoryAllocateInfo*)a[1];
        if (!WithinMemoryQuota(ai->allocationSize)) return Result(VK_ERROR_OUT_OF_DEVICE_MEMORY);
        var r = Trampolines.Invoke(Tables.vkAllocateMemory, Fn(Tables.vkAllocateMemory), a);
        if (r != 0) return r;
        var memory = *(VkDeviceMemory*)a[3];
        _memorySizes[memory.Handle] = ai->allocationSize;
        _memoryBytes += ai->allocationSize;
        if (_heap == null) ShadowIfMappable(a);
        ZeroNewMemory(device, memory, ai);
        return r;
    }

    /// <summary>Before the memory is freed (by the guest, or by teardown): its shadow and its quota go.</summary>
    void ForgetMemory(ulong memory)
    {
        DropShadow(memory);
        if (_memorySizes.Remove(memory, out var size)) _memoryBytes -= size;
    }

    bool _reportedObjectQuota;

    /// <summary>A creation past the object quota: a creation the guest waits for gets VK_ERROR_OUT_OF_HOST_MEMORY;
    /// one it does not wait for could only fail later at first use, so the session ends now with the reason.</summary>
    ulong RefuseOverObjectQuota(int cmd)
    {
        _objects.DiscardCreates();
        ref readonly var cd = ref Tables.Commands[cmd];
        if (!cd.WantsReply) throw new ProtocolException($"{cd.Name} would take the session past its quota of {Limits.Objects} objects");
        if (!_reportedObjectQuota)
        {
            _reportedObjectQuota = true;
            log.LogWarning("session {Session}: {Command} refused (VK_ERROR_OUT_OF_HOST_MEMORY): the session holds {Count} objects, its quota",
                Id, cd.Name, _objects.GuestCount);
        }
        return Result(VK_ERROR_OUT_OF_HOST_MEMORY);
    }
}
