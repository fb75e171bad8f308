using System.Runtime.InteropServices;
using GuestIcd.Transport.Native;
using static GuestIcd.Transport.Native.Libc;

namespace GuestIcd.HostSim;

/// <summary>The libc calls only the supervisor and its workers need (Linux x86-64 glibc): process hardening,
/// resource limits, child exits; and the fd-passing messages between them, over Libc's socket calls.</summary>
internal static unsafe partial class WorkerNative
{
    const string Lib = "libc";

    public const int PR_SET_PDEATHSIG = 1, PR_SET_NO_NEW_PRIVS = 38;
    public const int SIGKILL = 9;
    public const int RLIMIT_DATA = 2, RLIMIT_CORE = 4, RLIMIT_NOFILE = 7, RLIMIT_NICE = 13;

    [StructLayout(LayoutKind.Sequential)]
    public struct RLimit { public ulong Current, Max; }

    /// <summary>glibc's struct sigaction (x86-64): handler, a 1024-bit mask, flags, restorer.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct SigAction { public nint Handler; public fixed ulong Mask[16]; public int Flags; public nint Restorer; }

    [LibraryImport(Lib, SetLastError = true)] public static partial int sigaction(int signal, SigAction* action, SigAction* old);
    [LibraryImport(Lib, SetLastError = true)] public static partial int dup2(int from, int to);
    [LibraryImport(Lib, SetLastError = true)] public static partial int prctl(int option, nuint a2, nuint a3, nuint a4, nuint a5);
    [LibraryImport(Lib, SetLastError = true)] public static partial int getppid();
    [LibraryImport(Lib)] public static partial void _exit(int status);
    /// <summary>With PRIO_PROCESS (0) and a thread id, Linux sets that one thread's nice value.</summary>
    [LibraryImport(Lib, SetLastError = true)] public static partial int setpriority(int which, uint who, int priority);
    [LibraryImport(Lib, SetLastError = true)] public static partial int getpriority(int which, uint who);
    [LibraryImport(Lib, SetLastError = true)] public static partial int setrlimit(int resource, RLimit* limit);
    [LibraryImport(Lib, SetLastError = true)] public static partial int getrlimit(int resource, RLimit* limit);
    /// <summary>glibc 2.36 and later (Debian 12).</summary>
    [LibraryImport(Lib, SetLastError = true)] public static partial int pidfd_open(int pid, uint flags);
    public const int P_PID = 1, WEXITED = 4, WNOHANG = 1, WNOWAIT = 0x01000000, CLD_EXITED = 1;
    /// <summary>siginfo_t is 128 bytes; for SIGCHLD si_code is at 8, si_pid at 16 and si_status at 24 (x86-64).</summary>
    [LibraryImport(Lib, SetLastError = true)] public static partial int waitid(int idType, uint id, byte* info, int options);
    [LibraryImport(Lib)] public static partial void* memset(void* destination, int value, nuint count);

    public const int MaxFds = 8;

    /// <summary>Sends one message: a u32 length, <paramref name="body"/>, and <paramref name="fds"/> riding
    /// on its first byte. Blocking socket.</summary>
    public static void SendMessage(int socket, ReadOnlySpan<byte> body, ReadOnlySpan<int> fds)
    {
        if (fds.Length > MaxFds) throw new ArgumentException("too many fds", nameof(fds));
        var data = new byte[4 + body.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(data, body.Length);
        body.CopyTo(data.AsSpan(4));
        int controlSize = CmsgSpace(fds.Length * sizeof(int));
        byte* control = stackalloc byte[controlSize];
        new Span<byte>(control, controlSize).Clear();
        var cmsg = (CmsgHdr*)control;
        cmsg->cmsg_len = (nuint)CmsgLen(fds.Length * sizeof(int));
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        fds.CopyTo(new Span<int>(control + CmsgDataOffset, fds.Length));
        fixed (byte* p = data)
        {
            int sent = 0;
            while (sent < data.Length)
            {
                var iov = new IoVec { iov_base = p + sent, iov_len = (nuint)(data.Length - sent) };
                var msg = new MsgHdr { msg_iov = &iov, msg_iovlen = 1 };
                if (sent == 0 && fds.Length > 0) { msg.msg_control = control; msg.msg_controllen = (nuint)controlSize; }
                nint n = sendmsg(socket, &msg, MSG_NOSIGNAL);
                if (n > 0) { sent += (int)n; continue; }
                int errno = Errno;
                if (n < 0 && errno == EINTR) continue;
                throw new IOException($"sending to a worker failed ({Describe(errno)})");
            }
        }
    }

    /// <summary>Receives one <see cref="SendMessage"/> message (at most <paramref name="maxBytes"/>);
    /// returns null at EOF before its first byte. The fds arrive close-on-exec.</summary>
    public static byte[]? ReceiveMessage(int socket, int maxBytes, List<int> fds)
    {
        int controlSize = CmsgSpace(MaxFds * sizeof(int));
        byte* control = stackalloc byte[controlSize];
        var lengthBytes = new byte[4];
        int got = 0;
        fixed (byte* p = lengthBytes)
        {
            while (got < 4)
            {
                new Span<byte>(control, controlSize).Clear();
                var iov = new IoVec { iov_base = p + got, iov_len = (nuint)(4 - got) };
                var msg = new MsgHdr { msg_iov = &iov, msg_iovlen = 1, msg_control = control, msg_controllen = (nuint)controlSize };
                nint n = recvmsg(socket, &msg, MSG_CMSG_CLOEXEC);
                if (n < 0 && Errno == EINTR) continue;
                if (n < 0) throw new IOException($"receiving from the supervisor failed ({Describe(Errno)})");
                TakeFds(control, msg.msg_controllen, fds);
                if ((msg.msg_flags & MSG_CTRUNC) != 0) throw new IOException("the supervisor sent more fds than expected");
                if (n == 0)
                {
                    if (got == 0) return null;
                    throw new EndOfStreamException("the supervisor closed mid-message");
                }
                got += (int)n;
            }
        }
        int length = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(lengthBytes);
        if (length < 0 || length > maxBytes) throw new IOException($"a {length}-byte message from the supervisor");
        var body = new byte[length];
        ReceiveExactly(socket, body);
        return body;
    }

    static void TakeFds(byte* control, nuint controlLength, List<int> fds)
    {
        nuint offset = 0;
        while (offset + (nuint)sizeof(CmsgHdr) <= controlLength)
        {
            var header = (CmsgHdr*)(control + offset);
            if (header->cmsg_len < CmsgDataOffset || offset + header->cmsg_len > controlLength) break;
            if (header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS)
            {
                int count = (int)((header->cmsg_len - CmsgDataOffset) / sizeof(int));
                for (int i = 0; i < count; i++) fds.Add(((int*)((byte*)header + CmsgDataOffset))[i]);
            }
            offset += (header->cmsg_len + 7) & ~(nuint)7;
        }
    }

    public static void SendExactly(int socket, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
        {
            for (int sent = 0; sent < data.Length;)
            {
                nint n = send(socket, p + sent, (nuint)(data.Length - sent), MSG_NOSIGNAL);
                if (n > 0) { sent += (int)n; continue; }
                if (n < 0 && Errno == EINTR) continue;
                throw new IOException($"send failed ({Describe(Errno)})");
            }
        }
    }

    public static void ReceiveExactly(int socket, Span<byte> data)
    {
        fixed (byte* p = data)
        {
            for (int got = 0; got < data.Length;)
            {
                nint n = recv(socket, p + got, (nuint)(data.Length - got), 0);
                if (n > 0) { got += (int)n; continue; }
                if (n < 0 && Errno == EINTR) continue;
                if (n == 0) throw new EndOfStreamException("peer closed");
                throw new IOException($"recv failed ({Describe(Errno)})");
            }
        }
    }
}
