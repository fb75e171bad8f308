using System.Runtime.InteropServices;
using GuestIcd.Vulkan;
using Microsoft.Extensions.Logging;

namespace GuestIcd.HostSim;

/// <summary>A driver instance outlives the guest's for the guest's next vkCreateInstance (issue 11 point 2,
/// "cache what cannot change"). A guest that destroys its instance and creates another of the same kind —
/// test suites, tools that probe then work, and every process with the ICD's kept session — would make the
/// driver tear its instance down and build the same one again: lavapipe's vkDestroyInstance and vkCreateInstance
/// plus its first physical-device enumeration are about 5 ms of the 4–8 ms such an application measures
/// natively. So a destroyed instance whose children are all gone is parked, and a create with byte-for-byte the
/// same create info (flags, application info, layers, extensions; no pNext chain, whose structs could carry
/// callbacks into the old instance's guest) takes it back. Nothing of the guest's old instance survives: its
/// objects were destroyed and its ids forgotten; what the driver keeps is what it would rebuild the same.
/// Not with --validation, whose messenger is per instance.</summary>
internal sealed unsafe partial class Session
{
    VkInstance _parked;
    byte[]? _parkedKey;
    /// <summary>The create info of each live host instance that may be parked.</summary>
    readonly Dictionary<nint, byte[]> _instanceKeys = new();

    /// <summary>The create info as bytes, or null where it may not be parked (a pNext chain, validation).</summary>
    byte[]? InstanceKey(VkInstanceCreateInfo* ci)
    {
        if (options.Validation || ci->pNext != null) return null;
        using var key = new MemoryStream();
        using var w = new BinaryWriter(key);
        w.Write((uint)ci->flags);
        var app = ci->pApplicationInfo;
        w.Write(app != null);
        if (app != null)
        {
            if (app->pNext != null) return null;
            WriteName(w, app->pApplicationName);
            w.Write(app->applicationVersion);
            WriteName(w, app->pEngineName);
            w.Write(app->engineVersion);
            w.Write(app->apiVersion);
        }
        w.Write(ci->enabledLayerCount);
        for (uint i = 0; i < ci->enabledLayerCount; i++) WriteName(w, ci->ppEnabledLayerNames[i]);
        w.Write(ci->enabledExtensionCount);
        for (uint i = 0; i < ci->enabledExtensionCount; i++) WriteName(w, ci->ppEnabledExtensionNames[i]);
        w.Flush();
        return key.ToArray();
    }

    static void WriteName(BinaryWriter w, byte* name)
    {
        w.Write(name != null);
        if (name != null) w.Write(MemoryMarshal.CreateReadOnlySpanFromNullTerminated(name));
        w.Write((byte)0);
    }

    /// <summary>The parked instance, where <paramref name="key"/> matches what it was created with; a parked
    /// instance that does not match is destroyed first, so that at most one driver instance idles.</summary>
    bool TryUnpark(byte[]? key, out VkInstance instance)
    {
        instance = default;
        if (_parked.IsNull) return false;
        if (key is null || !key.AsSpan().SequenceEqual(_parkedKey))
        {
            DestroyParked();
            return false;
        }
        instance = _parked;
        _instanceKeys[instance.Handle] = key;
        _parked = default;
        _parkedKey = null;
        log.LogDebug("session {Session}: vkCreateInstance takes the driver instance the guest's last one left", Id);
        return true;
    }

    /// <summary>Instead of destroying <paramref name="instance"/>: true when it was parked.</summary>
    bool TryPark(VkInstance instance)
    {
        if (!_instanceKeys.Remove(instance.Handle, out var key)) return false;
        DestroyParked();
        _parked = instance;
        _parkedKey = key;
        return true;
    }

    void DestroyParked()
    {
        if (_parked.IsNull) return;
        DestroyDriverInstance(_parked);
        _parked = default;
        _parkedKey = null;
    }

    static void DestroyDriverInstance(VkInstance instance)
    {
        var destroy = (delegate* unmanaged<VkInstance, void*, void>)HostVulkan.GetInstanceProcAddr(instance, "vkDestroyInstance");
        destroy(instance, null);
    }
}
