global using Xunit;
global using Xunit.Abstractions;

// One guest at a time: TCG on two cores is slow enough without two of them racing.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
