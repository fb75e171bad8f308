using System.Runtime.InteropServices;

namespace GuestIcd.VirtioGpu;

/// <summary>The libc calls a vhost-user backend needs (Linux x86-64 glibc layouts).</summary>
public static unsafe partial class Native
{
    private const string Lib = "libc";

    public const int EINTR = 4, EAGAIN = 11, EBADF = 9;
    public const int AF_UNIX = 1, SOCK_STREAM = 1, SOCK_NONBLOCK = 0x800, SOCK_CLOEXEC = 0x80000;
    public const int SOL_SOCKET = 1, SCM_RIGHTS = 1;
    public const int MSG_CTRUNC = 0x8, MSG_DONTWAIT = 0x40, MSG_NOSIGNAL = 0x4000, MSG_CMSG_CLOEXEC = 0x40000000, MSG_WAITALL = 0x100;
    public const short POLLIN = 0x1, POLLERR = 0x8, POLLHUP = 0x10, POLLNVAL = 0x20;
    public const int PROT_NONE = 0, PROT_READ = 1, PROT_WRITE = 2;
    public const int MAP_SHARED = 1, MAP_PRIVATE = 2, MAP_FIXED = 0x10, MAP_ANONYMOUS = 0x20, MAP_NORESERVE = 0x4000;
    public static readonly void* MAP_FAILED = (void*)-1;
    public const int EFD_NONBLOCK = 0x800, EFD_CLOEXEC = 0x80000;
    public const uint MFD_CLOEXEC = 1;
    public const int SunPathLength = 108;
    public const int CmsgDataOffset = 16;

    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd { public int fd; public short events; public short revents; }

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec { public void* iov_base; public nuint iov_len; }

    [StructLayout(LayoutKind.Sequential)]
    public struct MsgHdr
    {
        public void* msg_name;
        public uint msg_namelen;
        public IoVec* msg_iov;
        public nuint msg_iovlen;
        public void* msg_control;
        public nuint msg_controllen;
        public int msg_flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct CmsgHdr { public nuint cmsg_len; public int cmsg_level; public int cmsg_type; }

    [StructLayout(LayoutKind.Sequential)]
    public struct SockAddrUn { public ushort sun_family; public fixed byte sun_path[SunPathLength]; }

    public static int CmsgSpace(int payload) => CmsgDataOffset + ((payload + 7) & ~7);

    [LibraryImport(Lib, EntryPoint = "socket", SetLastError = true)] public static partial int socket(int domain, int type, int protocol);
    [LibraryImport(Lib, EntryPoint = "bind", SetLastError = true)] public static partial int bind(int fd, SockAddrUn* addr, uint len);
    [LibraryImport(Lib, EntryPoint = "listen", SetLastError = true)] public static partial int listen(int fd, int backlog);
    [LibraryImport(Lib, EntryPoint = "connect", SetLastError = true)] public static partial int connect(int fd, SockAddrUn* addr, uint len);
    [LibraryImport(Lib, EntryPoint = "accept4", SetLastError = true)] public static partial int accept4(int fd, void* addr, void* len, int flags);
    [LibraryImport(Lib, EntryPoint = "recvmsg", SetLastError = true)] public static partial nint recvmsg(int fd, MsgHdr* msg, int flags);
    [LibraryImport(Lib, EntryPoint = "sendmsg", SetLastError = true)] public static partial nint sendmsg(int fd, MsgHdr* msg, int flags);
    [LibraryImport(Lib, EntryPoint = "recv", SetLastError = true)] public static partial nint recv(int fd, void* buf, nuint len, int flags);
    [LibraryImport(Lib, EntryPoint = "send", SetLastError = true)] public static partial nint send(int fd, void* buf, nuint len, int flags);
    [LibraryImport(Lib, EntryPoint = "shutdown", SetLastError = true)] public static partial int shutdown(int fd, int how);
    [LibraryImport(Lib, EntryPoint = "poll", SetLastError = true)] public static partial int poll(PollFd* fds, nuint n, int timeoutMs);
    [LibraryImport(Lib, EntryPoint = "close", SetLastError = true)] public static partial int close(int fd);
    [LibraryImport(Lib, EntryPoint = "read", SetLastError = true)] public static partial nint read(int fd, void* buf, nuint n);
    [LibraryImport(Lib, EntryPoint = "write", SetLastError = true)] public static partial nint write(int fd, void* buf, nuint n);
    [LibraryImport(Lib, EntryPoint = "eventfd", SetLastError = true)] public static partial int eventfd(uint initval, int flags);
    [LibraryImport(Lib, EntryPoint = "mmap", SetLastError = true)] public static partial void* mmap(void* addr, nuint len, int prot, int flags, int fd, long offset);
    [LibraryImport(Lib, EntryPoint = "munmap", SetLastError = true)] public static partial int munmap(void* addr, nuint len);
    [LibraryImport(Lib, EntryPoint = "memfd_create", SetLastError = true)] public static partial int memfd_create(byte* name, uint flags);
    [LibraryImport(Lib, EntryPoint = "ftruncate", SetLastError = true)] public static partial int ftruncate(int fd, long len);
    [LibraryImport(Lib, EntryPoint = "lseek", SetLastError = true)] public static partial long lseek(int fd, long offset, int whence);

    public static int Errno => Marshal.GetLastPInvokeError();

    public static string Describe(int errno) => $"errno {errno}: {Marshal.GetPInvokeErrorMessage(errno)}";

    public static bool TryMakeAddress(string path, out SockAddrUn address, out uint length)
    {
        address = default;
        length = 0;
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(path);
        if (bytes.Length == 0 || bytes.Length >= SunPathLength)
            return false;
        address.sun_family = AF_UNIX;
        fixed (byte* p = address.sun_path)
            bytes.CopyTo(new Span<byte>(p, SunPathLength));
        length = (uint)(2 + bytes.Length + 1);
        return true;
    }

    /// <summary>Signals an eventfd (a virtqueue's call, or a wake-up).</summary>
    public static void Signal(int eventFd)
    {
        if (eventFd < 0)
            return;
        ulong one = 1;
        write(eventFd, &one, sizeof(ulong));
    }

    /// <summary>Drains an eventfd; false when nothing was pending.</summary>
    public static bool Drain(int eventFd)
    {
        ulong value;
        return read(eventFd, &value, sizeof(ulong)) == sizeof(ulong);
    }

    /// <summary>Creates a memfd of <paramref name="size"/> bytes (tests and the guest-memory stand-in).</summary>
    public static int CreateMemfd(string name, long size)
    {
        byte[] n = System.Text.Encoding.UTF8.GetBytes(name + "\0");
        int fd;
        fixed (byte* p = n)
            fd = memfd_create(p, MFD_CLOEXEC);
        if (fd < 0)
            throw new IOException($"memfd_create failed ({Describe(Errno)})");
        if (ftruncate(fd, size) != 0)
        {
            int e = Errno;
            close(fd);
            throw new IOException($"ftruncate of a memfd to {size} bytes failed ({Describe(e)})");
        }
        return fd;
    }
}
