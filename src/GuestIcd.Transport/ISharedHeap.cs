namespace GuestIcd.Transport;

/// <summary>A transport whose two ends map the same memory beyond the command stream: HOST_VISIBLE
/// allocations live there, so the guest's mapping and the host driver's memory are the same pages
/// (zero copy). Transports without shared memory (TCP) do not implement it.</summary>
public unsafe interface ISharedHeap
{
    /// <summary>Start of the heap in this process; null when the connection has none.</summary>
    byte* HeapBase { get; }

    long HeapBytes { get; }
}
