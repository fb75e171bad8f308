using System.Runtime.InteropServices;

namespace GuestIcd.HostSim;

/// <summary>The libc calls the control socket needs (Linux x86-64 glibc).</summary>
internal static unsafe partial class OpsNative
{
    [LibraryImport("libc")] public static partial uint geteuid();
    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)] private static partial int stat(string path, byte* buf);

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)] private static partial int access(string path, int mode);

    /// <summary>This process may create files in <paramref name="dir"/> (access W_OK|X_OK).</summary>
    public static bool Writable(string dir) => access(dir, 2 | 1) == 0;

    /// <summary>st_uid of <paramref name="path"/> (x86-64: after st_dev, st_ino, st_nlink and st_mode); null when it is gone.</summary>
    public static uint? Owner(string path)
    {
        byte* buf = stackalloc byte[256];
        return stat(path, buf) == 0 ? *(uint*)(buf + 28) : null;
    }

    /// <summary>st_dev and st_ino of <paramref name="path"/> ((0, 0) when it is gone): x86-64's struct stat
    /// starts with the two 8-byte fields.</summary>
    public static (ulong Dev, ulong Ino) DevIno(string path)
    {
        byte* buf = stackalloc byte[256];
        if (stat(path, buf) != 0) return (0, 0);
        return (*(ulong*)buf, *(ulong*)(buf + 8));
    }
}
