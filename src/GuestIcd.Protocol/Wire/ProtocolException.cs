namespace GuestIcd.Protocol.Wire;

/// <summary>The peer sent bytes that break the wire rules. On the host this ends that guest's session only.</summary>
public class ProtocolException(string message) : Exception(message);

/// <summary>An id the guest once had but has since destroyed. Fatal like any protocol error, except inside a
/// command buffer's deferred recording: there the spec's answer is an invalid command buffer (the object was
/// destroyed after it was recorded), which surfaces at the submit that uses it.</summary>
public sealed class StaleObjectException(string message) : ProtocolException(message);
