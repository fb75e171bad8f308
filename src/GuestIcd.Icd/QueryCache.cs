using GuestIcd.Protocol;

namespace GuestIcd.Icd;

/// <summary>Answers to physical-device queries (vkGetPhysicalDevice*, vkEnumerate* of an instance's physical
/// devices and their extensions), keyed by the exact request bytes:
/// a device's properties, features, formats and limits cannot change while the connection lives, so
/// each distinct question crosses to the host once. Lookups allocate nothing; misses copy the pair.</summary>
internal sealed class QueryCache
{
    public static readonly bool[] Cacheable = Build();

    static bool[] Build()
    {
        var marks = new bool[Tables.Commands.Length];
        for (int i = 0; i < marks.Length; i++)
        {
            ref readonly var c = ref Tables.Commands[i];
            marks[i] = c.OnWire && c.WantsReply && (c.Level == Protocol.Codec.CommandLevel.PhysicalDevice
                       && c.Name.StartsWith("vkGetPhysicalDevice", StringComparison.Ordinal)
                       // Tools (layers) can come and go; everything else describes the device itself.
                       && c.Name != "vkGetPhysicalDeviceToolProperties"
                       // What a physical device offers, and which physical devices the instance has: the loader
                       // asks again for every vkEnumeratePhysicalDevices the application makes (12 round trips
                       // of vulkaninfo's 67), and the answer names the same objects each time.
                       || c.Name is "vkEnumerateDeviceExtensionProperties" or "vkEnumerateDeviceLayerProperties"
                           or "vkEnumeratePhysicalDevices" or "vkEnumeratePhysicalDeviceGroups");
        }
        return marks;
    }

    readonly Dictionary<int, List<(byte[] Request, byte[] Reply)>> _entries = new();

    static int Hash(ReadOnlySpan<byte> bytes)
    {
        var h = new HashCode();
        h.AddBytes(bytes);
        return h.ToHashCode();
    }

    public bool TryGet(ReadOnlySpan<byte> request, out byte[] reply)
    {
        if (_entries.TryGetValue(Hash(request), out var list))
            foreach (var (req, rep) in list)
                if (request.SequenceEqual(req)) { reply = rep; return true; }
        reply = [];
        return false;
    }

    public void Add(byte[] request, byte[] reply)
    {
        int h = Hash(request);
        if (!_entries.TryGetValue(h, out var list)) _entries[h] = list = new();
        list.Add((request, reply));
    }
}
