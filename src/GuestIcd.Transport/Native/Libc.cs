using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

// The transport runs inside a NativeAOT shared library: every import below is source-generated and
// takes only blittable arguments, so nothing needs the runtime marshaller.
[assembly: DisableRuntimeMarshalling]

namespace GuestIcd.Transport.Native;

/// <summary>
/// The libc calls the unix-socket + shared-memory transport needs. Linux x86-64 glibc layouts only
/// (msghdr, cmsghdr, sockaddr_un, pollfd); other targets get their own backend file.
/// </summary>
internal static unsafe partial class Libc
{
    private const string Lib = "libc";

    // errno
    public const int EINTR = 4;
    public const int EAGAIN = 11;
    public const int EACCES = 13;
    public const int EINVAL = 22;
    public const int EPIPE = 32;
    public const int ENOENT = 2;
    public const int ENOTDIR = 20;
    public const int ECONNRESET = 104;
    public const int ENOTCONN = 107;
    public const int ECONNREFUSED = 111;
    public const int EINPROGRESS = 115;
    public const int EBUSY = 16;

    // fcntl
    public const int F_GETFD = 1;
    public const int FD_CLOEXEC = 1;
    public const int F_DUPFD_CLOEXEC = 1030;

    // open
    public const int O_RDWR = 0x2;
    public const int O_NONBLOCK = 0x800;
    public const int O_CLOEXEC = 0x80000;

    // sockets
    public const int AF_UNIX = 1;
    public const int SOCK_STREAM = 1;
    public const int SOCK_NONBLOCK = 0x800;
    public const int SOCK_CLOEXEC = 0x80000;
    public const int SOL_SOCKET = 1;
    public const int SO_ERROR = 4;
    public const int SO_PEERCRED = 17;
    public const int SCM_RIGHTS = 1;
    public const int MSG_CTRUNC = 0x8;
    public const int MSG_DONTWAIT = 0x40;
    public const int MSG_NOSIGNAL = 0x4000;
    public const int MSG_CMSG_CLOEXEC = 0x40000000;
    public const int SHUT_RDWR = 2;
    public const int SunPathLength = 108;

    // poll
    public const short POLLIN = 0x1;
    public const short POLLOUT = 0x4;
    public const short POLLERR = 0x8;
    public const short POLLHUP = 0x10;
    public const short POLLNVAL = 0x20;
    public const short POLLRDHUP = 0x2000;

    // memfd, seals, mmap
    public const uint MFD_CLOEXEC = 0x1;
    public const uint MFD_ALLOW_SEALING = 0x2;
    public const int F_ADD_SEALS = 1033;
    public const int F_GET_SEALS = 1034;
    public const int F_SEAL_SEAL = 0x1;
    public const int F_SEAL_SHRINK = 0x2;
    public const int F_SEAL_GROW = 0x4;
    public const int PROT_NONE = 0x0;
    public const int PROT_READ = 0x1;
    public const int PROT_WRITE = 0x2;
    public const int MAP_SHARED = 0x1;
    public const int MAP_PRIVATE = 0x2;
    public const int MAP_FIXED = 0x10;
    public const int MAP_ANONYMOUS = 0x20;
    public const int MAP_NORESERVE = 0x4000;
    public static readonly void* MAP_FAILED = (void*)-1;
    public const int MADV_DONTNEED = 4;
    public const int MADV_REMOVE = 9;
    public const int SEEK_END = 2;

    // eventfd
    public const int EFD_NONBLOCK = 0x800;
    public const int EFD_CLOEXEC = 0x80000;

    // stat (x86-64: st_mode is a u32 at offset 24 of a 144-byte struct)
    public const int StatSize = 144;
    public const int StatModeOffset = 24;
    public const uint S_IFMT = 0xF000;
    public const uint S_IFSOCK = 0xC000;

    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd
    {
        public int fd;
        public short events;
        public short revents;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public void* iov_base;
        public nuint iov_len;
    }

    /// <summary>x86-64 glibc <c>struct msghdr</c> (56 bytes; 4 bytes of padding after msg_namelen).</summary>
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

    /// <summary><c>struct cmsghdr</c>; the payload starts at <see cref="CmsgDataOffset"/>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct CmsgHdr
    {
        public nuint cmsg_len;
        public int cmsg_level;
        public int cmsg_type;
    }

    public const int CmsgDataOffset = 16;
    public static int CmsgLen(int payload) => CmsgDataOffset + payload;
    public static int CmsgSpace(int payload) => CmsgDataOffset + ((payload + 7) & ~7);

    [StructLayout(LayoutKind.Sequential)]
    public struct SockAddrUn
    {
        public ushort sun_family;
        public fixed byte sun_path[SunPathLength];
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct UCred
    {
        public int pid;
        public uint uid;
        public uint gid;
    }

    [LibraryImport(Lib, EntryPoint = "memfd_create", SetLastError = true)]
    public static partial int memfd_create(byte* name, uint flags);

    [LibraryImport(Lib, EntryPoint = "ftruncate", SetLastError = true)]
    public static partial int ftruncate(int fd, long length);

    [LibraryImport(Lib, EntryPoint = "lseek", SetLastError = true)]
    public static partial long lseek(int fd, long offset, int whence);

    // fcntl is variadic; on x86-64 SysV an int vararg travels in the same register as a fixed one.
    [LibraryImport(Lib, EntryPoint = "fcntl", SetLastError = true)]
    public static partial int fcntl(int fd, int cmd, int arg);

    [LibraryImport(Lib, EntryPoint = "mmap", SetLastError = true)]
    public static partial void* mmap(void* addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport(Lib, EntryPoint = "munmap", SetLastError = true)]
    public static partial int munmap(void* addr, nuint length);

    [LibraryImport(Lib, EntryPoint = "madvise", SetLastError = true)]
    public static partial int madvise(void* addr, nuint length, int advice);

    /// <summary>glibc only: hands the free memory of every malloc arena back to the system.</summary>
    [LibraryImport(Lib, EntryPoint = "malloc_trim")]
    public static partial int malloc_trim(nuint pad);

    [LibraryImport(Lib, EntryPoint = "mprotect", SetLastError = true)]
    public static partial int mprotect(void* addr, nuint length, int prot);

    [LibraryImport(Lib, EntryPoint = "close", SetLastError = true)]
    public static partial int close(int fd);

    [LibraryImport(Lib, EntryPoint = "socket", SetLastError = true)]
    public static partial int socket(int domain, int type, int protocol);

    [LibraryImport(Lib, EntryPoint = "connect", SetLastError = true)]
    public static partial int connect(int fd, SockAddrUn* addr, uint addrlen);

    [LibraryImport(Lib, EntryPoint = "bind", SetLastError = true)]
    public static partial int bind(int fd, SockAddrUn* addr, uint addrlen);

    [LibraryImport(Lib, EntryPoint = "listen", SetLastError = true)]
    public static partial int listen(int fd, int backlog);

    [LibraryImport(Lib, EntryPoint = "accept4", SetLastError = true)]
    public static partial int accept4(int fd, void* addr, void* addrlen, int flags);

    [LibraryImport(Lib, EntryPoint = "shutdown", SetLastError = true)]
    public static partial int shutdown(int fd, int how);

    [LibraryImport(Lib, EntryPoint = "getsockopt", SetLastError = true)]
    public static partial int getsockopt(int fd, int level, int name, void* value, uint* len);

    [LibraryImport(Lib, EntryPoint = "gettid")]
    public static partial int gettid();

    [LibraryImport(Lib, EntryPoint = "socketpair", SetLastError = true)]
    public static partial int socketpair(int domain, int type, int protocol, int* sv);

    /// <summary>The process at the other end of a unix socket (SO_PEERCRED); pid 0 and uid uint.MaxValue when
    /// the kernel cannot say.</summary>
    public static UCred PeerCredentials(int fd)
    {
        var credentials = default(UCred);
        uint length = (uint)sizeof(UCred);
        return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0 ? credentials : new UCred { uid = uint.MaxValue, gid = uint.MaxValue };
    }

    [LibraryImport(Lib, EntryPoint = "sendmsg", SetLastError = true)]
    public static partial nint sendmsg(int fd, MsgHdr* msg, int flags);

    [LibraryImport(Lib, EntryPoint = "recvmsg", SetLastError = true)]
    public static partial nint recvmsg(int fd, MsgHdr* msg, int flags);

    [LibraryImport(Lib, EntryPoint = "send", SetLastError = true)]
    public static partial nint send(int fd, void* buf, nuint len, int flags);

    [LibraryImport(Lib, EntryPoint = "recv", SetLastError = true)]
    public static partial nint recv(int fd, void* buf, nuint len, int flags);

    [LibraryImport(Lib, EntryPoint = "poll", SetLastError = true)]
    public static partial int poll(PollFd* fds, nuint nfds, int timeoutMs);

    /// <summary>A listener's poll(): the number of ready descriptors, or -1 when a signal interrupted it (poll
    /// again); any other failure throws, naming the listener.</summary>
    public static int PollOrThrow(PollFd* fds, nuint nfds, int timeoutMs, string description)
    {
        int r = poll(fds, nfds, timeoutMs);
        if (r >= 0) return r;
        int errno = Errno;
        if (errno == EINTR) return -1;
        throw new IOException($"{description}: poll() failed ({Describe(errno)})");
    }

    [LibraryImport(Lib, EntryPoint = "eventfd", SetLastError = true)]
    public static partial int eventfd(uint initval, int flags);

    [LibraryImport(Lib, EntryPoint = "read", SetLastError = true)]
    public static partial nint read(int fd, void* buf, nuint count);

    [LibraryImport(Lib, EntryPoint = "write", SetLastError = true)]
    public static partial nint write(int fd, void* buf, nuint count);

    [LibraryImport(Lib, EntryPoint = "open", SetLastError = true)]
    public static partial int open(byte* path, int flags, int mode);

    [LibraryImport(Lib, EntryPoint = "dup", SetLastError = true)]
    public static partial int dup(int fd);

    [LibraryImport(Lib, EntryPoint = "unlink", SetLastError = true)]
    public static partial int unlink(byte* path);

    // A real symbol from glibc 2.33 on; only the host-side listener calls it, and it copes with its absence.
    [LibraryImport(Lib, EntryPoint = "lstat", SetLastError = true)]
    public static partial int lstat(byte* path, byte* statBuffer);

    public static int Errno => Marshal.GetLastPInvokeError();

    /// <summary>"errno 2: No such file or directory"-style text for exception messages (cold path).</summary>
    public static string Describe(int errno) => $"errno {errno}: {Marshal.GetPInvokeErrorMessage(errno)}";

    /// <summary>Fills a sockaddr_un; returns false when the path does not fit (108 bytes incl. NUL).</summary>
    public static bool TryMakeAddress(string path, out SockAddrUn address, out uint length)
    {
        address = default;
        length = 0;
        int byteCount = System.Text.Encoding.UTF8.GetByteCount(path);
        if (byteCount == 0 || byteCount >= SunPathLength)
            return false;
        address.sun_family = AF_UNIX;
        fixed (SockAddrUn* a = &address)
        {
            System.Text.Encoding.UTF8.GetBytes(path, new Span<byte>(a->sun_path, SunPathLength));
        }
        length = (uint)(sizeof(ushort) + byteCount + 1);
        return true;
    }

    /// <summary>Monotonic milliseconds left until <paramref name="deadline"/> (a Stopwatch timestamp),
    /// rounded up so that poll never returns before the deadline; -1 for no deadline.</summary>
    public static int RemainingMs(long deadline)
    {
        if (deadline == long.MaxValue)
            return -1;
        long left = deadline - System.Diagnostics.Stopwatch.GetTimestamp();
        if (left <= 0)
            return 0;
        long ticksPerMs = Math.Max(1, System.Diagnostics.Stopwatch.Frequency / 1000);
        long ms = left / ticksPerMs + (left % ticksPerMs != 0 ? 1 : 0);
        return ms > int.MaxValue ? int.MaxValue : (int)ms;
    }

    /// <summary>Stopwatch timestamp <paramref name="timeoutMs"/> from now; long.MaxValue when negative (infinite).</summary>
    public static long Deadline(int timeoutMs)
    {
        if (timeoutMs < 0)
            return long.MaxValue;
        return System.Diagnostics.Stopwatch.GetTimestamp() + timeoutMs * System.Diagnostics.Stopwatch.Frequency / 1000;
    }

    /// <summary>Waits until <paramref name="fd"/> is writable (a non-blocking connect finished) or the deadline
    /// passes, through EINTR: 1 ready, 0 timed out, -1 failed (<see cref="Errno"/> says why).</summary>
    public static int WaitWritable(int fd, long deadline)
    {
        var pfd = new PollFd { fd = fd, events = POLLOUT };
        while (true)
        {
            int r = poll(&pfd, 1, RemainingMs(deadline));
            if (r < 0 && Errno == EINTR)
                continue;
            return r < 0 ? -1 : r == 0 ? 0 : 1;
        }
    }
}
