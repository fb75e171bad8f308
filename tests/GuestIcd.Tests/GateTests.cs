using System.Diagnostics;

namespace GuestIcd.Tests;

/// <summary>The valid-usage gate (hostsim Gate/, issue 7 point 2): a real application through the real
/// loader and ICD commits one misuse per case (native-shim/clients/gate.c) while a well-behaved compute
/// guest works on the same hostsim. The misuse never reaches the driver: hostsim logs the reason with its
/// VUID, the misbehaving guest gets VK_ERROR_DEVICE_LOST (or the spec's precise VkResult), hostsim stays
/// up, and the other guest's results are right to the last element.</summary>
public class GateTests
{
    static readonly Lazy<(string Gate, string Compute, string Spv)> Built = new(() =>
    {
        var dir = Directory.CreateTempSubdirectory("guesticd-gate").FullName;
        var spv = Path.Combine(dir, "multiply.spv");
        var glslc = Repo.Run("glslc", $"-o {spv} native-shim/shaders/multiply.comp");
        Assert.True(glslc.ExitCode == 0, glslc.Stderr);
        foreach (var name in new[] { "gate", "compute" })
        {
            var cc = Repo.Run("cc", $"-std=c11 -O1 -Wall -Werror -o {Path.Combine(dir, name)} native-shim/clients/{name}.c -lvulkan");
            Assert.True(cc.ExitCode == 0, cc.Stderr);
        }
        return (Path.Combine(dir, "gate"), Path.Combine(dir, "compute"), spv);
    });

    const string Lost = "result=-4"; // VK_ERROR_DEVICE_LOST

    [Theory]
    // ranges
    [InlineData("bind-oversize", Lost, "vkBindBufferMemory: the buffer needs 67108864 bytes at offset 0 of a 4096-byte allocation (VUID-vkBindBufferMemory-size-01037)")]
    [InlineData("fill-range", Lost, "vkCmdFillBuffer: offset 8192 is outside the 4096-byte buffer (VUID-vkCmdFillBuffer-dstOffset-00024)")]
    [InlineData("copy-range", Lost, "runs past the 4096-byte buffer (VUID-vkCmdCopyBuffer-size-00116)")]
    [InlineData("update-range", Lost, "(VUID-vkCmdUpdateBuffer-dataSize-00033)")]
    [InlineData("indirect-range", Lost, "the 12-byte command at 4092 is outside the 4096-byte buffer (VUID-vkCmdDispatchIndirect-offset-00407)")]
    [InlineData("image-copy-range", Lost, "(VUID-vkCmdCopyBufferToImage-pRegions-00171)")]
    [InlineData("image-view-range", Lost, "mip levels [3, +1) of 1 (VUID-VkImageViewCreateInfo-subresourceRange-01718)")]
    [InlineData("descriptor-range", Lost, "[0, +8192) runs past the 4096-byte buffer (VUID-VkDescriptorBufferInfo-range-00342)")]
    [InlineData("descriptor-binding", Lost, "binding 7 is not in the set's layout (VUID-VkWriteDescriptorSet-dstBinding-00315)")]
    [InlineData("push-range", Lost, "is not inside a push-constant range of the layout (VUID-vkCmdPushConstants-offset-01795)")]
    // limits
    [InlineData("dispatch-limit", Lost, "groups exceed maxComputeWorkGroupCount[0]")]
    [InlineData("too-many-queues", Lost, "(VUID-VkDeviceQueueCreateInfo-queueCount-00382)")]
    // handles and lifetimes
    [InlineData("null-handle", Lost, "dstBuffer is VK_NULL_HANDLE where the spec requires a valid handle")]
    [InlineData("other-device", Lost, "vkCmdFillBuffer: dstBuffer belongs to another device (VUID-vkCmdFillBuffer-commonparent)")]
    [InlineData("freed-memory", Lost, "vkCmdFillBuffer: dstBuffer is bound to memory the guest freed")]
    [InlineData("destroyed-buffer", Lost, "vkQueueSubmit: the command buffer is invalid: something it recorded was destroyed")]
    [InlineData("destroy-instance-first", "destroyed the instance first", "ended (guest disconnected)")] // survived: the teardown cascades
    // commands and features the device did not enable
    [InlineData("core-above-version", Lost, "vkCmdSetCullMode: a VK_VERSION_1_3 command, above the API version the guest's instance asked for")]
    [InlineData("struct-not-enabled", Lost, "vkAllocateMemory: a VkMemoryPriorityAllocateInfoEXT in a pNext chain, which needs one of VK_EXT_memory_priority")]
    [InlineData("extension-not-enabled", Lost, "vkCmdSetLineStippleEXT: a command of VK_EXT_line_rasterization, which this device did not enable")]
    [InlineData("device-address", "result=-8", "bufferDeviceAddress is not served to guests")] // VK_ERROR_FEATURE_NOT_PRESENT
    [InlineData("render-pass-attachment", Lost, "vkCreateRenderPass: attachment 5 of 1 (VUID-VkRenderPassCreateInfo-attachment-00834)")]
    [InlineData("render-pass2-dependency", Lost, "vkCreateRenderPass2: dstSubpass 3 of 1 (VUID-VkRenderPassCreateInfo2-dstSubpass-02527)")]
    [InlineData("layout-lacks-set", Lost, "the shader uses set 0, the layout has 0 (VUID-VkComputePipelineCreateInfo-layout-07988)")]
    // shader code: SPIRV-Tools' validator before the driver, entry points by name and stage
    [InlineData("invalid-spirv", Lost, "vkCreateShaderModule: invalid SPIR-V for Vulkan 1.")]
    [InlineData("wrong-entry-point", Lost, "the module has no VK_SHADER_STAGE_COMPUTE_BIT entry point named \"not_main\" (VUID-VkPipelineShaderStageCreateInfo-pName-00707)")]
    // command-buffer state
    [InlineData("dispatch-no-pipeline", Lost, "vkCmdDispatch: no compute pipeline is bound")]
    [InlineData("sets-unbound", Lost, "descriptor set 0, which the pipeline's shaders use, is not bound with a compatible layout (VUID-vkCmdDispatch-None-02697)")]
    [InlineData("outside-begin", Lost, "(VUID-vkCmdFillBuffer-commandBuffer-recording)")]
    [InlineData("draw-outside-render-pass", Lost, "vkCmdDraw: outside a render pass (VUID-vkCmdDraw-renderpass)")]
    // extension commands: their features' limits and state
    [InlineData("multi-draw-no-pipeline", Lost, "vkCmdDrawMultiEXT: no graphics pipeline is bound (VUID-vkCmdDrawMultiEXT-None-08606)")]
    [InlineData("vertex-input-limit", Lost, "vkCmdSetVertexInputEXT: binding 1000 of ")]
    [InlineData("color-write-range", Lost, "attachments exceed maxColorAttachments 8 (VUID-vkCmdSetColorWriteEnableEXT-attachmentCount-06656)")]
    [InlineData("xfb-range", Lost, "vkCmdBindTransformFeedbackBuffersEXT: [0, +8192) runs past the 4096-byte buffer (VUID-vkCmdBindTransformFeedbackBuffersEXT-pSizes-02362)")]
    public async Task AMisbehavingGuestIsRefusedBeforeTheDriverAndAnotherGuestIsUndisturbed(string mode, string guestSees, string hostLogs)
    {
        var (gate, compute, spv) = Built.Value;
        using var host = new HostSim();
        var good = Task.Run(() => Repo.Run(compute, $"{spv} 1000000", host.ClientEnv(), timeoutMs: 180_000));
        var bad = Repo.Run(gate, $"{spv} {mode}", host.ClientEnv(), timeoutMs: 60_000);
        Assert.True(bad.ExitCode == 0, $"{mode}: exit {bad.ExitCode}\n{bad.Stdout}{bad.Stderr}\n{host.Log}");
        Assert.Contains(guestSees, bad.Stdout);
        host.WaitForLog(hostLogs, 10_000);
        var g = await good;
        Assert.True(g.ExitCode == 0, g.Stdout + g.Stderr + host.Log);
        Assert.Contains("round 0: verified 1000000 elements", g.Stdout);
        Assert.Contains("round 1: verified 1000000 elements", g.Stdout);
        // Only the misbehaving session ended (none, where the spec's precise result answered); hostsim still serves.
        Assert.Equal(guestSees == Lost || guestSees.EndsWith("= -4") || guestSees.EndsWith("result=-4") ? 1 : 0,
            System.Text.RegularExpressions.Regex.Count(host.Log, "ended by a protocol error"));
        var again = Repo.Run(gate, $"{spv} ok", host.ClientEnv(), timeoutMs: 60_000);
        Assert.True(again.ExitCode == 0 && again.Stdout.Contains("vkQueueWaitIdle result=0"), again.Stdout + again.Stderr + host.Log);
    }

    /// <summary>Where libguesticd_spirv.so cannot be built (a Windows host), the gate binds SPIRV-Tools' C API
    /// from its shared library (the Vulkan SDK's SPIRV-Tools-shared.dll there). The same code runs here on a
    /// shared build of Debian's SPIRV-Tools: valid shaders run, invalid ones are refused with the validator's
    /// reason, and with neither library hostsim refuses every shader rather than pass one unchecked.</summary>
    [Fact]
    public void SpirvToolsSharedLibraryValidatesWhenTheShimIsMissing()
    {
        var (gate, compute, spv) = Built.Value;
        var tools = Path.Combine(Path.GetDirectoryName(gate)!, "libSPIRV-Tools-shared.so");
        var cc = Repo.Run("cc", $"-shared -o {tools} -Wl,--whole-archive /usr/lib/x86_64-linux-gnu/libSPIRV-Tools.a -Wl,--no-whole-archive -lstdc++ -Wl,-z,defs");
        Assert.True(cc.ExitCode == 0, cc.Stderr);
        var env = new Dictionary<string, string> { ["GUESTICD_SPIRV_LIBRARY"] = "/nonexistent/libguesticd_spirv.so", ["GUESTICD_SPIRV_TOOLS_LIBRARY"] = tools };
        using (var host = new HostSim(env))
        {
            var good = Repo.Run(compute, $"{spv} 100000", host.ClientEnv(), timeoutMs: 180_000);
            Assert.True(good.ExitCode == 0, good.Stdout + good.Stderr + host.Log);
            Assert.Contains("round 1: verified 100000 elements", good.Stdout);
            var bad = Repo.Run(gate, $"{spv} invalid-spirv", host.ClientEnv(), timeoutMs: 60_000);
            Assert.Contains(Lost, bad.Stdout);
            host.WaitForLog("vkCreateShaderModule: invalid SPIR-V for Vulkan 1.", 10_000);
        }
        env["GUESTICD_SPIRV_TOOLS_LIBRARY"] = "/nonexistent/libSPIRV-Tools-shared.so";
        using (var host = new HostSim(env))
        {
            var refused = Repo.Run(compute, $"{spv} 1000", host.ClientEnv(), timeoutMs: 60_000);
            Assert.NotEqual(0, refused.ExitCode);
            host.WaitForLog("SPIR-V cannot be validated on this host (/nonexistent/libguesticd_spirv.so could not be loaded, and /nonexistent/libSPIRV-Tools-shared.so could not be loaded)", 10_000);
        }
    }

    /// <summary>The loader's ICD answers an unknown extension itself; the spec's result either way.</summary>
    [Fact]
    public void AnExtensionTheDeviceLacksGetsExtensionNotPresent()
    {
        var (gate, _, spv) = Built.Value;
        using var host = new HostSim();
        var bad = Repo.Run(gate, $"{spv} missing-extension", host.ClientEnv(), timeoutMs: 60_000);
        Assert.Contains("vkCreateDevice(unknown extension) result=-7", bad.Stdout); // VK_ERROR_EXTENSION_NOT_PRESENT
        Assert.DoesNotContain("ended by a protocol error", host.Log);
    }

    /// <summary>serve --strict: the validation layer runs blocking. A clean application runs unchanged; one
    /// validation error ends that guest's session after the call, which the layer skipped, with its VUID.</summary>
    [Fact]
    public void StrictModeBlocksWhatTheValidationLayerReports()
    {
        var (_, compute, spv) = Built.Value;
        using var host = new HostSim("--strict");
        var clean = Repo.Run(compute, $"{spv} 100000", host.ClientEnv(), timeoutMs: 180_000);
        Assert.True(clean.ExitCode == 0, clean.Stdout + clean.Stderr + host.Log);
        Assert.Contains("round 1: verified 100000 elements", clean.Stdout);
        Assert.DoesNotContain("blocked by the validation layer", host.Log);

        var provoked = Repo.Run(compute, $"{spv} 100000 --provoke-validation", host.ClientEnv(), timeoutMs: 180_000);
        Assert.Contains(" = -4 ", provoked.Stdout); // the next call that waits sees VK_ERROR_DEVICE_LOST
        host.WaitForLog("vkCreateFence: blocked by the validation layer (VUID-VkFenceCreateInfo-flags", 10_000);
        Assert.Contains("ended by a protocol error", host.Log);
    }
}
