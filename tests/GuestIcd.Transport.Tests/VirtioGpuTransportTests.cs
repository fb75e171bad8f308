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

/// <summary>The DRM UAPI structs the virtio-gpu transport passes to ioctl have the kernel header's layout
/// (size and the offsets of the members it uses), checked by a C program compiled against virtgpu_drm.h.</summary>
public class VirtioGpuUapiLayoutTests
{
    // Debian 12's libdrm header predates blobs and CONTEXT_INIT (Linux 5.11 / 5.16): where it lacks them, the
    // C side declares them from the kernel's UAPI member list, so C's alignment rules still decide the offsets.
    private const string Source = """
        #include <stddef.h>
        #include <stdio.h>
        #include <virtgpu_drm.h>
        #ifndef DRM_VIRTGPU_RESOURCE_CREATE_BLOB
        struct drm_virtgpu_resource_create_blob { __u32 blob_mem, blob_flags, bo_handle, res_handle; __u64 size; __u32 pad, cmd_size; __u64 cmd, blob_id; };
        #endif
        #ifndef DRM_VIRTGPU_CONTEXT_INIT
        struct drm_virtgpu_context_init { __u32 num_params, pad; __u64 ctx_set_params; };
        #endif
        #define S(t) printf("drm_virtgpu_%s %zu\n", #t, sizeof(struct drm_virtgpu_##t))
        #define M(t, m) printf("drm_virtgpu_%s.%s %zu\n", #t, #m, offsetof(struct drm_virtgpu_##t, m))
        int main(void) {
            S(map); M(map, offset); M(map, handle);
            S(getparam); M(getparam, param); M(getparam, value);
            S(get_caps); M(get_caps, addr); M(get_caps, size);
            S(resource_create); M(resource_create, bo_handle); M(resource_create, res_handle); M(resource_create, stride);
            S(resource_create_blob); M(resource_create_blob, blob_mem); M(resource_create_blob, bo_handle); M(resource_create_blob, res_handle);
            M(resource_create_blob, size); M(resource_create_blob, cmd_size); M(resource_create_blob, blob_id);
            S(context_init); M(context_init, ctx_set_params);
            return 0;
        }
        """;

    [Fact]
    public void UapiStructsHaveTheKernelHeadersLayout()
    {
        string dir = Directory.CreateTempSubdirectory("guesticd-virtgpu-layout").FullName;
        try
        {
            string c = Path.Combine(dir, "layout.c"), exe = Path.Combine(dir, "layout");
            File.WriteAllText(c, Source);
            Assert.True(File.Exists("/usr/include/libdrm/virtgpu_drm.h"), "virtgpu_drm.h is missing: install libdrm-dev (scripts/setup.sh)");
            var (ccExit, ccOut) = Run("cc", "-std=c11", "-I/usr/include/libdrm", "-o", exe, c);
            Assert.True(ccExit == 0, "compiling the layout check failed: " + ccOut);
            var (exit, output) = Run(exe);
            Assert.Equal(0, exit);
            var expected = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            var actual = new List<string>();
            foreach (var (name, size, members) in GuestIcd.Transport.VirtioGpuTransport.UapiLayouts())
            {
                actual.Add($"{name} {size}");
                foreach (var (member, offset) in members)
                    actual.Add($"{name}.{member} {offset}");
            }
            Assert.Equal(expected, actual);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    private static (int Exit, string Output) Run(string file, params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        string stdout = p.StandardOutput.ReadToEnd(), stderr = p.StandardError.ReadToEnd();
        Assert.True(p.WaitForExit(30_000), $"{file} did not finish");
        return (p.ExitCode, stdout + stderr);
    }
}
