namespace GuestIcd.VirtioGpu;

/// <summary>vhost-user wire constants (QEMU docs/interop/vhost-user.rst).</summary>
public static class VhostUser
{
    public const uint GetFeatures = 1, SetFeatures = 2, SetOwner = 3, ResetOwner = 4, SetMemTable = 5, SetLogBase = 6, SetLogFd = 7,
        SetVringNum = 8, SetVringAddr = 9, SetVringBase = 10, GetVringBase = 11, SetVringKick = 12, SetVringCall = 13, SetVringErr = 14,
        GetProtocolFeatures = 15, SetProtocolFeatures = 16, GetQueueNum = 17, SetVringEnable = 18, SendRarp = 19, NetSetMtu = 20,
        SetBackendReqFd = 21, IotlbMsg = 22, SetVringEndian = 23, GetConfig = 24, SetConfig = 25, GpuSetSocket = 33, ResetDevice = 34,
        GetMaxMemSlots = 36, AddMemReg = 37, RemMemReg = 38, SetStatus = 39, GetStatus = 40;

    public const uint FlagVersion = 0x1, FlagReply = 0x4, FlagNeedReply = 0x8, VersionMask = 0x3;
    public const int HeaderSize = 12;
    public const int MaxPayload = 4096;
    public const int MaxFds = 8;
    public const int MaxMemoryRegions = 8;
    public const int MaxConfigSize = 256;

    /// <summary>Transport feature bits the backend offers besides the device's.</summary>
    public const int FeatureIndirectDesc = 28, FeatureEventIdx = 29, FeatureProtocolFeatures = 30, FeatureVersion1 = 32,
        FeatureAccessPlatform = 33, FeatureRingPacked = 34;

    public const int ProtocolMq = 0, ProtocolReplyAck = 3, ProtocolConfig = 9, ProtocolResetDevice = 13;

    /// <summary>The vring-fd messages' u64: bits 0–7 the queue, bit 8 "no file descriptor".</summary>
    public const ulong VringIndexMask = 0xff, VringNoFd = 0x100;

    public static string Name(uint request) => request switch
    {
        GetFeatures => "GET_FEATURES", SetFeatures => "SET_FEATURES", SetOwner => "SET_OWNER", ResetOwner => "RESET_OWNER",
        SetMemTable => "SET_MEM_TABLE", SetVringNum => "SET_VRING_NUM", SetVringAddr => "SET_VRING_ADDR", SetVringBase => "SET_VRING_BASE",
        GetVringBase => "GET_VRING_BASE", SetVringKick => "SET_VRING_KICK", SetVringCall => "SET_VRING_CALL", SetVringErr => "SET_VRING_ERR",
        GetProtocolFeatures => "GET_PROTOCOL_FEATURES", SetProtocolFeatures => "SET_PROTOCOL_FEATURES", GetQueueNum => "GET_QUEUE_NUM",
        SetVringEnable => "SET_VRING_ENABLE", GetConfig => "GET_CONFIG", SetConfig => "SET_CONFIG", GpuSetSocket => "GPU_SET_SOCKET",
        ResetDevice => "RESET_DEVICE", SetStatus => "SET_STATUS", GetStatus => "GET_STATUS",
        _ => $"request {request}",
    };
}

/// <summary>The frontend broke the vhost-user protocol; its connection ends.</summary>
public sealed class VhostUserProtocolException(string message) : Exception(message);
