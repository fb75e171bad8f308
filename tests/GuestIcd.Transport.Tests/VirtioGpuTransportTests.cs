namespace GuestIcd.Transport.Tests;

/// <summary>The guest end of the virtio-gpu transport outside a VM: a node that is missing or is not a
/// virtio-gpu render node is refused with one line naming it, before any driver-private ioctl is sent.
/// (In a VM: tests/GuestIcd.Vm.Tests/VirtioGpuVmTests.)</summary>
public class VirtioGpuTransportTests
{
    [Fact]
    public void MissingNodeIsRefusedByName()
    {
        var e = Assert.Throws<TransportClosedException>(() => Transports.Connect("virtio-gpu:/dev/dri/renderD250", 1000, "/tmp/unused.sock"));
        Assert.Contains("/dev/dri/renderD250", e.Message);
    }

    [Fact]
    public void NodeOfAnotherDriverIsRefused()
    {
        // /dev/null answers no DRM ioctl: the version check refuses it, as it would another GPU's render node.
        var e = Assert.Throws<TransportClosedException>(() => Transports.Connect("virtio-gpu:/dev/null", 1000, "/tmp/unused.sock"));
        Assert.Contains("not a virtio-gpu node", e.Message);
    }
}
