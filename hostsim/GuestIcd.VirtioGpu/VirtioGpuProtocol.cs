namespace GuestIcd.VirtioGpu;

/// <summary>virtio-gpu wire constants (virtio 1.2 §5.7, linux/virtio_gpu.h); little-endian throughout.</summary>
public static class Gpu
{
    // feature bits
    public const int FeatureVirgl = 0, FeatureEdid = 1, FeatureResourceUuid = 2, FeatureResourceBlob = 3, FeatureContextInit = 4;

    // control queue: 2D
    public const uint CmdGetDisplayInfo = 0x0100, CmdResourceCreate2D = 0x0101, CmdResourceUnref = 0x0102, CmdSetScanout = 0x0103,
        CmdResourceFlush = 0x0104, CmdTransferToHost2D = 0x0105, CmdResourceAttachBacking = 0x0106, CmdResourceDetachBacking = 0x0107,
        CmdGetCapsetInfo = 0x0108, CmdGetCapset = 0x0109, CmdGetEdid = 0x010a, CmdResourceAssignUuid = 0x010b,
        CmdResourceCreateBlob = 0x010c, CmdSetScanoutBlob = 0x010d;

    // control queue: 3D
    public const uint CmdCtxCreate = 0x0200, CmdCtxDestroy = 0x0201, CmdCtxAttachResource = 0x0202, CmdCtxDetachResource = 0x0203,
        CmdResourceCreate3D = 0x0204, CmdTransferToHost3D = 0x0205, CmdTransferFromHost3D = 0x0206, CmdSubmit3D = 0x0207,
        CmdResourceMapBlob = 0x0208, CmdResourceUnmapBlob = 0x0209;

    // cursor queue
    public const uint CmdUpdateCursor = 0x0300, CmdMoveCursor = 0x0301;

    // responses
    public const uint RespOkNodata = 0x1100, RespOkDisplayInfo = 0x1101, RespOkCapsetInfo = 0x1102, RespOkCapset = 0x1103,
        RespOkEdid = 0x1104, RespOkResourceUuid = 0x1105, RespOkMapInfo = 0x1106;
    public const uint RespErrUnspec = 0x1200, RespErrOutOfMemory = 0x1201, RespErrInvalidScanoutId = 0x1202,
        RespErrInvalidResourceId = 0x1203, RespErrInvalidContextId = 0x1204, RespErrInvalidParameter = 0x1205;

    public const uint FlagFence = 1, FlagInfoRingIdx = 2;

    // struct virtio_gpu_resource_create_blob
    public const uint BlobMemGuest = 1, BlobMemHost3D = 2, BlobMemHost3DGuest = 3;
    public const uint BlobFlagUseMappable = 1, BlobFlagUseShareable = 2, BlobFlagUseCrossDevice = 4;

    /// <summary>struct virtio_gpu_ctrl_hdr: type, flags, fence_id, ctx_id, ring_idx, padding[3].</summary>
    public const int HeaderSize = 24;
    public const int MaxScanouts = 16;
    public const int DisplayInfoSize = HeaderSize + MaxScanouts * 24;

    /// <summary>struct virtio_gpu_config: events_read, events_clear, num_scanouts, num_capsets.</summary>
    public const int ConfigSize = 16;
    public const uint EventDisplay = 1;

    /// <summary>VIRTIO_GPU_CONTEXT_INIT_CAPSET_ID_MASK.</summary>
    public const uint ContextInitCapsetMask = 0xff;

    public static string CommandName(uint type) => type switch
    {
        CmdGetDisplayInfo => "GET_DISPLAY_INFO", CmdResourceCreate2D => "RESOURCE_CREATE_2D", CmdResourceUnref => "RESOURCE_UNREF",
        CmdSetScanout => "SET_SCANOUT", CmdResourceFlush => "RESOURCE_FLUSH", CmdTransferToHost2D => "TRANSFER_TO_HOST_2D",
        CmdResourceAttachBacking => "RESOURCE_ATTACH_BACKING", CmdResourceDetachBacking => "RESOURCE_DETACH_BACKING",
        CmdGetCapsetInfo => "GET_CAPSET_INFO", CmdGetCapset => "GET_CAPSET", CmdGetEdid => "GET_EDID",
        CmdResourceAssignUuid => "RESOURCE_ASSIGN_UUID", CmdResourceCreateBlob => "RESOURCE_CREATE_BLOB", CmdSetScanoutBlob => "SET_SCANOUT_BLOB",
        CmdCtxCreate => "CTX_CREATE", CmdCtxDestroy => "CTX_DESTROY", CmdCtxAttachResource => "CTX_ATTACH_RESOURCE",
        CmdCtxDetachResource => "CTX_DETACH_RESOURCE", CmdResourceCreate3D => "RESOURCE_CREATE_3D", CmdTransferToHost3D => "TRANSFER_TO_HOST_3D",
        CmdTransferFromHost3D => "TRANSFER_FROM_HOST_3D", CmdSubmit3D => "SUBMIT_3D", CmdResourceMapBlob => "RESOURCE_MAP_BLOB",
        CmdResourceUnmapBlob => "RESOURCE_UNMAP_BLOB", CmdUpdateCursor => "UPDATE_CURSOR", CmdMoveCursor => "MOVE_CURSOR",
        _ => $"0x{type:x4}",
    };
}
