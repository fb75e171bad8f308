using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Wire;
using GuestIcd.Vulkan;
using Microsoft.Extensions.Logging;

namespace GuestIcd.HostSim;

/// <summary>serve --validation: the Khronos validation layer runs inside hostsim on every guest's instance,
/// so the stream our ICD produced is checked against the spec on the host, per session. serve --strict
/// makes it blocking: the callback answers VK_TRUE to an error, so the layer skips the call, and the
/// session ends after that command with the VUID logged (the second wall behind the gate).</summary>
internal sealed unsafe partial class Session
{
    const string ValidationLayer = "VK_LAYER_KHRONOS_validation";
    const string DebugUtils = "VK_EXT_debug_utils";

    sealed class Sink(ILogger log, bool strict)
    {
        public readonly ILogger Log = log;
        public readonly bool Strict = strict;
        public int Errors, Warnings;
        /// <summary>The first error the layer blocked (its VUID and message), until the session acts on it.</summary>
        public volatile string? Blocked;
    }

    static readonly ConcurrentDictionary<int, Sink> s_validating = new();
    VkDebugUtilsMessengerEXT _messenger;

    /// <summary>Adds the layer, VK_EXT_debug_utils and a messenger for instance creation itself.</summary>
    void AddValidation(VkInstanceCreateInfo* ci)
    {
        s_validating[Id] = new Sink(log, options.Strict);
        ci->ppEnabledLayerNames = Append(ci->ppEnabledLayerNames, ci->enabledLayerCount, ValidationLayer);
        ci->enabledLayerCount++;
        ci->ppEnabledExtensionNames = Append(ci->ppEnabledExtensionNames, ci->enabledExtensionCount, DebugUtils);
        ci->enabledExtensionCount++;
        var info = MessengerInfo();
        info->pNext = ci->pNext;
        ci->pNext = info;
    }

    byte** Append(byte** names, uint count, string extra)
    {
        var list = (byte**)_arena.Alloc((nuint)(count + 1) * 8);
        for (uint i = 0; i < count; i++) list[i] = names[i];
        list[count] = Utf8(extra);
        return list;
    }

    VkDebugUtilsMessengerCreateInfoEXT* MessengerInfo()
    {
        var info = (VkDebugUtilsMessengerCreateInfoEXT*)_arena.Alloc((nuint)sizeof(VkDebugUtilsMessengerCreateInfoEXT));
        info->sType = VkStructureType.VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT;
        info->messageSeverity = VkDebugUtilsMessageSeverityFlagsEXT.VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT
                                | VkDebugUtilsMessageSeverityFlagsEXT.VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT;
        info->messageType = VkDebugUtilsMessageTypeFlagsEXT.VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT
                            | VkDebugUtilsMessageTypeFlagsEXT.VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT;
        info->pfnUserCallback = (nint)(delegate* unmanaged<VkDebugUtilsMessageSeverityFlagBitsEXT, VkDebugUtilsMessageTypeFlagsEXT, VkDebugUtilsMessengerCallbackDataEXT*, void*, uint>)&OnMessage;
        info->pUserData = (void*)(nint)Id;
        return info;
    }

    /// <summary>After vkCreateInstance: a messenger for everything that follows.</summary>
    void StartValidation()
    {
        var create = (delegate* unmanaged<VkInstance, VkDebugUtilsMessengerCreateInfoEXT*, void*, VkDebugUtilsMessengerEXT*, VkResult>)
            HostVulkan.GetInstanceProcAddr(_instance, "vkCreateDebugUtilsMessengerEXT");
        VkDebugUtilsMessengerEXT m;
        if (create != null && create(_instance, MessengerInfo(), null, &m) == VkResult.VK_SUCCESS) _messenger = m;
    }

    /// <summary>Before the instance goes away.</summary>
    void StopValidation(VkInstance instance)
    {
        if (_messenger.IsNull) return;
        var destroy = (delegate* unmanaged<VkInstance, VkDebugUtilsMessengerEXT, void*, void>)
            HostVulkan.GetInstanceProcAddr(instance, "vkDestroyDebugUtilsMessengerEXT");
        if (destroy != null) destroy(instance, _messenger, null);
        _messenger = default;
    }

    void ReportValidation()
    {
        if (s_validating.TryRemove(Id, out var v))
            log.LogInformation("session {Session} validation: {Errors} errors, {Warnings} warnings", Id, v.Errors, v.Warnings);
    }

    [UnmanagedCallersOnly]
    static uint OnMessage(VkDebugUtilsMessageSeverityFlagBitsEXT severity, VkDebugUtilsMessageTypeFlagsEXT types,
        VkDebugUtilsMessengerCallbackDataEXT* data, void* user)
    {
        try
        {
            int id = (int)(nint)user;
            if (!s_validating.TryGetValue(id, out var v)) return 0;
            bool error = (severity & VkDebugUtilsMessageSeverityFlagBitsEXT.VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) != 0;
            if (error) Interlocked.Increment(ref v.Errors); else Interlocked.Increment(ref v.Warnings);
            var text = data == null ? "" : Marshal.PtrToStringUTF8((nint)data->pMessage) ?? "";
            if (error) v.Log.LogWarning("session {Session} validation error: {Message}", id, text);
            else v.Log.LogInformation("session {Session} validation warning: {Message}", id, text);
            if (error && v.Strict)
            {
                var vuid = data == null ? null : Marshal.PtrToStringUTF8((nint)data->pMessageIdName);
                v.Blocked ??= $"{vuid ?? "validation error"}: {text}";
                return 1; // VK_TRUE: the layer skips the call
            }
        }
        catch { /* a callback must never throw into the driver */ }
        return 0; // VK_FALSE: the call goes on
    }

    /// <summary>--strict: a call the layer blocked ends the session after it, naming the VUID.</summary>
    void ThrowIfValidationBlocked(int cmd)
    {
        if (s_validating.TryGetValue(Id, out var v) && v.Blocked is { } reason)
        {
            v.Blocked = null;
            throw new ProtocolException($"{Tables.Commands[cmd].Name}: blocked by the validation layer ({reason})");
        }
    }
}
