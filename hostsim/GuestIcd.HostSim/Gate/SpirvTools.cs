using System.Runtime.InteropServices;
using System.Text;

namespace GuestIcd.HostSim.Gate;

/// <summary>SPIRV-Tools' validator through its C API, loaded from a shared library: where libguesticd_spirv.so
/// (Debian's static SPIRV-Tools linked in at build time) cannot be built, as on a Windows host, whose
/// SPIRV-Tools is the Vulkan SDK's SPIRV-Tools-shared.dll. Does what guesticd_spirv_validate does, with the
/// same answers (0 valid, 1 invalid with the reason, -1 could not run), so the gate has one validator
/// whichever library carries it.</summary>
internal static unsafe class SpirvTools
{
    /// <summary>spv_target_env values (libspirv.h; appended to, never renumbered) for the gate's environments:
    /// Vulkan 1.0 .. 1.3, and 1.1 with VK_KHR_spirv_1_4.</summary>
    static readonly int[] s_envs = [1, 18, 23, 25, 21];

    [StructLayout(LayoutKind.Sequential)] struct ConstBinary { public uint* Code; public nuint WordCount; }
    [StructLayout(LayoutKind.Sequential)] struct Diagnostic { public nuint Line, Column, Index; public byte* Error; public byte IsTextSource; }

    static delegate* unmanaged<int, nint> s_contextCreate;
    static delegate* unmanaged<nint, void> s_contextDestroy;
    static delegate* unmanaged<nint> s_optionsCreate;
    static delegate* unmanaged<nint, void> s_optionsDestroy;
    static delegate* unmanaged<nint, byte, void> s_relaxBlockLayout, s_uniformBufferStandardLayout, s_scalarBlockLayout, s_workgroupScalarBlockLayout;
    static delegate* unmanaged<nint, nint, ConstBinary*, Diagnostic**, int> s_validate;
    static delegate* unmanaged<Diagnostic*, void> s_diagnosticDestroy;

    /// <summary>The library's file name where a platform ships it: the Vulkan SDK's on Windows (found on PATH
    /// or next to hostsim), the distribution's shared build elsewhere.</summary>
    public static string DefaultLibrary => OperatingSystem.IsWindows() ? "SPIRV-Tools-shared.dll" : "libSPIRV-Tools-shared.so";

    /// <summary>Binds the C API from <paramref name="path"/>; null on success, else why not.</summary>
    public static string? Load(string path)
    {
        if (!NativeLibrary.TryLoad(path, typeof(SpirvTools).Assembly, null, out var lib) && !NativeLibrary.TryLoad(path, out lib))
            return $"{path} could not be loaded";
        string? missing = null;
        nint F(string name)
        {
            if (NativeLibrary.TryGetExport(lib, name, out var p)) return p;
            missing ??= $"{path} has no {name}";
            return 0;
        }
        var contextCreate = F("spvContextCreate");
        var contextDestroy = F("spvContextDestroy");
        var optionsCreate = F("spvValidatorOptionsCreate");
        var optionsDestroy = F("spvValidatorOptionsDestroy");
        var relax = F("spvValidatorOptionsSetRelaxBlockLayout");
        var ubo = F("spvValidatorOptionsSetUniformBufferStandardLayout");
        var scalar = F("spvValidatorOptionsSetScalarBlockLayout");
        var workgroup = F("spvValidatorOptionsSetWorkgroupScalarBlockLayout");
        var validate = F("spvValidateWithOptions");
        var diagnosticDestroy = F("spvDiagnosticDestroy");
        if (missing is not null) return missing;
        s_contextCreate = (delegate* unmanaged<int, nint>)contextCreate;
        s_contextDestroy = (delegate* unmanaged<nint, void>)contextDestroy;
        s_optionsCreate = (delegate* unmanaged<nint>)optionsCreate;
        s_optionsDestroy = (delegate* unmanaged<nint, void>)optionsDestroy;
        s_relaxBlockLayout = (delegate* unmanaged<nint, byte, void>)relax;
        s_uniformBufferStandardLayout = (delegate* unmanaged<nint, byte, void>)ubo;
        s_scalarBlockLayout = (delegate* unmanaged<nint, byte, void>)scalar;
        s_workgroupScalarBlockLayout = (delegate* unmanaged<nint, byte, void>)workgroup;
        s_validate = (delegate* unmanaged<nint, nint, ConstBinary*, Diagnostic**, int>)validate;
        s_diagnosticDestroy = (delegate* unmanaged<Diagnostic*, void>)diagnosticDestroy;
        return null;
    }

    /// <summary>guesticd_spirv_validate's contract: each call has its own context (sessions of an in-process
    /// hostsim validate on their own threads); the reason, if any, goes into msg as UTF-8 with a NUL.</summary>
    [UnmanagedCallersOnly]
    public static int Validate(uint* code, nuint words, int env, uint flags, byte* msg, nuint cap)
    {
        var text = new Span<byte>(msg, (int)Math.Min(cap, int.MaxValue));
        if (env < 0 || env >= s_envs.Length) return Answer(text, -1, $"unknown target environment {env}");
        nint ctx = s_contextCreate(s_envs[env]), opts = s_optionsCreate();
        try
        {
            if (ctx == 0 || opts == 0) return Answer(text, -1, "the validator could not start");
            if ((flags & 1) != 0) s_relaxBlockLayout(opts, 1);
            if ((flags & 2) != 0) s_uniformBufferStandardLayout(opts, 1);
            if ((flags & 4) != 0) s_scalarBlockLayout(opts, 1);
            if ((flags & 8) != 0) s_workgroupScalarBlockLayout(opts, 1);
            var binary = new ConstBinary { Code = code, WordCount = words };
            Diagnostic* diag = null;
            int r = s_validate(ctx, opts, &binary, &diag);
            try
            {
                if (r == 0) return Answer(text, 0, "");
                return Answer(text, 1, diag != null && diag->Error != null
                    ? $"{Marshal.PtrToStringUTF8((nint)diag->Error)} (word {diag->Index})" : $"spv_result_t {r}");
            }
            finally { s_diagnosticDestroy(diag); }
        }
        finally
        {
            if (opts != 0) s_optionsDestroy(opts);
            if (ctx != 0) s_contextDestroy(ctx);
        }
    }

    static int Answer(Span<byte> msg, int rc, string why)
    {
        if (msg.IsEmpty) return rc;
        int n = Encoding.UTF8.GetBytes(why.AsSpan(0, Math.Min(why.Length, (msg.Length - 1) / 3)), msg);
        msg[n] = 0;
        return rc;
    }
}
