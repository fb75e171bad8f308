using GuestIcd.Protocol;
using GuestIcd.Vulkan;

namespace GuestIcd.HostSim.Gate;

/// <summary>Structures of extensions the guest did not enable (issue 7 point 2): a driver reads a pNext struct it
/// knows whether or not the application enabled what brings it in, and such state (an import, a priority, an
/// external handle type) is exactly what the driver's other checks assume was set up at vkCreateDevice. The
/// decoder notes every chained type of a message (Arena.Chained); a device's command is refused when one of
/// them belongs to no core version the device serves and no extension enabled on the device or instance.</summary>
internal sealed unsafe partial class ValidUsageGate
{
    readonly HashSet<string> _instanceExtensions = new(StringComparer.Ordinal);

    void RecordInstanceExtensions(VkInstanceCreateInfo* ci)
    {
        _instanceExtensions.Clear();
        for (uint i = 0; i < ci->enabledExtensionCount; i++)
            if (System.Runtime.InteropServices.Marshal.PtrToStringUTF8((nint)ci->ppEnabledExtensionNames[i]) is { } name)
                _instanceExtensions.Add(name);
    }

    void CheckChainedTypes(int cmd, DeviceState dev)
    {
        foreach (int ti in _arena.Chained)
        {
            if (dev.TypeAvailable(ti, _instanceExtensions)) continue;
            ref readonly var t = ref Tables.Types[ti];
            Fail(cmd, "Valid Usage for Extensions: their structures need them enabled",
                $"a {t.Name} in a pNext chain, which needs one of {t.Features.Replace(",", ", ")}, and this device serves Vulkan {dev.ApiVersion >> 22}.{(dev.ApiVersion >> 12) & 0x3FF} without the extension");
        }
    }
}

internal sealed unsafe partial class DeviceState
{
    /// <summary>Extensions enabled with vkCreateDevice.</summary>
    public readonly HashSet<string> Extensions = new(StringComparer.Ordinal);
    /// <summary>Per struct type: 1 may be chained, -1 may not, 0 not yet asked (the answer never changes).</summary>
    sbyte[]? _typeAvailable;

    public bool TypeAvailable(int ti, HashSet<string> instanceExtensions)
    {
        _typeAvailable ??= new sbyte[Tables.Types.Length];
        var known = _typeAvailable[ti];
        if (known != 0) return known > 0;
        bool ok = Brings(Tables.Types[ti].Features, instanceExtensions);
        _typeAvailable[ti] = ok ? (sbyte)1 : (sbyte)-1;
        return ok;
    }

    bool Brings(string features, HashSet<string> instanceExtensions)
    {
        if (features.Length == 0) return true; // no feature names it: nothing to hold it to
        foreach (var f in features.Split(','))
        {
            if (f.StartsWith("VK_VERSION_", StringComparison.Ordinal))
            {
                var v = f["VK_VERSION_".Length..].Split('_');
                if (v.Length == 2 && uint.TryParse(v[0], out var major) && uint.TryParse(v[1], out var minor)
                    && (major << 22 | minor << 12) <= ApiVersion) return true;
            }
            else if (Extensions.Contains(f) || instanceExtensions.Contains(f)) return true;
        }
        return false;
    }
}
