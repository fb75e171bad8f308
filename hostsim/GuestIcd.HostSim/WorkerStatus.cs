using System.Runtime.InteropServices;
using GuestIcd.Transport.Native;

namespace GuestIcd.HostSim;

/// <summary>One page of shared memory between the supervisor and a worker, where the worker's session
/// records the command it is executing (<see cref="Session.Progress"/>) so the supervisor can name it
/// when the worker dies. A plain store per command; the supervisor reads it only after the worker is gone.</summary>
internal sealed unsafe class WorkerStatus : IDisposable
{
    const int PageBytes = 4096;

    /// <summary>Where in-process sessions record progress: nobody reads it.</summary>
    public static readonly ulong* Sink = (ulong*)NativeMemory.AllocZeroed(64);

    public int Fd { get; private set; }
    public ulong* Page { get; private set; }

    /// <summary>The session's live figures (Operations/SessionCounters.cs), a cache line after the progress word.</summary>
    public SessionCounters* Counters => (SessionCounters*)((byte*)Page + 64);

    WorkerStatus(int fd, ulong* page) { Fd = fd; Page = page; }

    /// <summary>Supervisor: a fresh zeroed page (its fd goes to the worker).</summary>
    public static WorkerStatus Create()
    {
        int fd;
        fixed (byte* name = "guesticd-worker-status\0"u8) fd = Libc.memfd_create(name, Libc.MFD_CLOEXEC);
        if (fd < 0) throw new IOException($"memfd_create failed ({Libc.Describe(Libc.Errno)})");
        if (Libc.ftruncate(fd, PageBytes) != 0)
        {
            Libc.close(fd);
            throw new IOException($"ftruncate failed ({Libc.Describe(Libc.Errno)})");
        }
        return new WorkerStatus(fd, Map(fd));
    }

    /// <summary>Worker: maps the page the supervisor sent and closes its fd.</summary>
    public static WorkerStatus Open(int fd)
    {
        var status = new WorkerStatus(fd, Map(fd));
        status.CloseFd();
        return status;
    }

    static ulong* Map(int fd)
    {
        void* p = Libc.mmap(null, PageBytes, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, fd, 0);
        if (p == Libc.MAP_FAILED)
        {
            int errno = Libc.Errno;
            Libc.close(fd);
            throw new IOException($"mapping the worker status page failed ({Libc.Describe(errno)})");
        }
        return (ulong*)p;
    }

    public void CloseFd()
    {
        if (Fd >= 0) Libc.close(Fd);
        Fd = -1;
    }

    /// <summary>The command last started, as "vkQueueSubmit (command 17 of the session)", or what the
    /// worker was doing before its first command.</summary>
    public string LastCommand()
    {
        ulong v = Volatile.Read(ref *Page);
        if (v == 0) return "no command yet (between the hand-off and its first command)";
        uint id = (uint)v;
        uint count = (uint)(v >> 32);
        string name = id switch
        {
            GuestIcd.Protocol.PrivateCommands.WriteMemory => "WriteMemory",
            GuestIcd.Protocol.PrivateCommands.ReadMemory => "ReadMemory",
            GuestIcd.Protocol.PrivateCommands.AllocateSharedMemory => "vkAllocateMemory (shared heap)",
            _ => GuestIcd.Protocol.Tables.CommandOfId(id) is int c and >= 0 ? GuestIcd.Protocol.Tables.Commands[c].Name : $"unknown command 0x{id:X8}",
        };
        return $"{name} (command {count} of the session)";
    }

    public void Dispose()
    {
        CloseFd();
        if (Page != null) Libc.munmap(Page, PageBytes);
        Page = null;
    }
}
