namespace GuestIcd.Generator;

sealed class EmitCommands(Registry reg, CSharpTypes cs)
{
    public IEnumerable<(string, string)> All() { _ = reg; _ = cs; yield break; }
}
