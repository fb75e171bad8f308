using GuestIcd.Transport.Native;

namespace GuestIcd.VirtioGpu;

/// <summary>The eventfd and memfd helpers of a vhost-user backend, over the transport library's libc
/// declarations (<see cref="Libc"/>), which the backend shares.</summary>
public static unsafe class Native
{
    /// <summary>Adds one to an eventfd (a vring's call, or a kick in tests); a closed one (-1) is skipped.</summary>
    public static void Signal(int eventFd)
    {
        if (eventFd < 0)
            return;
        ulong one = 1;
        Libc.write(eventFd, &one, sizeof(ulong));
    }

    /// <summary>Drains an eventfd; false when nothing was pending.</summary>
    public static bool Drain(int eventFd)
    {
        ulong value;
        return Libc.read(eventFd, &value, sizeof(ulong)) == sizeof(ulong);
    }

    /// <summary>Creates a memfd of <paramref name="size"/> bytes (tests and the guest-memory stand-in).</summary>
    public static int CreateMemfd(string name, long size)
    {
        byte[] n = System.Text.Encoding.UTF8.GetBytes(name + "\0");
        int fd;
        fixed (byte* p = n)
            fd = Libc.memfd_create(p, Libc.MFD_CLOEXEC);
        if (fd < 0)
            throw new IOException($"memfd_create failed ({Libc.Describe(Libc.Errno)})");
        if (Libc.ftruncate(fd, size) != 0)
        {
            int e = Libc.Errno;
            Libc.close(fd);
            throw new IOException($"ftruncate of a memfd to {size} bytes failed ({Libc.Describe(e)})");
        }
        return fd;
    }
}
