using System.Net.Sockets;
using GuestIcd.Transport.Native;

namespace GuestIcd.Transport;

/// <summary>Whether the other end of a connection has gone, asked without reading from it: a host thread
/// busy in a long driver call (a wait) asks between slices, in whichever process holds the connection.</summary>
internal static unsafe class PeerLiveness
{
    /// <summary>Linux: the peer shut down its sending side (or closed, or died).</summary>
    public const short POLLRDHUP = 0x2000;

    /// <summary>One poll() that returns at once and consumes nothing: true on hang-up, error, a closed
    /// descriptor, or (<paramref name="rdhup"/>) the peer's end of the stream.</summary>
    public static bool HungUp(int fd, bool rdhup, out short revents)
    {
        var pfd = new Libc.PollFd { fd = fd, events = (short)(Libc.POLLIN | POLLRDHUP) };
        revents = 0;
        if (Libc.poll(&pfd, 1, 0) <= 0)
            return false; // nothing to report (EINTR included: the next check asks again)
        revents = pfd.revents;
        return (pfd.revents & (Libc.POLLHUP | Libc.POLLERR | Libc.POLLNVAL)) != 0 || (rdhup && (pfd.revents & POLLRDHUP) != 0);
    }

    public static bool HungUp(Socket socket)
    {
        try
        {
            if (!OperatingSystem.IsLinux())
                return HungUpWithoutPoll(socket);
            return HungUp((int)socket.Handle, rdhup: true, out _);
        }
        catch (ObjectDisposedException)
        {
            return true;
        }
        catch (SocketException)
        {
            return true;
        }
    }

    /// <summary>A Windows host (hyperv:, tcp:) has no libc poll and no POLLRDHUP. "Readable with nothing to
    /// read" alone is not the peer's FIN there: the host's pipe reader keeps a read in flight beside this
    /// check and can take the bytes between the two questions, and under Wine the select says readable
    /// while that read is pending (WineHostTests: a session ended as "guest left during vkWaitSemaphores"
    /// with the guest still waiting, in one run of two). A peek answers for itself: 0 bytes is end of stream,
    /// which stays; a byte, or nothing within a millisecond, is a live peer.</summary>
    static bool HungUpWithoutPoll(Socket socket)
    {
        if (socket.Poll(0, SelectMode.SelectError)) return true;
        if (!socket.Poll(0, SelectMode.SelectRead) || socket.Available > 0) return false;
        int timeout = socket.ReceiveTimeout;
        socket.ReceiveTimeout = 1;
        try
        {
            Span<byte> one = stackalloc byte[1];
            return socket.Receive(one, SocketFlags.Peek) == 0;
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock or SocketError.IOPending)
        {
            return false;
        }
        finally
        {
            socket.ReceiveTimeout = timeout;
        }
    }
}
