using GuestIcd.Transport.Native;
using System.Buffers.Binary;
using GuestIcd.VirtioGpu;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace GuestIcd.VirtioGpu.Tests;

/// <summary>The vhost-user protocol over a real unix socket, driven by a test-side frontend that does
/// what QEMU's vhost_dev_start does, with a memfd as guest memory.</summary>
public sealed unsafe class VhostUserSocketTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vgpu-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    /// <summary>A frontend: the client end of the socket.</summary>
    internal sealed class Frontend : IDisposable
    {
        private readonly int _fd;

        public Frontend(string path)
        {
            _fd = Libc.socket(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC, 0);
            Assert.True(Libc.TryMakeAddress(path, out var a, out uint len));
            long deadline = Environment.TickCount64 + 3000;
            while (Libc.connect(_fd, &a, len) != 0)
            {
                Assert.True(Environment.TickCount64 < deadline, "the backend does not listen");
                Thread.Sleep(20);
            }
        }

        public void Send(uint request, ReadOnlySpan<byte> payload, uint flags = VhostUser.FlagVersion, params int[] fds)
        {
            var m = new byte[VhostUser.HeaderSize + payload.Length];
            BinaryPrimitives.WriteUInt32LittleEndian(m, request);
            BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(4), flags);
            BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(8), (uint)payload.Length);
            payload.CopyTo(m.AsSpan(VhostUser.HeaderSize));
            SendRaw(m, fds);
        }

        public void SendRaw(byte[] m, params int[] fds)
        {
            int space = Libc.CmsgSpace(sizeof(int) * Math.Max(1, fds.Length));
            byte* control = stackalloc byte[space];
            new Span<byte>(control, space).Clear();
            fixed (byte* b = m)
            {
                var iov = new Libc.IoVec { iov_base = b, iov_len = (nuint)m.Length };
                var msg = new Libc.MsgHdr { msg_iov = &iov, msg_iovlen = 1 };
                if (fds.Length > 0)
                {
                    var c = (Libc.CmsgHdr*)control;
                    c->cmsg_len = (nuint)(Libc.CmsgDataOffset + sizeof(int) * fds.Length);
                    c->cmsg_level = Libc.SOL_SOCKET;
                    c->cmsg_type = Libc.SCM_RIGHTS;
                    for (int i = 0; i < fds.Length; i++)
                        ((int*)(control + Libc.CmsgDataOffset))[i] = fds[i];
                    msg.msg_control = control;
                    msg.msg_controllen = (nuint)space;
                }
                Assert.Equal((nint)m.Length, Libc.sendmsg(_fd, &msg, Libc.MSG_NOSIGNAL));
            }
        }

        /// <summary>Reads one reply; null when the backend closed the connection.</summary>
        public byte[]? Receive(uint expectRequest, int timeoutMs = 3000)
        {
            var h = new byte[VhostUser.HeaderSize];
            if (!ReadAll(h, timeoutMs))
                return null;
            Assert.Equal(expectRequest, BinaryPrimitives.ReadUInt32LittleEndian(h));
            Assert.Equal(VhostUser.FlagVersion | VhostUser.FlagReply, BinaryPrimitives.ReadUInt32LittleEndian(h.AsSpan(4)));
            var p = new byte[BinaryPrimitives.ReadUInt32LittleEndian(h.AsSpan(8))];
            Assert.True(ReadAll(p, timeoutMs));
            return p;
        }

        public ulong Ask64(uint request)
        {
            Send(request, []);
            return BinaryPrimitives.ReadUInt64LittleEndian(Receive(request));
        }

        public void Set64(uint request, ulong value, params int[] fds)
        {
            var p = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(p, value);
            Send(request, p, VhostUser.FlagVersion | VhostUser.FlagNeedReply, fds);
            Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(Receive(request)));
        }

        public void SetState(uint request, uint index, uint num)
        {
            var p = new byte[8];
            BinaryPrimitives.WriteUInt32LittleEndian(p, index);
            BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(4), num);
            Send(request, p, VhostUser.FlagVersion | VhostUser.FlagNeedReply);
            Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(Receive(request)));
        }

        /// <summary>True when the backend has closed its end (EOF within the timeout).</summary>
        public bool ClosedByPeer(int timeoutMs)
        {
            var b = new byte[64];
            long deadline = Environment.TickCount64 + timeoutMs;
            fixed (byte* p = b)
            {
                while (Environment.TickCount64 < deadline)
                {
                    var pfd = new Libc.PollFd { fd = _fd, events = Libc.POLLIN };
                    if (Libc.poll(&pfd, 1, 100) <= 0) continue;
                    nint n = Libc.recv(_fd, p, 64, Libc.MSG_DONTWAIT);
                    if (n == 0) return true;
                }
            }
            return false;
        }

        private bool ReadAll(byte[] buffer, int timeoutMs)
        {
            int at = 0;
            long deadline = Environment.TickCount64 + timeoutMs;
            fixed (byte* b = buffer)
            {
                while (at < buffer.Length)
                {
                    var pfd = new Libc.PollFd { fd = _fd, events = Libc.POLLIN };
                    int left = (int)Math.Max(0, deadline - Environment.TickCount64);
                    Assert.True(Libc.poll(&pfd, 1, left) > 0, "no reply in time");
                    nint n = Libc.recv(_fd, b + at, (nuint)(buffer.Length - at), Libc.MSG_DONTWAIT);
                    if (n == 0) return false;
                    if (n > 0) at += (int)n;
                }
            }
            return true;
        }

        public void Dispose() => Libc.close(_fd);
    }

    private const ulong FrontendUva = 0x7f12_0000_0000; // where "QEMU" has guest RAM in its own address space

    /// <summary>Negotiation, the memory table, queue 0's rings and eventfds: what QEMU does at vhost_dev_start.</summary>
    internal static (int Kick, int Call) Start(Frontend f, SyntheticGuest g)
    {
        ulong features = f.Ask64(VhostUser.GetFeatures);
        Assert.NotEqual(0UL, features & (1UL << VhostUser.FeatureVersion1));
        Assert.NotEqual(0UL, features & (1UL << VhostUser.FeatureProtocolFeatures));
        Assert.NotEqual(0UL, features & (1UL << Gpu.FeatureVirgl));
        Assert.NotEqual(0UL, features & (1UL << Gpu.FeatureContextInit));
        Assert.NotEqual(0UL, features & (1UL << Gpu.FeatureResourceBlob));
        ulong protocol = f.Ask64(VhostUser.GetProtocolFeatures);
        Assert.NotEqual(0UL, protocol & (1UL << VhostUser.ProtocolConfig));
        var p8 = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(p8, protocol & ((1UL << VhostUser.ProtocolConfig) | (1UL << VhostUser.ProtocolReplyAck)));
        f.Send(VhostUser.SetProtocolFeatures, p8);
        f.Set64(VhostUser.SetFeatures, features);

        // GET_CONFIG as vhost-user-device-pci asks it (config_size=16): one scanout, one capset.
        var cfg = new byte[12 + 16];
        BinaryPrimitives.WriteUInt32LittleEndian(cfg.AsSpan(4), 16);
        f.Send(VhostUser.GetConfig, cfg);
        var config = f.Receive(VhostUser.GetConfig)!;
        Assert.Equal(28, config.Length);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(config.AsSpan(12 + 8)));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(config.AsSpan(12 + 12)));

        var mem = new byte[8 + 32];
        BinaryPrimitives.WriteUInt32LittleEndian(mem, 1);
        BinaryPrimitives.WriteUInt64LittleEndian(mem.AsSpan(8), SyntheticGuest.Base);
        BinaryPrimitives.WriteUInt64LittleEndian(mem.AsSpan(16), SyntheticGuest.Bytes);
        BinaryPrimitives.WriteUInt64LittleEndian(mem.AsSpan(24), FrontendUva);
        BinaryPrimitives.WriteUInt64LittleEndian(mem.AsSpan(32), 0);
        f.Send(VhostUser.SetMemTable, mem, VhostUser.FlagVersion | VhostUser.FlagNeedReply, g.Fd);
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(f.Receive(VhostUser.SetMemTable)));

        f.SetState(VhostUser.SetVringNum, 0, g.QueueSize);
        f.SetState(VhostUser.SetVringBase, 0, 0);
        var addr = new byte[40];
        BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(8), FrontendUva + (SyntheticGuest.DescGpa - SyntheticGuest.Base));
        BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(16), FrontendUva + (SyntheticGuest.UsedGpa - SyntheticGuest.Base));
        BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(24), FrontendUva + (SyntheticGuest.AvailGpa - SyntheticGuest.Base));
        f.Send(VhostUser.SetVringAddr, addr, VhostUser.FlagVersion | VhostUser.FlagNeedReply);
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(f.Receive(VhostUser.SetVringAddr)));
        int kick = Libc.eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK), call = Libc.eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK);
        f.Set64(VhostUser.SetVringCall, 0, call);
        f.Set64(VhostUser.SetVringKick, 0, kick);
        f.SetState(VhostUser.SetVringEnable, 0, 1);
        return (kick, call);
    }

    private static bool WaitCall(int call, int timeoutMs)
    {
        var pfd = new Libc.PollFd { fd = call, events = Libc.POLLIN };
        if (Libc.poll(&pfd, 1, timeoutMs) <= 0)
            return false;
        Native.Drain(call);
        return true;
    }

    [Fact]
    public void FrontendNegotiatesMapsMemoryAndGetsAnswersOnTheControlQueue()
    {
        using var g = new SyntheticGuest();
        string sock = Path.Combine(_dir, "gpu.sock");
        using var listener = new VhostUserGpuListener(sock, new VirtioGpuOptions { Capset = GuestIcdCapset.Encode(1, 1, "socket test") }, NullLogger.Instance);
        using var f = new Frontend(sock);
        var (kick, call) = Start(f, g);
        try
        {
            var (head, resp) = g.Submit(Req.With(Gpu.CmdGetCapset, 0, GuestIcdCapset.Id, 1), 256);
            Native.Signal(kick);
            Assert.True(WaitCall(call, 3000), "the backend did not signal the call eventfd");
            Assert.Equal([(head, (uint)(Gpu.HeaderSize + GuestIcdCapset.Size))], g.TakeUsed());
            Assert.Equal(Gpu.RespOkCapset, g.ResponseType(resp));
            Assert.True(GuestIcdCapset.TryDecode(g.At(resp + Gpu.HeaderSize, GuestIcdCapset.Size), out _, out _, out _, out string id));
            Assert.Equal("socket test", id);

            // A context: created, fed, destroyed through the socket-driven device.
            g.Submit(Req.CtxCreate(3, GuestIcdCapset.Id, "socket-ctx"), 64);
            Native.Signal(kick);
            Assert.True(WaitCall(call, 3000));
            Assert.Single(g.TakeUsed());

            // GET_VRING_BASE stops the ring and reports where it stopped.
            var st = new byte[8];
            f.Send(VhostUser.GetVringBase, st);
            var b = f.Receive(VhostUser.GetVringBase)!;
            Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(4)));
            g.Submit(Req.Header(Gpu.CmdGetDisplayInfo), 512);
            Native.Signal(kick);
            Assert.False(WaitCall(call, 300), "a stopped ring was still served");
        }
        finally
        {
            Libc.close(kick);
            Libc.close(call);
        }
    }

    [Fact]
    public void MalformedMessagesEndOnlyTheirConnection()
    {
        using var g = new SyntheticGuest();
        string sock = Path.Combine(_dir, "gpu.sock");
        using var listener = new VhostUserGpuListener(sock, new VirtioGpuOptions(), NullLogger.Instance);
        // A survivor that is mid-session the whole time.
        using var survivor = new Frontend(sock);
        var (kick, call) = Start(survivor, g);
        try
        {
            var bad = new List<Action<Frontend>>
            {
                f => f.Send(VhostUser.GetFeatures, new byte[8], 0x2), // protocol version 2
                f => { var m = new byte[12]; BinaryPrimitives.WriteUInt32LittleEndian(m, 5); BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(4), 1); BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(8), 1 << 20); f.SendRaw(m); }, // huge payload
                f => f.Send(VhostUser.SetVringNum, [0, 0, 0, 0, 3, 0, 0, 0]), // 3 descriptors
                f => f.Send(VhostUser.SetVringNum, [9, 0, 0, 0, 64, 0, 0, 0]), // queue 9
                f => f.Send(VhostUser.SetMemTable, new byte[8 + 32 * 2]), // regions without fds
                f => f.Send(VhostUser.SetVringKick, new byte[8]), // a kick without its fd
                f => f.Send(VhostUser.SetFeatures, [0, 0, 0, 0, 0x04, 0, 0, 0]), // packed rings, never offered
                f => { var m = new byte[20]; BinaryPrimitives.WriteUInt32LittleEndian(m, 1); BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(4), 1); BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(8), 100); f.SendRaw(m); }, // truncated payload
            };
            foreach (var send in bad)
            {
                using var f = new Frontend(sock);
                send(f);
                Assert.True(f.ClosedByPeer(7000), "the backend kept a connection that broke the protocol");
            }
            // A region larger than its memfd (touching it would be SIGBUS).
            using (var small = new Frontend(sock))
            {
                int fd = Native.CreateMemfd("small", 4096);
                var mem = new byte[8 + 32];
                BinaryPrimitives.WriteUInt32LittleEndian(mem, 1);
                BinaryPrimitives.WriteUInt64LittleEndian(mem.AsSpan(16), 1 << 20);
                small.Send(VhostUser.SetMemTable, mem, VhostUser.FlagVersion, fd);
                Libc.close(fd);
                Assert.True(small.ClosedByPeer(7000));
            }
            // The survivor and a fresh frontend still work.
            var (head, resp) = g.Submit(Req.Header(Gpu.CmdGetDisplayInfo), Gpu.DisplayInfoSize);
            Native.Signal(kick);
            Assert.True(WaitCall(call, 3000));
            Assert.Equal([(head, (uint)Gpu.DisplayInfoSize)], g.TakeUsed());
            Assert.Equal(Gpu.RespOkDisplayInfo, g.ResponseType(resp));
            using var again = new Frontend(sock);
            Assert.NotEqual(0UL, again.Ask64(VhostUser.GetFeatures));
        }
        finally
        {
            Libc.close(kick);
            Libc.close(call);
        }
    }

    [Fact]
    public void RingsOutsideGuestMemoryAreNotStarted()
    {
        using var g = new SyntheticGuest();
        string sock = Path.Combine(_dir, "gpu.sock");
        using var listener = new VhostUserGpuListener(sock, new VirtioGpuOptions(), NullLogger.Instance);
        using var f = new Frontend(sock);
        var (kick, call) = Start(f, g);
        try
        {
            var addr = new byte[40];
            BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(8), FrontendUva + SyntheticGuest.Bytes - 64); // desc table runs past RAM
            BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(16), FrontendUva + (SyntheticGuest.UsedGpa - SyntheticGuest.Base));
            BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(24), FrontendUva + (SyntheticGuest.AvailGpa - SyntheticGuest.Base));
            f.Send(VhostUser.SetVringAddr, addr, VhostUser.FlagVersion | VhostUser.FlagNeedReply);
            Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(f.Receive(VhostUser.SetVringAddr)));
            g.Submit(Req.Header(Gpu.CmdGetDisplayInfo), Gpu.DisplayInfoSize);
            Native.Signal(kick);
            Assert.False(WaitCall(call, 300));
            Assert.Empty(g.TakeUsed());
            // The connection itself is fine.
            Assert.NotEqual(0UL, f.Ask64(VhostUser.GetFeatures));
        }
        finally
        {
            Libc.close(kick);
            Libc.close(call);
        }
    }
}
