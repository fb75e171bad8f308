namespace GuestIcd.Protocol.Wire;

/// <summary>The peer sent bytes that break the wire rules. On the host this ends that guest's session only.</summary>
public sealed class ProtocolException(string message) : Exception(message);
