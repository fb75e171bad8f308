using GuestIcd.SilkClient;

// An independent Vulkan application on Silk.NET.Vulkan's own bindings and the system loader: a compute
// dispatch checked element by element and an offscreen triangle render summarised by a checksum.
// Usage: dotnet GuestIcd.SilkClient.dll [ELEMENTS] [--provoke-validation]. Exit code 0 only if every step worked.
// --provoke-validation adds one deliberate misuse (an undefined fence-create flag bit the driver ignores), so a
// test can prove the validation layer is really watching when it reports nothing for the run without it.
uint count = args.Length > 0 ? uint.Parse(args[0]) : 65536;
bool provoke = args.Contains("--provoke-validation");
try
{
    using var gpu = new Gpu();
    Console.WriteLine($"device: {gpu.DeviceName}");
    Console.Out.Flush();
    if (provoke) gpu.ProvokeValidation();
    int failed = Compute.Run(gpu, count, mul: 5);
    Console.Out.Flush();
    failed |= Render.Run(gpu);
    Console.WriteLine(failed == 0 ? "done" : "FAILED");
    return failed == 0 ? 0 : 1;
}
catch (VulkanException e)
{
    Console.WriteLine(e.Message);
    return 1;
}
catch (Exception e)
{
    Console.WriteLine($"FAILED {e.GetType().Name}: {e.Message}");
    return 1;
}
