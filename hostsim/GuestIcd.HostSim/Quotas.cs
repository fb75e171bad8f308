using System.Text.Json.Serialization;
using GuestIcd.Protocol.Wire;

namespace GuestIcd.HostSim;

/// <summary>What one guest session may make the host hold. Enforced by the host whatever the guest claims:
/// an allocation past <see cref="DeviceMemoryBytes"/> answers VK_ERROR_OUT_OF_DEVICE_MEMORY, a creation past
/// <see cref="Objects"/> VK_ERROR_OUT_OF_HOST_MEMORY, and a message or reply past its limit ends the session
/// with the reason logged. Set by `serve --config FILE` (JSON: {"quotas": {...}}, read by ServeConfig.cs) and the --quota-* options.</summary>
internal sealed record Quotas
{
    public static readonly Quotas Default = new();

    /// <summary>Device memory the session may hold at once: driver allocations plus the ranges of its shared
    /// heap it imports.</summary>
    public ulong DeviceMemoryBytes { get; init; } = 4UL << 30;

    /// <summary>Largest shared heap (unix transport) a guest may bring. The heap is the guest's own memory, mapped
    /// here until its session is released; what the driver may use of it is bounded by <see cref="DeviceMemoryBytes"/>.</summary>
    public ulong SharedHeapBytes { get; init; } = 16UL << 30;

    /// <summary>Objects the guest may own at once (every created or allocated handle).</summary>
    public int Objects { get; init; } = 100_000;

    /// <summary>Largest reply the host builds for one command: outputs are sized by guest-given counts, and this
    /// bounds what one small message can make the host allocate.</summary>
    public uint ReplyBytes { get; init; } = 16u << 20;

    /// <summary>Largest message the host accepts (at most the protocol's own limit).</summary>
    public uint MessageBytes { get; init; } = MessageHeader.MaxPayload;

    /// <summary>Decoding a message rebuilds its C structs, which can be larger than their wire form (a handle
    /// array of n ids, a struct of pointers): four times the message, plus the outputs, is ample.</summary>
    [JsonIgnore]
    public ulong DecodeBytes => 4UL * MessageBytes + ReplyBytes;

    public void Check()
    {
        if (DeviceMemoryBytes == 0) throw new ArgumentException("the device-memory quota must be above 0");
        if (SharedHeapBytes % 4096 != 0) throw new ArgumentException("the shared-heap quota must be a multiple of 4096 bytes");
        if (Objects <= 0) throw new ArgumentException("the object quota must be above 0");
        if (ReplyBytes < 4096) throw new ArgumentException("the reply quota must be at least 4096 bytes");
        if (MessageBytes < 4096 || MessageBytes > MessageHeader.MaxPayload)
            throw new ArgumentException($"the message quota must be between 4096 and {MessageHeader.MaxPayload} bytes");
    }

    public override string ToString() =>
        $"device memory {DeviceMemoryBytes >> 20} MiB, shared heap {SharedHeapBytes >> 20} MiB, {Objects} objects, replies {ReplyBytes >> 10} KiB, messages {MessageBytes >> 10} KiB";
}
