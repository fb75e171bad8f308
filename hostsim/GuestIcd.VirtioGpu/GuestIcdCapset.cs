using System.Buffers.Binary;
using System.Text;

namespace GuestIcd.VirtioGpu;

/// <summary>
/// The capability set through which a guest finds GuestIcd on a virtio-gpu device (GET_CAPS), before any
/// context exists: the host's protocol version (the guest's version check runs on it) and identity.
/// </summary>
/// <remarks>Layout of version 1, little-endian, 64 bytes: u32 magic "GICD"; u16 capset version; u16 size;
/// u16 protocol major; u16 protocol minor; u32 flags; 48 bytes UTF-8 identity, NUL-padded.</remarks>
public static class GuestIcdCapset
{
    /// <summary>Our capset id. The guest kernel turns the id into a bit of an int mask, so it stays ≤ 30; ids
    /// 1–6 (virgl, virgl2, gfxstream, venus, cross-domain, drm) are taken.</summary>
    public const uint Id = 24;
    public const uint Version = 1;
    public const int Size = 64;
    public const uint Magic = 0x44434947; // "GICD"
    public const int IdentityBytes = 48;

    /// <summary>Flag: the host maps a context's resources' guest pages directly (zero copy).</summary>
    public const uint FlagZeroCopyGuestPages = 1;

    public static byte[] Encode(ushort protocolMajor, ushort protocolMinor, string identity, uint flags = FlagZeroCopyGuestPages)
    {
        var b = new byte[Size];
        BinaryPrimitives.WriteUInt32LittleEndian(b, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(4), (ushort)Version);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(6), Size);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(8), protocolMajor);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(10), protocolMinor);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(12), flags);
        byte[] id = Encoding.UTF8.GetBytes(identity);
        id.AsSpan(0, Math.Min(id.Length, IdentityBytes - 1)).CopyTo(b.AsSpan(16));
        return b;
    }

    /// <summary>Parses a capset; false when it is not ours or too short.</summary>
    public static bool TryDecode(ReadOnlySpan<byte> b, out ushort protocolMajor, out ushort protocolMinor, out uint flags, out string identity)
    {
        protocolMajor = protocolMinor = 0;
        flags = 0;
        identity = "";
        if (b.Length < Size || BinaryPrimitives.ReadUInt32LittleEndian(b) != Magic)
            return false;
        protocolMajor = BinaryPrimitives.ReadUInt16LittleEndian(b[8..]);
        protocolMinor = BinaryPrimitives.ReadUInt16LittleEndian(b[10..]);
        flags = BinaryPrimitives.ReadUInt32LittleEndian(b[12..]);
        var id = b.Slice(16, IdentityBytes);
        int nul = id.IndexOf((byte)0);
        identity = Encoding.UTF8.GetString(nul < 0 ? id : id[..nul]);
        return true;
    }
}
