namespace GuestIcd.Protocol.Codec;

/// <summary>How a struct member or command parameter travels (DESIGN.md §3).</summary>
public enum FieldKind : byte
{
    /// <summary>Plain bytes: scalars, enums, flags, fixed arrays and nested structs without pointers or handles.</summary>
    Pod,
    /// <summary>The pNext chain: repeated {u32 sType, struct}, ending with sType 0.</summary>
    PNext,
    /// <summary>Handle(s) as u64 object ids; <see cref="FieldDesc.Count"/> for fixed arrays.</summary>
    Handle,
    /// <summary>A nested struct (or fixed array of them) that holds pointers or handles.</summary>
    Struct,
    /// <summary>A pointer to one element or to an array: u32 count (or <see cref="StructCodec.Null"/>) then the elements.</summary>
    Pointer,
    /// <summary>A null-terminated string: u32 length (or Null) then the bytes.</summary>
    String,
    /// <summary>An array of strings: u32 count (or Null) then each string.</summary>
    StringArray,
    /// <summary>Not sent (pAllocator: host allocation callbacks cannot cross a VM boundary).</summary>
    Skip,
}

public enum ElemKind : byte { Pod, Handle, Struct }

public enum LenMode : byte
{
    /// <summary>One element.</summary>
    None,
    /// <summary>The count is a member (or parameter) at LenOffset.</summary>
    Field,
    /// <summary>The count is behind a pointer parameter at LenOffset (the two-call idiom's pCount).</summary>
    Deref,
    /// <summary>The count is a member at LenMember inside the struct that the parameter at LenOffset points to.</summary>
    Member,
    /// <summary>pSampleMask: (rasterizationSamples + 31) / 32 words.</summary>
    SampleMask,
}

[Flags]
public enum FieldFlags : byte
{
    None = 0,
    Optional = 1,
    /// <summary>The host writes it; the request carries only its shape.</summary>
    Out = 2,
    /// <summary>Sent in the request and returned in the reply (pCount of the two-call idiom).</summary>
    InOut = 4,
    /// <summary>Handles this command creates: the guest picks their ids.</summary>
    Create = 8,
    /// <summary>Handles this command destroys: the host drops them from the session's table after the call.</summary>
    Destroy = 16,
    /// <summary>Only meaningful for some values of a sibling member; see <see cref="Selectors"/>.</summary>
    Selected = 32,
    /// <summary>An array of handles whose elements may be VK_NULL_HANDLE; without it a NULL element is refused.</summary>
    NullElements = 64,
    /// <summary>An array whose elements lie <c>stride</c> bytes apart in the caller's memory (registry
    /// <c>stride=</c>); <see cref="FieldDesc.LenMember"/> is the stride parameter's offset. The wire carries the
    /// elements packed, and the decoder sets the stride to the element size, so the guest's stride never
    /// reaches the driver.</summary>
    Strided = 128,
}

/// <param name="Type">The element's type or enum index; for a pNext field, the type that owns the chain.</param>
public readonly record struct FieldDesc(
    FieldKind Kind, ElemKind Elem, LenMode Len, FieldFlags Flags,
    int Offset, int Size, int Count, int Type, int LenOffset, byte LenSize, int LenMember, string Name)
{
    public bool IsOut => (Flags & (FieldFlags.Out | FieldFlags.InOut)) != 0;
}

/// <summary>A struct, or a command's parameter list laid out as 8-byte argument slots.</summary>
/// <param name="Features">The core versions (VK_VERSION_1_1) and extensions that bring the type in, comma-separated;
/// a pNext struct of a device's command needs one of them there.</param>
public readonly record struct TypeDesc(string Name, int Size, int SType, bool Pod, bool CanIn, bool CanOut, int FirstField, int FieldCount, string Features);

public enum CommandLevel : byte { Global, Instance, PhysicalDevice, Device }

public enum ReturnKind : byte { Void, VkResult, U32, U64, Other }

public enum Carry : byte
{
    /// <summary>Not carried: the ICD does not expose it.</summary>
    None,
    /// <summary>Encoded, decoded and executed from the generated tables.</summary>
    Generic,
    /// <summary>Hand-written guest-side semantics (local answers, handle objects, post-processing).</summary>
    HandWritten,
}

/// <param name="OnWire">The command travels as itself (its parameters are fully described); false for
/// hand-written commands the guest answers locally or with other messages (vkMapMemory, vkGetInstanceProcAddr).</param>
public readonly record struct CommandDesc(string Name, uint Id, CommandLevel Level, ReturnKind Return, Carry Carry,
    int Params, int ParamCount, bool WantsReply, string Feature, bool OnWire);

public readonly record struct ExtensionDesc(string Name, uint SpecVersion, bool Device, bool Carried);
