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
        return Trampolines.Invoke(Tables.vkCreateDevice, Fn(Tables.vkCreateDevice), a);
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

    /// <summary>vkAllocateMemory of the range [offset, offset+size) of the guest's heap.</summary>
    ulong AllocateShared(ulong* a, ulong offset, ulong size)
    {
        if (_heap == null) throw new ProtocolException("shared allocation on a connection without a shared heap");
        if (offset % 4096 != 0 || size % 4096 != 0 || size == 0 || offset >= _heapBytes || size > _heapBytes - offset)
            throw new ProtocolException($"shared range [{offset}, +{size}) is not page-aligned inside the {_heapBytes}-byte heap");
        var device = new VkDevice((nint)a[0]);
        var ai = (VkMemoryAllocateInfo*)a[1];
        if (ai->allocationSize > size) throw new ProtocolException($"allocation of {ai->allocationSize} bytes in a {size}-byte shared range");
        void* host = _heap + offset;

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
        SharedBytes += size;
        return Result(r);
    }

    public ulong SharedBytes;
}
