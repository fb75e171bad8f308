using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using static GuestIcd.Transport.Tests.StreamTestSupport;
using static GuestIcd.Transport.Tests.TestSupport;

namespace GuestIcd.Transport.Tests;

public sealed class TcpTransportTests
{
    /// <summary>Sends length-prefixed messages of the given sizes from one thread while another reads the
    /// echoes back and checks every byte; big messages exceed both the socket and transport buffers.</summary>
    internal static void RoundTrip(ITransport guest, int[] sizes, int seed)
    {
        var reader = Start(() =>
        {
            var header = new byte[4];
            long offset = 0;
            foreach (int size in sizes)
            {
                Assert.True(guest.ReadExactly(header, 10_000), "echo header timed out");
                Assert.Equal(size, BitConverter.ToInt32(header));
                var payload = new byte[size];
                Assert.True(guest.ReadExactly(payload, 10_000), "echo payload timed out");
                for (int i = 0; i < size; i++)
                {
                    if (payload[i] != Pattern(offset + i, seed))
                        Assert.Fail($"byte {i} of a {size}-byte echo is wrong");
                }
                offset += size;
            }
        }, "guest reader");

        long written = 0;
        foreach (int size in sizes)
        {
            var payload = new byte[size];
            Fill(payload, written, seed);
            guest.Write(BitConverter.GetBytes(size));
            guest.Write(payload);
            guest.Flush();
            written += size;
        }
        reader.Join(30_000);
    }

    private static int[] Sizes(int seed)
    {
        var random = new Random(seed);
        var sizes = new List<int>();
        for (int i = 0; i < 300; i++)
            sizes.Add(random.Next(0, 200));
        for (int i = 0; i < 20; i++)
            sizes.Add(random.Next(1000, 100_000));
        sizes.AddRange([StreamTransport.BufferBytes, StreamTransport.BufferBytes + 1, 3 << 20, PipeTransport.AllOrNothingLimit + 12345]);
        for (int i = 0; i < 50; i++)
            sizes.Add(random.Next(0, 64));
        return sizes.ToArray();
    }

    [Fact]
    public void EchoesManyMessagesBothWaysIncludingOnesLargerThanEveryBuffer() => WithinTime(30_000, () =>
    {
        using var pair = new TcpPair();
        var echo = Start(() => Echo(pair.Host), "host echo");
        RoundTrip(pair.Guest, Sizes(7), 7);
        pair.Guest.Dispose();
        echo.Join(5000);
        Assert.StartsWith("tcp:127.0.0.1:", pair.Guest.Description);
        Assert.Contains("guest 127.0.0.1:", pair.Host.Description);
        Assert.False(pair.Guest.IsTls);
    });

    /// <summary>A host read that timed out leaves the pipe's read in flight; the relay a supervisor starts next
    /// takes over that read and passes on every byte the guest sends after it, and the local side's bytes back.</summary>
    [Fact]
    public void ARelayAfterATimedOutReadPassesOnWhatTheGuestSendsNext() => WithinTime(20_000, () =>
    {
        using var pair = new TcpPair();
        var nothing = new byte[4];
        Assert.False(pair.Host.ReadExactly(nothing, 50));
        using var local = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        string path = Path.Combine(Path.GetTempPath(), $"gicd-relay-{Environment.ProcessId}-{Guid.NewGuid():N}.sock");
        using (var listen = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            listen.Bind(new UnixDomainSocketEndPoint(path));
            listen.Listen(1);
            local.Connect(new UnixDomainSocketEndPoint(path));
            using var accepted = listen.Accept();
            File.Delete(path);
            var relay = pair.Host.RelayAsync(accepted);
            var sent = new byte[100_000];
            new Random(5).NextBytes(sent);
            pair.Guest.Write(sent);
            pair.Guest.Flush();
            var got = new byte[sent.Length];
            for (int n = 0; n < got.Length;)
            {
                int r = local.Receive(got.AsSpan(n));
                Assert.True(r > 0, $"the relay ended after {n} of {got.Length} bytes");
                n += r;
            }
            Assert.Equal(sent, got);
            local.Send("back"u8);
            var back = new byte[4];
            Assert.True(pair.Guest.ReadExactly(back, 5000));
            Assert.Equal("back"u8.ToArray(), back);
            pair.Guest.Dispose();
            Assert.True(relay.Wait(5000), "the relay did not end when the guest left");
        }
    });

    [Fact]
    public void WrongSecretIsRefusedWithAClearErrorThatNamesNoSecret() => WithinTime(10_000, () =>
    {
        using var listener = Listen();
        var accept = Task.Run(() => Assert.Throws<TransportClosedException>(() => AcceptOne(listener)));
        var e = Assert.Throws<TransportClosedException>(() =>
            TcpTransport.Connect("127.0.0.1", listener.Port, Security(OtherSecretText), 5000));
        Assert.Equal($"hostsim at 127.0.0.1:{listener.Port} refused the shared secret", e.Message);
        var refused = accept.GetAwaiter().GetResult();
        Assert.Contains("dropped guest 127.0.0.1:", refused.Message);
        Assert.Contains("presented the wrong shared secret", refused.Message);
        foreach (string message in new[] { e.Message, refused.Message })
        {
            Assert.DoesNotContain(SecretText, message);
            Assert.DoesNotContain(OtherSecretText, message);
        }
        // The listener keeps serving.
        var good = Task.Run(() => AcceptOne(listener));
        using var guest = TcpTransport.Connect("127.0.0.1", listener.Port, Security(), 5000);
        using var host = good.GetAwaiter().GetResult();
    });

    [Fact]
    public void WrongSecretIsRefusedBeforeAnyProtocolByteIsRead() => WithinTime(10_000, () =>
    {
        using var listener = Listen();
        using var raw = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        raw.Connect(IPAddress.Loopback, listener.Port);
        var hello = ReceiveExactly(raw, SharedSecretAuth.HelloBytes);
        Assert.Equal("GICDAUTH"u8.ToArray(), hello[..8]);

        // A well-formed answer with a MAC from the wrong secret, and a protocol message right behind it.
        var answer = new byte[SharedSecretAuth.AnswerBytes];
        hello.AsSpan(0, 16).CopyTo(answer);
        SharedSecretAuth.ComputeMac(Security(OtherSecretText).Secret, hello.AsSpan(16, 32), answer.AsSpan(16, 32), guest: true, answer.AsSpan(48, 32));
        raw.Send(answer);
        raw.Send(new byte[4096]);

        var e = Assert.Throws<TransportClosedException>(() => AcceptOne(listener));
        Assert.Contains("wrong shared secret", e.Message);
        var verdict = ReceiveAll(raw);
        Assert.Equal([SharedSecretAuth.WrongSecret], verdict);

        // Nothing was handed to a session.
        using var cts = new CancellationTokenSource(300);
        Assert.Null(listener.Accept(cts.Token));
    });

    [Fact]
    public void TheRightSecretIsAcceptedByTheWireProtocolAsDocumented() => WithinTime(10_000, () =>
    {
        using var listener = Listen();
        using var raw = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        raw.Connect(IPAddress.Loopback, listener.Port);
        var hello = ReceiveExactly(raw, SharedSecretAuth.HelloBytes);
        var answer = new byte[SharedSecretAuth.AnswerBytes];
        hello.AsSpan(0, 16).CopyTo(answer);
        Random.Shared.NextBytes(answer.AsSpan(16, 32));
        byte[] secret = Security().Secret;
        SharedSecretAuth.ComputeMac(secret, hello.AsSpan(16, 32), answer.AsSpan(16, 32), guest: true, answer.AsSpan(48, 32));
        raw.Send(answer);
        var reply = ReceiveExactly(raw, 33);
        Assert.Equal(SharedSecretAuth.Accepted, reply[0]);
        var proof = new byte[32];
        SharedSecretAuth.ComputeMac(secret, hello.AsSpan(16, 32), answer.AsSpan(16, 32), guest: false, proof);
        Assert.Equal(proof, reply[1..]);
        using var host = AcceptOne(listener);
        raw.Send([1, 2, 3]);
        var got = new byte[3];
        Assert.True(host.ReadExactly(got, 2000));
        Assert.Equal(new byte[] { 1, 2, 3 }, got);
    });

    [Fact]
    public void ListenerWithoutASecretRefusesToStart() => WithinTime(5000, () =>
    {
        var e = Assert.Throws<ArgumentException>(() => new TcpTransportListener(new IPEndPoint(IPAddress.Loopback, 0), null!));
        Assert.Contains("shared secret", e.Message);
        e = Assert.Throws<ArgumentException>(() => Transports.Listen("tcp:127.0.0.1:0", null));
        Assert.Contains("refusing to listen without a shared secret", e.Message);
        e = Assert.Throws<ArgumentException>(() => Transports.Listen("tcp:127.0.0.1:0", new TransportSecurity { Secret = [] }));
        Assert.Contains("no shared secret", e.Message);
        e = Assert.Throws<ArgumentException>(() => Transports.Listen("tcp:127.0.0.1:0", Security("short")));
        Assert.Contains($"at least {TransportSecurity.MinSecretBytes}", e.Message);
        Assert.DoesNotContain("short", e.Message.Replace("shared", "", StringComparison.Ordinal));
    });

    [Fact]
    public void StalledPeerIsDroppedAfterTheAuthTimeoutWhileAGoodGuestGetsIn() => WithinTime(10_000, () =>
    {
        // Long enough that the good guest's whole connect and authentication fit inside it on a loaded machine:
        // at 700 ms the stalled peer's drop came first once in a clean-clone CI run, with the other test classes
        // running beside this one.
        using var listener = Listen(handshakeTimeoutMs: 3000);
        using var stalled = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        stalled.Connect(IPAddress.Loopback, listener.Port);

        // The good guest gets through while the stalled one still holds its handshake open.
        var accept = Task.Run(() => AcceptOne(listener));
        using (var guest = TcpTransport.Connect("127.0.0.1", listener.Port, Security(), 5000))
        using (var host = accept.GetAwaiter().GetResult())
        {
            guest.Write([42]);
            guest.Flush();
            var one = new byte[1];
            Assert.True(host.ReadExactly(one, 2000));
            Assert.Equal(42, one[0]);
        }

        var e = Assert.Throws<TransportClosedException>(() => AcceptOne(listener));
        Assert.Contains("did not complete authentication within 3000 ms", e.Message);
        // Dropped, not leaked: the stalled peer sees the challenge and then EOF.
        Assert.Equal(SharedSecretAuth.HelloBytes, ReceiveAll(stalled).Length);
        Assert.Equal(0, listener.PendingHandshakes);
    });

    [Fact]
    public void HalfSentMessageThenDisconnectEndsTheHostReadPromptly() => WithinTime(5000, () =>
    {
        using var pair = new TcpPair();
        pair.Guest.Write(BitConverter.GetBytes(1000));
        pair.Guest.Write(new byte[100]);
        pair.Guest.Flush();
        var header = new byte[4];
        Assert.True(pair.Host.ReadExactly(header, 2000));
        pair.Guest.Dispose();
        var e = Assert.Throws<TransportClosedException>(() => pair.Host.ReadExactly(new byte[1000], 60_000));
        Assert.Contains("after 100 of 1000 bytes", e.Message);
        Assert.Throws<TransportClosedException>(() => pair.Host.ReadExactly(header, -1));
    });

    [Fact]
    public void GuestGoneWhileTheHostWaitsForeverEndsTheWait() => WithinTime(5000, () =>
    {
        using var pair = new TcpPair();
        var reader = Start(() => Assert.Throws<TransportClosedException>(() => pair.Host.ReadExactly(new byte[8], -1)), "host reader");
        Thread.Sleep(100);
        pair.Guest.Dispose();
        reader.Join(3000);
    });

    [Fact]
    public void HostGoneEndsTheGuestsWaitAndItsWrites() => WithinTime(5000, () =>
    {
        using var pair = new TcpPair();
        var reader = Start(() => Assert.Throws<TransportClosedException>(() => pair.Guest.ReadExactly(new byte[8], -1)), "guest reader");
        Thread.Sleep(100);
        pair.Host.Dispose();
        reader.Join(3000);
        Assert.Throws<TransportClosedException>(() =>
        {
            for (int i = 0; i < 1000; i++)
            {
                pair.Guest.Write(new byte[10_000]);
                pair.Guest.Flush();
            }
        });
    });

    [Fact]
    public void TimeoutsAreAllOrNothingOnBothSides() => WithinTime(10_000, () =>
    {
        using var pair = new TcpPair();
        var eight = new byte[8];
        Assert.False(pair.Host.ReadExactly(eight, 50));
        Assert.False(pair.Guest.ReadExactly(eight, 0));

        pair.Guest.Write([1, 2, 3]);
        pair.Guest.Flush();
        Assert.False(pair.Host.ReadExactly(eight, 200));
        pair.Guest.Write([4, 5, 6, 7, 8]);
        pair.Guest.Flush();
        Assert.True(pair.Host.ReadExactly(eight, 2000));
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 }, eight);

        pair.Host.Write([9, 10, 11]);
        pair.Host.Flush();
        Assert.False(pair.Guest.ReadExactly(eight, 200));
        pair.Host.Write([12, 13, 14, 15, 16]);
        pair.Host.Flush();
        Assert.True(pair.Guest.ReadExactly(eight, 2000));
        Assert.Equal(new byte[] { 9, 10, 11, 12, 13, 14, 15, 16 }, eight);
    });

    [Fact]
    public void GuestSteadyPathAllocatesNothing() => WithinTime(20_000, () =>
    {
        using var pair = new TcpPair();
        var echo = Start(() => Echo(pair.Host), "host echo");
        var message = new byte[68];
        var reply = new byte[68];
        BinaryPrimitives.WriteInt32LittleEndian(message, 64);
        void RoundTrips(int count)
        {
            for (int i = 0; i < count; i++)
            {
                pair.Guest.Write(message.AsSpan(0, 4));
                pair.Guest.Write(message.AsSpan(4));
                pair.Guest.Flush();
                if (!pair.Guest.ReadExactly(reply.AsSpan(0, 4), 5000) || !pair.Guest.ReadExactly(reply.AsSpan(4), -1))
                    throw new TimeoutException("echo did not come back");
            }
        }
        RoundTrips(200);
        long before = GC.GetAllocatedBytesForCurrentThread();
        RoundTrips(1000);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        pair.Guest.Dispose();
        echo.Join(5000);
        Assert.Equal(0, allocated);
    });

    [Fact]
    public void ConnectingWhereNothingListensFailsClearly() => WithinTime(5000, () =>
    {
        int port = UnusedPort();
        var e = Assert.Throws<TransportClosedException>(() => TcpTransport.Connect("127.0.0.1", port, Security(), 2000));
        Assert.Equal($"cannot connect to tcp:127.0.0.1:{port}: nothing is listening there (connection refused)", e.Message);
    });

    [Fact]
    public void ASilentServerTimesOutTheGuestsAuthentication() => WithinTime(5000, () =>
    {
        using var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        server.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        server.Listen();
        int port = ((IPEndPoint)server.LocalEndPoint!).Port;
        var e = Assert.Throws<TransportClosedException>(() => TcpTransport.Connect("127.0.0.1", port, Security(), 300));
        Assert.Contains("authentication timed out after 300 ms", e.Message);
    });

    [Fact]
    public void AServerThatIsNotHostsimIsRecognised() => WithinTime(5000, () =>
    {
        using var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        server.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        server.Listen();
        int port = ((IPEndPoint)server.LocalEndPoint!).Port;
        var serve = Task.Run(() =>
        {
            using var peer = server.Accept();
            peer.Send("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n.................."u8.ToArray());
            ReceiveAll(peer);
        });
        var e = Assert.Throws<TransportClosedException>(() => TcpTransport.Connect("127.0.0.1", port, Security(), 2000));
        Assert.Contains("is not a GuestIcd host", e.Message);
    });

    [Fact]
    public void AHostThatCannotProveTheSecretIsNotTrusted() => WithinTime(5000, () =>
    {
        using var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        server.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        server.Listen();
        int port = ((IPEndPoint)server.LocalEndPoint!).Port;
        var serve = Task.Run(() =>
        {
            using var peer = server.Accept();
            var hello = new byte[SharedSecretAuth.HelloBytes];
            "GICDAUTH"u8.CopyTo(hello);
            hello[8] = 1;
            peer.Send(hello);
            ReceiveExactly(peer, SharedSecretAuth.AnswerBytes);
            var reply = new byte[33];
            reply[0] = SharedSecretAuth.Accepted; // "accepted", with a made-up proof
            peer.Send(reply);
            ReceiveAll(peer);
        });
        var e = Assert.Throws<TransportClosedException>(() => TcpTransport.Connect("127.0.0.1", port, Security(), 2000));
        Assert.Contains("could not prove it knows the shared secret", e.Message);
    });

    [Fact]
    public void AcceptReturnsNullOnCancelAndOnDispose() => WithinTime(5000, () =>
    {
        var listener = Listen();
        using (var cts = new CancellationTokenSource(100))
            Assert.Null(listener.Accept(cts.Token));
        var blocked = Task.Run(() => listener.Accept(CancellationToken.None));
        Thread.Sleep(100);
        listener.Dispose();
        Assert.True(blocked.Wait(3000), "Dispose did not release Accept");
        Assert.Null(blocked.Result);
        Assert.Null(listener.Accept(CancellationToken.None));
    });

    [Fact]
    public void DisposingTheListenerClosesGuestsThatWereNeverAccepted() => WithinTime(5000, () =>
    {
        var listener = Listen();
        using var guest = TcpTransport.Connect("127.0.0.1", listener.Port, Security(), 2000);
        listener.Dispose();
        Assert.Throws<TransportClosedException>(() => guest.ReadExactly(new byte[1], 3000));
    });

    [Fact]
    public void ManyGuestsAtOnceAreEachServed() => WithinTime(20_000, () =>
    {
        using var listener = Listen();
        const int guests = 8;
        var hosts = new List<PipeTransport>();
        var acceptor = Start(() =>
        {
            for (int i = 0; i < guests; i++)
            {
                var host = AcceptOne(listener);
                hosts.Add(host);
                Start(() => Echo(host), "echo " + i);
            }
        }, "acceptor");
        Parallel.For(0, guests, new ParallelOptions { MaxDegreeOfParallelism = guests }, i =>
        {
            using var guest = TcpTransport.Connect("127.0.0.1", listener.Port, Security(), 5000);
            RoundTrip(guest, [1, 100, 70_000, 5], i);
        });
        acceptor.Join(5000);
        foreach (var host in hosts)
            host.Dispose();
    });

    internal static byte[] ReceiveExactly(Socket socket, int count)
    {
        var buffer = new byte[count];
        int done = 0;
        socket.ReceiveTimeout = 5000;
        while (done < count)
        {
            int n = socket.Receive(buffer, done, count - done, SocketFlags.None);
            if (n == 0)
                throw new EndOfStreamException($"EOF after {done} of {count} bytes");
            done += n;
        }
        return buffer;
    }

    /// <summary>Everything until EOF (or 5 s).</summary>
    internal static byte[] ReceiveAll(Socket socket)
    {
        var all = new List<byte>();
        var buffer = new byte[4096];
        socket.ReceiveTimeout = 5000;
        while (true)
        {
            int n;
            try
            {
                n = socket.Receive(buffer);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
            {
                break;
            }
            if (n == 0)
                break;
            all.AddRange(buffer.AsSpan(0, n));
        }
        return all.ToArray();
    }
}
