using System.Runtime.ExceptionServices;
using GuestIcd.Transport.Native;

namespace GuestIcd.Transport.Tests;

internal static class TestSupport
{
    /// <summary>Runs <paramref name="body"/> on its own thread and fails (instead of hanging the run) if
    /// it has not finished within <paramref name="limitMs"/>. A liveness guard, not a performance check.</summary>
    public static void WithinTime(int limitMs, Action body)
    {
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try { body(); }
            catch (Exception e) { error = e; }
        }) { IsBackground = true, Name = "test body" };
        thread.Start();
        Assert.True(thread.Join(limitMs), $"test body did not finish within {limitMs} ms (hang)");
        if (error != null)
            ExceptionDispatchInfo.Capture(error).Throw();
    }

    /// <summary>Starts <paramref name="body"/> on a background thread; Join rethrows what it threw.</summary>
    public static Worker Start(Action body, string name) => new(body, name);

    public sealed class Worker
    {
        private readonly Thread _thread;
        private Exception? _error;

        public Worker(Action body, string name)
        {
            _thread = new Thread(() =>
            {
                try { body(); }
                catch (Exception e) { _error = e; }
            }) { IsBackground = true, Name = name };
            _thread.Start();
        }

        public void Join(int limitMs)
        {
            Assert.True(_thread.Join(limitMs), $"{_thread.Name} did not finish within {limitMs} ms (hang)");
            if (_error != null)
                ExceptionDispatchInfo.Capture(_error).Throw();
        }
    }

    /// <summary>A socket file whose server is gone (bound, never listened, closed; System.Net.Sockets
    /// would unlink it on dispose).</summary>
    public static unsafe void MakeStaleSocketFile(string path)
    {
        Assert.True(Libc.TryMakeAddress(path, out var address, out uint length));
        int fd = Libc.socket(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC, 0);
        Assert.True(fd >= 0);
        Assert.Equal(0, Libc.bind(fd, &address, length));
        Libc.close(fd);
    }

    public static byte Pattern(long index, int seed) => (byte)((index * 131) ^ (index >> 9) ^ seed);

    public static void Fill(Span<byte> data, long start, int seed)
    {
        for (int i = 0; i < data.Length; i++)
            data[i] = Pattern(start + i, seed);
    }

    /// <summary>A temp directory with a short socket path, removed on dispose.</summary>
    public sealed class TempSocketDir : IDisposable
    {
        public TempSocketDir() => Directory = System.IO.Directory.CreateTempSubdirectory("gicd").FullName;
        public string Directory { get; }
        public string Path(string name = "ring.sock") => System.IO.Path.Combine(Directory, name);
        public void Dispose()
        {
            try { System.IO.Directory.Delete(Directory, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>A connected guest/host pair over a real socket in a temp directory.</summary>
    public sealed class Pair : IDisposable
    {
        private readonly TempSocketDir _dir = new();
        public UnixRingListener Listener { get; }
        public UnixRingTransport Guest { get; }
        public UnixRingTransport Host { get; }

        public Pair(int ringBytes = 4096)
        {
            Listener = new UnixRingListener(_dir.Path());
            Guest = UnixRingTransport.Connect(Listener.SocketPath, 2000, ringBytes);
            using var cts = new CancellationTokenSource(5000);
            Host = Listener.Accept(cts.Token) ?? throw new InvalidOperationException("accept returned null");
        }

        public void Dispose()
        {
            Guest.Dispose();
            Host.Dispose();
            Listener.Dispose();
            _dir.Dispose();
        }
    }

    /// <summary>Anonymous memory for one ring with an inaccessible page on each side, so that any
    /// access outside [header, data area) crashes the test run instead of passing silently.</summary>
    public sealed unsafe class GuardedRing : IDisposable
    {
        private const int Page = 4096;
        private readonly byte* _base;
        private readonly nuint _size;

        public GuardedRing(int capacity)
        {
            _size = (nuint)(Page + SharedRing.RegionSize(capacity) + Page);
            _base = (byte*)Libc.mmap(null, _size, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS, -1, 0);
            Assert.True(_base != Libc.MAP_FAILED, "mmap failed");
            Assert.Equal(0, Libc.mprotect(_base, Page, Libc.PROT_NONE));
            Assert.Equal(0, Libc.mprotect(_base + _size - Page, Page, Libc.PROT_NONE));
            Region = _base + Page;
            SharedRing.Initialize(Region);
            Capacity = capacity;
        }

        public byte* Region { get; }
        public int Capacity { get; }
        public ref ulong Head => ref *(ulong*)(Region + 0);
        public ref ulong Tail => ref *(ulong*)(Region + 64);

        public void Dispose() => Libc.munmap(_base, _size);
    }
}
