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

/// <summary>What became of one SUBMIT_3D.</summary>
public enum SubmitOutcome
{
    /// <summary>Done: answered (and its fence signalled) at once.</summary>
    Done,

    /// <summary>Answered later, when the context's <see cref="IGpuContext.WakeFd"/> fires (a guest waiting for
    /// the host); a context has at most one such submission held, an older one is answered when a newer comes.</summary>
    Hold,

    /// <summary>The context broke its protocol: it is destroyed (other contexts go on).</summary>
    Failed,
}

/// <summary>One guest context: the command bytes of its SUBMIT_3Ds arrive here, in order.</summary>
public interface IGpuContext : IDisposable
{
    SubmitOutcome Submit(ReadOnlySpan<byte> commands, out string? failure);

    /// <summary>A descriptor the device polls for this context (-1: none); readable means <see cref="OnWake"/>.</summary>
    int WakeFd { get; }

    /// <summary>The wake descriptor fired. Returns true when a held submission should be answered now;
    /// <paramref name="holding"/> says whether one is held (if not, the context remembers the wake-up).</summary>
    bool OnWake(bool holding);

    /// <summary>A resource attached to this context lost its guest pages (unref or detach).</summary>
    void OnResourceReleased(uint resourceId);
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
    public ContiguousMapping? MapBacking(uint resourceId, out string? error) => _device.MapBacking(ContextId, resourceId, 0, ulong.MaxValue, out error);

    /// <summary>Maps bytes [<paramref name="offset"/>, +<paramref name="length"/>) of an attached resource's
    /// backing (page-aligned), as <see cref="MapBacking(uint, out string?)"/>.</summary>
    public ContiguousMapping? MapBacking(uint resourceId, ulong offset, ulong length, out string? error) =>
        _device.MapBacking(ContextId, resourceId, offset, length, out error);

    /// <summary>Where bytes [<paramref name="offset"/>, +<paramref name="length"/>) of an attached resource's
    /// backing lie in guest RAM's files (fds owned by the device), for another process to map them the same way.</summary>
    public FileRun[]? BackingFileRuns(uint resourceId, ulong offset, ulong length, out string? error) =>
        _device.BackingFileRuns(ContextId, resourceId, offset, length, out error);
}
