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
            // A Windows host (hyperv:, tcp:) has no libc poll: readable with nothing to read is the peer's FIN.
            if (!OperatingSystem.IsLinux())
                return socket.Poll(0, SelectMode.SelectError) || (socket.Poll(0, SelectMode.SelectRead) && socket.Available == 0);
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
}
