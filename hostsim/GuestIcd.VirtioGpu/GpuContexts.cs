namespace GuestIcd.VirtioGpu;

/// <summary>What a guest asked for at CTX_CREATE.</summary>
/// <param name="CapsetId">The capset the context speaks (ours; 0 on a driver without CONTEXT_INIT).</param>
public readonly record struct GpuContextInfo(uint ContextId, uint CapsetId, string DebugName);

/// <summary>Where contexts of our capset go: hostsim turns each into one guest session.</summary>
public interface IGpuContextHost
{
    /// <summary>Called at CTX_CREATE. Returns the context, or null with the reason to refuse it.</summary>
    IGpuContext? Open(GpuContextInfo info, GpuContextResources resources, out string? refusal);
}

/// <summary>One guest context: the command bytes of its SUBMIT_3Ds arrive here, in order.</summary>
public interface IGpuContext : IDisposable
{
    /// <summary>Handles one SUBMIT_3D. Returns null when accepted, else why the context must end (it is
    /// then destroyed; other contexts go on).</summary>
    string? Submit(ReadOnlySpan<byte> commands);
}

/// <summary>A context's view of the device's resources: only those attached to it, so one context can
/// never reach another's memory.</summary>
public sealed class GpuContextResources
{
    private readonly VirtioGpuDevice _device;

    internal GpuContextResources(VirtioGpuDevice device, uint contextId)
    {
        _device = device;
        ContextId = contextId;
    }

    public uint ContextId { get; }

    /// <summary>True when <paramref name="resourceId"/> exists and is attached to this context.</summary>
    public bool IsAttached(uint resourceId) => _device.IsAttached(ContextId, resourceId);

    /// <summary>Maps an attached resource's guest backing contiguously (zero copy); null with the reason
    /// when it is not attached to this context, has no backing, or its pages cannot be mapped.</summary>
    public ContiguousMapping? MapBacking(uint resourceId, out string? error) => _device.MapBacking(ContextId, resourceId, out error);
}
