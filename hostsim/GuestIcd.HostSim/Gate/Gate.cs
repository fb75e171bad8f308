using System.Diagnostics.CodeAnalysis;
using GuestIcd.Protocol;
using GuestIcd.Protocol.Codec;
using GuestIcd.Protocol.Wire;
using GuestIcd.Vulkan;

namespace GuestIcd.HostSim.Gate;

/// <summary>
/// The valid-usage gate between the decoder and the host driver (DESIGN.md §6, wall 2). A C driver given
/// invalid usage corrupts the process it runs in, so everything that would make the driver touch memory
/// it should not is refused here: handles of another device or of destroyed parents, lifetimes, ranges,
/// limits, commands and features the device did not enable, and command-buffer state the driver relies on.
/// Guest-object state lives per object family (one file each, like virglrenderer's vkr_*.c), keyed by the
/// host handle. A violation throws a <see cref="ProtocolException"/> naming the VUID: the session ends
/// and the guest sees VK_ERROR_DEVICE_LOST; where the spec defines a result, <see cref="Check"/> returns it.
/// Per-command checks allocate nothing: dictionary lookups and a walk of the decoded arguments.
/// </summary>
internal sealed unsafe partial class ValidUsageGate
{
    readonly Func<string, nint> _instanceProc;
    /// <summary>Whether the session still holds a device (host handle): its teardown cascade may have destroyed it.</summary>
    public Func<ulong, bool> DeviceAlive = _ => true;
    readonly Arena _arena;

    /// <summary>The session's real vkFreeMemory path (device, memory), run when memory the guest freed while
    /// still bound loses its last binding.</summary>
    public Action<ulong, ulong>? FreeMemory;

    /// <param name="instanceProc">vkGetInstanceProcAddr on the session's host instance.</param>
    /// <param name="arena">The session's per-command arena: the gate may rewrite create infos there.</param>
    public ValidUsageGate(Func<string, nint> instanceProc, Arena arena)
    {
        _instanceProc = instanceProc;
        _arena = arena;
    }

    /// <summary>Which device every non-dispatchable object, queue and command buffer belongs to.</summary>
    readonly Dictionary<(int Type, ulong Handle), ulong> _owner = new();

    const int TypeInstance = 1, TypePhysicalDevice = 2, TypeDevice = 3, TypeQueue = 4, TypeSemaphore = 5, TypeCommandBuffer = 6,
        TypeFence = 7, TypeMemory = 8, TypeBuffer = 9, TypeImage = 10, TypeEvent = 11, TypeQueryPool = 12, TypeBufferView = 13,
        TypeImageView = 14, TypeShaderModule = 15, TypePipelineCache = 16, TypePipelineLayout = 17, TypeRenderPass = 18, TypePipeline = 19,
        TypeSetLayout = 20, TypeSampler = 21, TypeDescriptorPool = 22, TypeDescriptorSet = 23, TypeFramebuffer = 24, TypeCommandPool = 25;

    /// <summary>Objects that belong to the instance rather than a device (surfaces, messengers, displays).</summary>
    static bool InstanceChild(int type) => type is TypeInstance or TypePhysicalDevice or 1000000000 or 1000128000 or 1000011000
        or 1000002000 or 1000002001;

    [DoesNotReturn]
    static void Fail(int cmd, string vuid, string message) =>
        throw new ProtocolException($"{Tables.Commands[cmd].Name}: {message} ({vuid})");

    [DoesNotReturn]
    static void Fail(string name, string vuid, string message) => throw new ProtocolException($"{name}: {message} ({vuid})");

    static ulong Result(VkResult r) => unchecked((ulong)(uint)(int)r);

    /// <summary>Before the driver call. False: do not call the driver; the command's result is <paramref name="result"/>.</summary>
    public bool Check(int cmd, ulong* a, out ulong result)
    {
        result = 0;
        ref readonly var cd = ref Tables.Commands[cmd];
        if (cd.Level == CommandLevel.Device)
        {
            var dev = DeviceOf(cmd, a);
            if (!dev.Enabled(cmd, _instanceProc))
                Fail(cmd, "VUID-vkGetDeviceProcAddr-pName-parameter",
                    cd.Feature.StartsWith("VK_VERSION_", StringComparison.Ordinal)
                        ? $"a {cd.Feature} command, above the API version the guest's instance asked for"
                        : $"a command of {cd.Feature}, which this device did not enable");
            if (_arena.Chained.Length > 0) CheckChainedTypes(cmd, dev);
            if (!s_isCmd[cmd])
            {
                CheckOwnership(cmd, a, dev.Handle);
                return CheckDeviceCommand(cmd, a, dev, ref result);
            }
            var cb = Lookup(_commandBuffers, cmd, a[0], "commandBuffer");
            if (cb.State != RecordState.Recording)
                Fail(cmd, $"VUID-{cd.Name}-commandBuffer-recording", $"the command buffer is {cb.State}, not recording (outside vkBeginCommandBuffer/vkEndCommandBuffer)");
            _recording = cb;
            try
            {
                CheckOwnership(cmd, a, dev.Handle);
                return CheckRecording(cmd, a, dev);
            }
            finally { _recording = null; }
        }
        return CheckInstanceCommand(cmd, a, ref result);
    }

    /// <summary>After the driver call: state follows what was created, bound, recorded and destroyed.</summary>
    public void Record(int cmd, ulong* a, ulong result)
    {
        ref readonly var cd = ref Tables.Commands[cmd];
        if (cd.Return == ReturnKind.VkResult && (int)(uint)result < 0) return;
        if (cd.Level != CommandLevel.Device) { RecordInstanceCommand(cmd, a); return; }
        var dev = DeviceOf(cmd, a);
        if (s_isCmd[cmd]) { RecordRecording(cmd, a, dev); return; }
        RecordDeviceCommand(cmd, a, dev);
        RegisterCreated(cmd, a, dev.Handle);
        ForgetDestroyed(cmd, a, dev);
    }

    DeviceState DeviceOf(int cmd, ulong* a)
    {
        ulong d = ParamType(cmd, 0) switch
        {
            TypeDevice => a[0],
            TypeQueue or TypeCommandBuffer => _owner.TryGetValue((ParamType(cmd, 0), a[0]), out var o) ? o : 0,
            _ => 0,
        };
        DeviceState? dev = null;
        if (d == 0 || !_devices.TryGetValue(d, out dev)) Fail(cmd, "VUID-" + Tables.Commands[cmd].Name + "-device-parameter", "its dispatchable handle belongs to no live device");
        return dev!;
    }

    static int ParamType(int cmd, int i) => CommandCodec.ParamsOf(cmd)[i].Type;

    // ------------------------------------------------------------------ ownership: handles of another device

    /// <summary>Every handle a device-level command names must be an object of that device (the registry's
    /// commonparent rules): another device's object would be used through this device's driver state.</summary>
    void CheckOwnership(int cmd, ulong* a, ulong device)
    {
        var ps = CommandCodec.ParamsOf(cmd);
        for (int i = 1; i < ps.Length; i++)
        {
            ref readonly var f = ref ps[i];
            if (f.IsOut) continue;
            WalkField(cmd, f, (byte*)a, device, 0);
        }
    }

    void WalkField(int cmd, in FieldDesc f, byte* p, ulong device, int depth)
    {
        byte* at = p + f.Offset;
        switch (f.Kind)
        {
            case FieldKind.Handle:
                for (int i = 0; i < f.Count; i++) Owned(cmd, f, ((ulong*)at)[i], device);
                break;
            case FieldKind.Struct:
                if (!Tables.Types[f.Type].Pod)
                    for (int i = 0; i < f.Count; i++) WalkStruct(cmd, f.Type, at + i * f.Size, device, depth + 1);
                break;
            case FieldKind.Pointer:
            {
                byte* q = *(byte**)at;
                if (q == null || f.Elem == ElemKind.Pod) break;
                ulong n = StructCodec.Count(f, p);
                if (f.Elem == ElemKind.Handle) for (ulong i = 0; i < n; i++) Owned(cmd, f, ((ulong*)q)[i], device);
                else if (!Tables.Types[f.Type].Pod) for (ulong i = 0; i < n; i++) WalkStruct(cmd, f.Type, q + i * (ulong)f.Size, device, depth + 1);
                break;
            }
            case FieldKind.PNext:
                for (byte* node = *(byte**)at; node != null; node = *(byte**)(node + 8))
                {
                    int ti = Tables.TypeOfSType(*(int*)node);
                    if (ti >= 0 && !Tables.Types[ti].Pod) WalkStruct(cmd, ti, node, device, depth + 1, chained: true);
                }
                break;
        }
    }

    void WalkStruct(int cmd, int type, byte* p, ulong device, int depth, bool chained = false)
    {
        if (depth > 16) return; // the decoder bounds nesting; this only guards a cycle that cannot be built
        ref readonly var t = ref Tables.Types[type];
        foreach (ref readonly var f in Tables.Fields.AsSpan(t.FirstField, t.FieldCount))
        {
            if (f.Kind == FieldKind.PNext && chained) continue;
            WalkField(cmd, f, p, device, depth);
        }
    }

    void Owned(int cmd, in FieldDesc f, ulong handle, ulong device)
    {
        if (handle == 0 || InstanceChild(f.Type)) return;
        if (f.Type == TypeDevice)
        {
            if (handle != device) Fail(cmd, "VUID-" + Tables.Commands[cmd].Name + "-commonparent", $"{f.Name} is another device");
            return;
        }
        if (!_owner.TryGetValue((f.Type, handle), out var owner))
            Fail(cmd, "VUID-" + Tables.Commands[cmd].Name + "-" + f.Name + "-parameter", $"{f.Name} is not a live object (destroyed, or its parent was)");
        if (owner != device)
            Fail(cmd, "VUID-" + Tables.Commands[cmd].Name + "-commonparent", $"{f.Name} belongs to another device");
        _recording?.Refs.Add((f.Type, handle));
    }

    /// <summary>New objects of a successful create or allocate belong to the command's device.</summary>
    void RegisterCreated(int cmd, ulong* a, ulong device)
    {
        foreach (ref readonly var f in CommandCodec.ParamsOf(cmd))
        {
            if ((f.Flags & FieldFlags.Create) == 0 || f.Kind != FieldKind.Pointer) continue;
            ulong* q = *(ulong**)((byte*)a + f.Offset);
            if (q == null) continue;
            ulong n = StructCodec.Count(f, (byte*)a);
            for (ulong i = 0; i < n; i++) if (q[i] != 0) _owner[(f.Type, q[i])] = device;
        }
    }

    void ForgetDestroyed(int cmd, ulong* a, DeviceState dev)
    {
        foreach (ref readonly var f in CommandCodec.ParamsOf(cmd))
        {
            if ((f.Flags & FieldFlags.Destroy) == 0) continue;
            if (f.Kind == FieldKind.Handle) Forget(f.Type, a[f.Offset / 8], dev);
            else if (f.Kind == FieldKind.Pointer && a[f.Offset / 8] != 0)
            {
                ulong n = StructCodec.Count(f, (byte*)a);
                for (ulong i = 0; i < n; i++) Forget(f.Type, ((ulong*)a[f.Offset / 8])[i], dev);
            }
        }
    }

    /// <summary>One object is gone: its family drops its state (a pool takes its children with it).</summary>
    void Forget(int type, ulong handle, DeviceState dev)
    {
        if (handle == 0) return;
        _owner.Remove((type, handle));
        // Whatever recorded or holds it can no longer be used (command buffers become invalid, descriptors dead).
        Invalidate(type, handle, dev.Handle);
        if (type is TypeBuffer or TypeImageView or TypeBufferView or TypeSampler)
            foreach (var (h, set) in _sets)
                if (set.Device == dev.Handle && set.Kill(handle)) Invalidate(TypeDescriptorSet, h, dev.Handle);
        switch (type)
        {
            case TypeBuffer: ForgetBuffer(handle); break;
            case TypeImage: ForgetImage(handle); break;
            case TypeMemory: _memory.Remove(handle); dev.Allocations--; break;
            case TypeImageView: _imageViews.Remove(handle); break;
            case TypeBufferView: _bufferViews.Remove(handle); break;
            case TypeShaderModule: _modules.Remove(handle); break;
            case TypePipelineLayout: _pipelineLayouts.Remove(handle); break;
            case TypeSetLayout: _setLayouts.Remove(handle); break;
            case TypePipeline: _pipelines.Remove(handle); break;
            case TypeRenderPass: _renderPasses.Remove(handle); break;
            case TypeFramebuffer: _framebuffers.Remove(handle); break;
            case TypeQueryPool: _queryPools.Remove(handle); break;
            case TypeDescriptorSet: _sets.Remove(handle); break;
            case TypeCommandBuffer: _commandBuffers.Remove(handle); break;
            case TypeDescriptorPool: ForgetChildren(TypeDescriptorSet, handle, dev); break;
            case TypeCommandPool: ForgetChildren(TypeCommandBuffer, handle, dev); break;
        }
    }

    readonly List<ulong> _gone = new();

    void ForgetChildren(int childType, ulong pool, DeviceState dev)
    {
        _gone.Clear();
        if (childType == TypeDescriptorSet) { foreach (var (h, s) in _sets) if (s.Pool == pool) _gone.Add(h); }
        else foreach (var (h, c) in _commandBuffers) if (c.Pool == pool) _gone.Add(h);
        foreach (var h in _gone) Forget(childType, h, dev);
    }

    // ------------------------------------------------------------------ lookups shared by the families

    T Lookup<T>(Dictionary<ulong, T> family, int cmd, ulong handle, string what) where T : class
    {
        if (!family.TryGetValue(handle, out var s))
            Fail(cmd, "VUID-" + Tables.Commands[cmd].Name + "-" + what + "-parameter", $"{what} is not a live object of this session");
        return s;
    }

    static string N(int cmd) => Tables.Commands[cmd].Name;

    /// <summary>A VUID given whole, or as the part after "VUID-{command}-": built only when a check fails,
    /// so the hot path allocates no strings.</summary>
    static string V(int cmd, string vuid) => vuid.StartsWith("VUID-", StringComparison.Ordinal) ? vuid : $"VUID-{N(cmd)}-{vuid}";

    /// <summary>The commands recorded into command buffers: every vkCmd*.</summary>
    static readonly bool[] s_isCmd = Tables.Commands.Select(c => c.Name.StartsWith("vkCmd", StringComparison.Ordinal)).ToArray();
}
