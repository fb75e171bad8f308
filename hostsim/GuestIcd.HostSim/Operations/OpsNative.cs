using System.Runtime.InteropServices;

namespace GuestIcd.HostSim;

/// <summary>The libc calls the control socket needs (Linux x86-64 glibc).</summary>
internal static unsafe partial class OpsNative
{
    [LibraryImport("libc")] public static partial uint geteuid();
    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)] private static partial int stat(string path, byte* buf);

    /// <summary>st_dev and st_ino of <paramref name="path"/> ((0, 0) when it is gone): x86-64's struct stat
    /// starts with the two 8-byte fields.</summary>
    public static (ulong Dev, ulong Ino) DevIno(string path)
    {
        byte* buf = stackalloc byte[256];
        if (stat(path, buf) != 0) return (0, 0);
        return (*(ulong*)buf, *(ulong*)(buf + 8));
    }
}
