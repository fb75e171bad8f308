using System.Runtime.InteropServices;
using System.Text;
using GuestIcd.Vulkan;

namespace GuestIcd.HostSim;

/// <summary>The host's real Vulkan, reached through the system loader (libvulkan.so.1; vulkan-1.dll on a
/// Windows host) and function pointers; the driver behind it is whatever the host has (lavapipe in CI,
/// NVIDIA on a GPU host).</summary>
internal static unsafe class HostVulkan
{
    public static readonly string LoaderName = OperatingSystem.IsWindows() ? "vulkan-1.dll" : "libvulkan.so.1";
    static readonly nint s_lib = NativeLibrary.Load(LoaderName);
    static readonly delegate* unmanaged<VkInstance, byte*, nint> s_gipa =
        (delegate* unmanaged<VkInstance, byte*, nint>)NativeLibrary.GetExport(s_lib, "vkGetInstanceProcAddr");

    public static nint GetInstanceProcAddr(VkInstance instance, string name)
    {
        Span<byte> buf = stackalloc byte[256];
        int n = Encoding.ASCII.GetBytes(name, buf);
        buf[n] = 0;
        fixed (byte* p = buf) return s_gipa(instance, p);
    }

    /// <summary>A function the loader itself exports (its dispatching trampoline): valid whatever instance the
    /// object was made from, and whether or not the session's current instance still exists.</summary>
    public static nint Export(string name) => NativeLibrary.GetExport(s_lib, name);

    public static string Str(ReadOnlySpan<byte> fixedChars)
    {
        int n = fixedChars.IndexOf((byte)0);
        return Encoding.UTF8.GetString(n < 0 ? fixedChars : fixedChars[..n]);
    }

    public static uint InstanceVersion()
    {
        var fn = (delegate* unmanaged<uint*, VkResult>)GetInstanceProcAddr(default, "vkEnumerateInstanceVersion");
        uint v = VkConstants.VK_HEADER_VERSION_COMPLETE;
        if (fn != null) fn(&v);
        return v;
    }

    public static (string Name, uint Spec)[] InstanceExtensions()
    {
        var fn = (delegate* unmanaged<byte*, uint*, VkExtensionProperties*, VkResult>)GetInstanceProcAddr(default, "vkEnumerateInstanceExtensionProperties");
        uint n = 0;
        fn(null, &n, null);
        var props = new VkExtensionProperties[n];
        fixed (VkExtensionProperties* p = props) fn(null, &n, p);
        return props.Take((int)n).Select(e => (Str(MemoryMarshal.CreateReadOnlySpan(in e.extensionName[0], 256)), e.specVersion)).ToArray();
    }

    /// <summary>The names of the host's physical devices, from a short-lived instance.</summary>
    public static List<string> DeviceNames()
    {
        var names = new List<string>();
        var create = (delegate* unmanaged<VkInstanceCreateInfo*, void*, VkInstance*, VkResult>)GetInstanceProcAddr(default, "vkCreateInstance");
        var app = new VkApplicationInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_APPLICATION_INFO, apiVersion = InstanceVersion() };
        var ci = new VkInstanceCreateInfo { sType = VkStructureType.VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, pApplicationInfo = &app };
        VkInstance inst;
        if (create(&ci, null, &inst) != VkResult.VK_SUCCESS) return names;
        foreach (var pd in PhysicalDevices(inst)) names.Add(DeviceName(inst, pd));
        var destroy = (delegate* unmanaged<VkInstance, void*, void>)GetInstanceProcAddr(inst, "vkDestroyInstance");
        destroy(inst, null);
        return names;
    }

    public static VkPhysicalDevice[] PhysicalDevices(VkInstance inst)
    {
        var en = (delegate* unmanaged<VkInstance, uint*, VkPhysicalDevice*, VkResult>)GetInstanceProcAddr(inst, "vkEnumeratePhysicalDevices");
        uint n = 0;
        en(inst, &n, null);
        var pds = new VkPhysicalDevice[n];
        fixed (VkPhysicalDevice* p = pds) en(inst, &n, p);
        return pds.Take((int)n).ToArray();
    }

    public static string DeviceName(VkInstance inst, VkPhysicalDevice pd)
    {
        var props = (delegate* unmanaged<VkPhysicalDevice, VkPhysicalDeviceProperties*, void>)GetInstanceProcAddr(inst, "vkGetPhysicalDeviceProperties");
        VkPhysicalDeviceProperties p;
        props(pd, &p);
        return Str(MemoryMarshal.CreateReadOnlySpan(in p.deviceName[0], 256));
    }
}
