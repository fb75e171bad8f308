using System.Buffers.Binary;

namespace GuestIcd.VirtioGpu;

/// <summary>
/// Blob resources (VIRTIO_GPU_F_RESOURCE_BLOB). Only VIRTIO_GPU_BLOB_MEM_GUEST: the guest's pages, listed in
/// the command as ATTACH_BACKING lists them, which the host maps directly like any backed resource. Host
/// memory blobs (HOST3D, HOST3D_GUEST) and MAP_BLOB need a host-visible shared-memory region that a
/// vhost-user backend cannot give the guest (SHMEM_MAP is not in the protocol QEMU speaks), so they are
/// refused; a guest that wants mappable memory gets it from guest blobs, which its kernel maps itself.
/// </summary>
public sealed partial class VirtioGpuDevice
{
    /// <summary>struct virtio_gpu_resource_create_blob after its header: resource_id, blob_mem, blob_flags,
    /// nr_entries, u64 blob_id, u64 size; nr_entries mem entries follow.</summary>
    private const int BlobRequestBytes = 32;

    private uint CreateBlob(ReadOnlySpan<byte> b, ref string? why)
    {
        uint id = U32(b, 0), mem = U32(b, 4), flags = U32(b, 8), count = U32(b, 12);
        ulong blobId = BinaryPrimitives.ReadUInt64LittleEndian(b[16..]), size = BinaryPrimitives.ReadUInt64LittleEndian(b[24..]);
        if (!NewResourceId(id, ref why))
            return _resources.Count >= _options.MaxResources ? Gpu.RespErrOutOfMemory : Gpu.RespErrInvalidResourceId;
        if (mem != Gpu.BlobMemGuest)
        {
            why = mem is Gpu.BlobMemHost3D or Gpu.BlobMemHost3DGuest
                ? $"blob_mem {mem} (host memory): this device has no host-visible shared-memory region, only guest-memory blobs"
                : $"unknown blob_mem {mem}";
            return Gpu.RespErrInvalidParameter;
        }
        if ((flags & ~(Gpu.BlobFlagUseMappable | Gpu.BlobFlagUseShareable)) != 0)
        {
            // CROSS_DEVICE needs RESOURCE_UUID, which is not offered.
            why = $"blob_flags 0x{flags:x} (only USE_MAPPABLE and USE_SHAREABLE are offered)";
            return Gpu.RespErrInvalidParameter;
        }
        if (blobId != 0)
        {
            // blob_id names a context's host object: a guest-memory blob has none.
            why = $"blob_id {blobId} on a guest-memory blob";
            return Gpu.RespErrInvalidParameter;
        }
        var entries = ReadEntries(b[BlobRequestBytes..], count, out ulong total, ref why);
        if (entries is null)
            return Gpu.RespErrInvalidParameter;
        // The kernel lists whole pages of a size it did not round: the entries cover size, to within a page.
        if (size == 0 || size > total || total - size >= 4096)
        {
            why = $"a {size}-byte blob whose entries hold {total} bytes";
            return Gpu.RespErrInvalidParameter;
        }
        _resources[id] = new Resource
        {
            Id = id, Is3D = true, BlobMem = mem, BlobFlags = flags, Width = (uint)Math.Min(size, uint.MaxValue), Height = 1, Depth = 1,
            Backing = entries, BackingBytes = size,
        };
        return Gpu.RespOkNodata;
    }

    /// <summary>MAP_BLOB and UNMAP_BLOB place host memory in the device's shared-memory region; there is none.</summary>
    private uint MapBlob(uint type, uint id, ref string? why)
    {
        if (!_resources.ContainsKey(id))
        {
            why = $"no resource {id}";
            return Gpu.RespErrInvalidResourceId;
        }
        why = $"{Gpu.CommandName(type)}: the device has no host-visible shared-memory region (guest-memory blobs are mapped by the guest's kernel)";
        return Gpu.RespErrInvalidParameter;
    }
}
