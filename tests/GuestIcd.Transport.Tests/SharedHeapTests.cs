namespace GuestIcd.Transport.Tests;

public unsafe class SharedHeapTests
{
    [Fact]
    public void TheHeapIsTheSamePagesOnBothSides()
    {
        var dir = Directory.CreateTempSubdirectory("guesticd-heap").FullName;
        try
        {
            using var listener = new UnixRingListener(Path.Combine(dir, "h.sock"));
            UnixRingTransport? accepted = null;
            var accept = new Thread(() => accepted = listener.Accept(CancellationToken.None));
            accept.Start();
            using var guest = UnixRingTransport.Connect(listener.SocketPath, 5000, heapBytes: 1 << 20);
            Assert.True(accept.Join(5000), "accept hung");
            using var host = accepted!;
            Assert.Equal(1 << 20, guest.HeapBytes);
            Assert.Equal(1 << 20, host.HeapBytes);
            guest.HeapBase[0] = 0xAB;
            guest.HeapBase[(1 << 20) - 1] = 0xCD;
            Assert.Equal(0xAB, host.HeapBase[0]);
            Assert.Equal(0xCD, host.HeapBase[(1 << 20) - 1]);
            host.HeapBase[4096] = 0x5A;
            Assert.Equal(0x5A, guest.HeapBase[4096]);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void AHeapBeyondTheListenersQuotaIsRefused()
    {
        var dir = Directory.CreateTempSubdirectory("guesticd-heap").FullName;
        try
        {
            using var listener = new UnixRingListener(Path.Combine(dir, "h.sock")) { MaxHeapBytes = 1 << 20 };
            Exception? refused = null;
            var accept = new Thread(() => { try { listener.Accept(CancellationToken.None); } catch (Exception e) { refused = e; } });
            accept.Start();
            using var guest = UnixRingTransport.Connect(listener.SocketPath, 5000, heapBytes: 2 << 20);
            Assert.True(accept.Join(5000), "accept hung");
            Assert.IsType<TransportClosedException>(refused);
            Assert.Contains("shared heap", refused!.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
