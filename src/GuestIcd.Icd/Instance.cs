using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkResult;

namespace GuestIcd.Icd;

internal static unsafe partial class Entry
{
    static HelloReply? s_probe;
    static long s_probeFailedAt; // 0: never failed
    static readonly object s_probeLock = new();
    /// <summary>The probe's connection, kept for the first vkCreateInstance: one host session (and worker
    /// process) per application rather than two, and an instance that needs no handshake of its own.</summary>
    static Connection? s_spare;

    /// <summary>What the host offers before any instance exists (the loader asks at load time). One connection
    /// answers once per process and is kept for the first instance; with no host we offer nothing and
    /// vkCreateInstance explains why.</summary>
    static HelloReply? Probe()
    {
        lock (s_probeLock)
        {
            if (s_probe is not null) return s_probe;
            // The loader asks several times while it loads us; a host that just failed is not asked again at once,
            // so a silent host costs one connect timeout, not one per question.
            if (s_probeFailedAt != 0 && Environment.TickCount64 - s_probeFailedAt < Connection.ConnectTimeoutMs) return null;
            try
            {
                var c = Connection.Open();
                s_probe = c.Host;
                s_spare = c;
                EnsureExitHook();
            }
            catch (IncompatibleHostException e)
            {
                Log.Info(e.Message);
                s_probeFailedAt = Environment.TickCount64;
            }
            return s_probe;
        }
    }

    static uint OurApiVersion => VkConstants.VK_HEADER_VERSION_COMPLETE & ~(0x7u << 29);

    public static VkResult vkEnumerateInstanceVersion(uint* pApiVersion)
    {
        var p = Probe();
        *pApiVersion = p is null ? OurApiVersion : Math.Min(p.InstanceApiVersion, OurApiVersion);
        return VK_SUCCESS;
    }

    public static VkResult vkEnumerateInstanceExtensionProperties(byte* pLayerName, uint* pPropertyCount, VkExtensionProperties* pProperties)
    {
        if (pLayerName != null) return VK_ERROR_LAYER_NOT_PRESENT;
        var probe = Probe();
        var exts = probe?.InstanceExtensions ?? [];
        // Window-system extensions are the guest's own (Surface.cs); without a host we offer nothing at all.
        int guest = probe is null ? 0 : GuestInstanceExtensions.Length;
        int total = exts.Length + guest;
        Span<VkExtensionProperties> list = total <= 64 ? stackalloc VkExtensionProperties[total] : new VkExtensionProperties[total];
        for (int i = 0; i < exts.Length; i++) list[i] = Extension(exts[i].Name, exts[i].SpecVersion);
        for (int i = 0; i < guest; i++) list[exts.Length + i] = Extension(GuestInstanceExtensions[i].Name, GuestInstanceExtensions[i].Spec);
        return FillArray<VkExtensionProperties>(list, pPropertyCount, pProperties);
    }

    public static VkResult vkEnumerateInstanceLayerProperties(uint* pPropertyCount, VkLayerProperties* pProperties)
        => FillArray<VkLayerProperties>([], pPropertyCount, pProperties);

    public static VkResult vkCreateInstance(VkInstanceCreateInfo* pCreateInfo, VkAllocationCallbacks* pAllocator, VkInstance* pInstance)
    {
        Connection? c;
        lock (s_probeLock) { c = s_spare; s_spare = null; }
        if (c is not null) c.StatsDue = true;
        if (c is not null && !c.Usable) { c.Dispose(); c = null; }
        try { c ??= Connection.Open(); }
        catch (IncompatibleHostException e)
        {
            // The loader skips an ICD that answers this, so the application still sees the other drivers.
            Log.Error(e.Message);
            return VK_ERROR_INCOMPATIBLE_DRIVER;
        }
        ulong* a = stackalloc ulong[3];
        // The host never hears of the guest's window-system extensions.
        VkInstanceCreateInfo stripped;
        byte** kept = stackalloc byte*[WsiStrip.MaxNames];
        a[0] = (ulong)WsiStrip.Instance(pCreateInfo, &stripped, kept);
        a[1] = 0;
        a[2] = (ulong)pInstance;
        try
        {
            var r = (VkResult)(int)c.Call(Tables.vkCreateInstance, a);
            if (r != VK_SUCCESS) c.Dispose();
            return r;
        }
        catch (DeviceLostException)
        {
            c.Dispose();
            return VK_ERROR_INITIALIZATION_FAILED;
        }
    }

    public static void vkDestroyInstance(VkInstance instance, VkAllocationCallbacks* pAllocator)
    {
        if (instance.IsNull) return;
        var c = Generic.ConnectionOf(instance.Handle);
        ulong* a = stackalloc ulong[2];
        a[0] = (ulong)instance.Handle;
        a[1] = 0;
        try { c.Call(Tables.vkDestroyInstance, a); }
        catch (DeviceLostException) { /* the host already dropped the session */ }
        // What is left besides the instance goes with it: its physical devices, and whatever devices (with their
        // queues and command buffers) the application did not destroy.
        Log.Debug($"vkDestroyInstance: releasing {c.Handles.Count - 1} dispatchable objects with the instance");
        if (KeepForNextInstance(c)) return;
        c.Dispose();
    }
}
