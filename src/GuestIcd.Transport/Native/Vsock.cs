using System.Runtime.InteropServices;

namespace GuestIcd.Transport.Native;

/// <summary>
/// AF_VSOCK pieces .NET's Socket class lacks: it refuses to create a socket of an address family it does
/// not know and cannot bind, connect or accept one, so those four steps go through libc here and the
/// connected descriptor is then wrapped in a <see cref="System.Net.Sockets.Socket"/> for the stream code
/// that TCP shares. Linux layouts (linux/vm_sockets.h).
/// </summary>
internal static unsafe partial class Vsock
{
    private const string Lib = "libc";

    public const int AF_VSOCK = 40;
    public const uint VMADDR_CID_ANY = 0xFFFFFFFF;
    public const uint VMADDR_CID_HYPERVISOR = 0;
    public const uint VMADDR_CID_LOCAL = 1;
    public const uint VMADDR_CID_HOST = 2;
    public const uint VMADDR_PORT_ANY = 0xFFFFFFFF;

    public const int EPERM = 1;
    public const int ENODEV = 19;
    public const int EAFNOSUPPORT = 97;
    public const int EADDRINUSE = 98;
    public const int EADDRNOTAVAIL = 99;
    public const int ENETUNREACH = 101;
    public const int ECONNABORTED = 103;
    public const int ETIMEDOUT = 110;
    public const int EHOSTUNREACH = 113;

    /// <summary><c>struct sockaddr_vm</c>: 16 bytes, like <c>struct sockaddr</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct SockAddrVm
    {
        public ushort svm_family;
        public ushort svm_reserved1;
        public uint svm_port;
        public uint svm_cid;
        public byte svm_flags;
        public fixed byte svm_zero[3];
    }

    public static SockAddrVm Address(uint cid, uint port) =>
        new() { svm_family = AF_VSOCK, svm_cid = cid, svm_port = port };

    [LibraryImport(Lib, EntryPoint = "bind", SetLastError = true)]
    public static partial int bind(int fd, SockAddrVm* addr, uint addrlen);

    [LibraryImport(Lib, EntryPoint = "connect", SetLastError = true)]
    public static partial int connect(int fd, SockAddrVm* addr, uint addrlen);

    [LibraryImport(Lib, EntryPoint = "getsockname", SetLastError = true)]
    public static partial int getsockname(int fd, SockAddrVm* addr, uint* addrlen);

    [LibraryImport(Lib, EntryPoint = "accept4", SetLastError = true)]
    public static partial int accept4(int fd, SockAddrVm* addr, uint* addrlen, int flags);

    /// <summary>A new AF_VSOCK stream socket (close-on-exec); throws <see cref="IOException"/> naming why
    /// the kernel said no.</summary>
    public static int CreateSocket(bool nonBlocking, string what)
    {
        int fd = Libc.socket(AF_VSOCK, Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC | (nonBlocking ? Libc.SOCK_NONBLOCK : 0), 0);
        if (fd >= 0)
            return fd;
        int errno = Libc.Errno;
        string why = errno switch
        {
            EAFNOSUPPORT => "this kernel has no AF_VSOCK support (is the vsock module loaded?)",
            EPERM or Libc.EACCES => "creating an AF_VSOCK socket is not permitted here",
            _ => "socket(AF_VSOCK) failed",
        };
        throw new IOException($"{what}: {why} ({Libc.Describe(errno)})");
    }

    public static string CidName(uint cid) => cid switch
    {
        VMADDR_CID_ANY => "any",
        VMADDR_CID_HYPERVISOR => "0 (hypervisor)",
        VMADDR_CID_LOCAL => "1 (local)",
        VMADDR_CID_HOST => "2 (host)",
        _ => cid.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };
}
