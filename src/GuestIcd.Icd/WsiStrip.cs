using System.Runtime.InteropServices;
using GuestIcd.Vulkan;

namespace GuestIcd.Icd;

/// <summary>The window-system extensions are implemented in the guest, so vkCreateInstance and vkCreateDevice
/// send the host the application's create info without them: the host neither needs nor (on a headless
/// server) necessarily has them, and its gate holds a device to the extensions it was created with.</summary>
internal static unsafe class WsiStrip
{
    /// <summary>More names than this travel unchanged (the host then answers for them).</summary>
    public const int MaxNames = 128;

    static readonly byte[][] s_instance = Entry.GuestInstanceExtensions.Select(e => System.Text.Encoding.ASCII.GetBytes(e.Name)).ToArray();
    static readonly byte[][] s_device = Entry.GuestDeviceExtensions.Select(e => System.Text.Encoding.ASCII.GetBytes(e.Name)).ToArray();

    static bool IsOneOf(byte* name, byte[][] names)
    {
        var n = MemoryMarshal.CreateReadOnlySpanFromNullTerminated(name);
        foreach (var e in names) if (n.SequenceEqual(e)) return true;
        return false;
    }

    /// <summary>Copies the names the host should see into <paramref name="kept"/>; returns how many.</summary>
    static uint Filter(byte** names, uint count, byte** kept, bool device)
    {
        uint n = 0;
        for (uint i = 0; i < count; i++)
        {
            var name = names[i];
            if (name != null && IsOneOf(name, device ? s_device : s_instance)) continue;
            kept[n++] = name;
        }
        return n;
    }

    public static VkInstanceCreateInfo* Instance(VkInstanceCreateInfo* ci, VkInstanceCreateInfo* copy, byte** kept)
    {
        if (ci == null || ci->enabledExtensionCount == 0 || ci->enabledExtensionCount > MaxNames || ci->ppEnabledExtensionNames == null) return ci;
        *copy = *ci;
        copy->enabledExtensionCount = Filter(ci->ppEnabledExtensionNames, ci->enabledExtensionCount, kept, device: false);
        copy->ppEnabledExtensionNames = kept;
        return copy;
    }

    public static VkDeviceCreateInfo* Device(VkDeviceCreateInfo* ci, VkDeviceCreateInfo* copy, byte** kept)
    {
        if (ci == null || ci->enabledExtensionCount == 0 || ci->enabledExtensionCount > MaxNames || ci->ppEnabledExtensionNames == null) return ci;
        *copy = *ci;
        copy->enabledExtensionCount = Filter(ci->ppEnabledExtensionNames, ci->enabledExtensionCount, kept, device: true);
        copy->ppEnabledExtensionNames = kept;
        return copy;
    }
}
