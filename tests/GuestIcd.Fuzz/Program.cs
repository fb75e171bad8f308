using GuestIcd.Fuzz;
using GuestIcd.HostSim;
using GuestIcd.Protocol;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using SharpFuzz;

// guesticd-fuzz: the coverage-guided harness (tests/fuzz/README.md says how it is run).
//   session            AFL target: one hostsim Session per input on the real host driver (out of process,
//                      so a crash inside the driver is reported as a crash and the server goes on)
//   decode             AFL target: the decoder alone; any exception but a protocol error is a crash
//   run FILE...        each input once, without AFL, with hostsim's log: how its session ended
//                      (GUESTICD_FUZZ_TRACE=1: each message on stderr as it is read)
//   emit INPUT OUT     the guest byte stream an input stands for (a bare stream `replay` and the tests can send)
//   seed CAPTURES OUT  fuzzer inputs from captured sessions, plus a few structured programs
//   dict OUT           an AFL dictionary: command ids, private message ids, sTypes
var verb = args.Length > 0 ? args[0] : "";
// Instrumented code records each branch in AFL's map; outside afl-fuzz that map must still exist.
if (verb is not ("session" or "decode")) unsafe { SharpFuzz.Common.Trace.SharedMem = (byte*)System.Runtime.InteropServices.NativeMemory.AllocZeroed(1 << 16); }
switch (verb)
{
    case "session":
        Fuzzer.OutOfProcess.Run(stream => Targets.Session(ReadAll(stream), NullLogger.Instance));
        return 0;
    case "decode":
        Fuzzer.OutOfProcess.Run(stream => Targets.Decode(ReadAll(stream)));
        return 0;
    case "run" when args.Length > 1:
    {
        using var logs = LoggerFactory.Create(b => b.AddSimpleConsole(o => { o.SingleLine = true; o.IncludeScopes = false; }).SetMinimumLevel(LogLevel.Information));
        int failed = 0;
        foreach (var f in args.Skip(1))
        {
            try { Console.WriteLine($"{f}: {Targets.Session(File.ReadAllBytes(f), logs.CreateLogger("hostsim"), trace: Environment.GetEnvironmentVariable("GUESTICD_FUZZ_TRACE") == "1")}"); }
            catch (InternalErrorException e) { failed++; Console.WriteLine($"{f}: CRASH {e.Message}"); }
        }
        return failed == 0 ? 0 : 1;
    }
    case "emit" when args.Length == 3:
        File.WriteAllBytes(args[2], Inputs.ToStream(File.ReadAllBytes(args[1])).Stream.ToArray());
        return 0;
    case "seed" when args.Length == 3:
    {
        Directory.CreateDirectory(args[2]);
        foreach (var f in Directory.GetFiles(args[1], "*.gicd").Order())
            foreach (var (suffix, input) in Inputs.FromCapture(File.ReadAllBytes(f)))
                File.WriteAllBytes(Path.Combine(args[2], $"{Path.GetFileNameWithoutExtension(f)}.{suffix}"), input);
        // Structured seeds: fixed pseudo-random programs, the same on every run.
        var rng = new Random(7);
        for (int i = 0; i < 8; i++)
        {
            var p = new byte[64 << (i % 4)];
            rng.NextBytes(p);
            p[0] = Inputs.Structured;
            File.WriteAllBytes(Path.Combine(args[2], $"program-{i}"), p);
        }
        return 0;
    }
    case "dict" when args.Length == 2:
    {
        using var w = new StreamWriter(args[1]);
        static string Hex(uint v) => string.Concat(BitConverter.GetBytes(v).Select(b => $"\\x{b:X2}"));
        foreach (var c in Tables.Commands.Where(c => c.OnWire)) w.WriteLine($"{c.Name}=\"{Hex(c.Id)}\"");
        foreach (var (n, id) in new[] { ("AllocateSharedMemory", PrivateCommands.AllocateSharedMemory), ("WriteMemory", PrivateCommands.WriteMemory), ("ReadMemory", PrivateCommands.ReadMemory) })
            w.WriteLine($"{n}=\"{Hex(id)}\"");
        foreach (var t in Tables.Types.Where(t => t.SType > 0).DistinctBy(t => t.SType)) w.WriteLine($"{t.Name}=\"{Hex((uint)t.SType)}\"");
        w.WriteLine($"null_count=\"{Hex(0xFFFFFFFF)}\"");
        return 0;
    }
    default:
        Console.Error.WriteLine("usage: guesticd-fuzz session|decode|run FILE...|emit INPUT OUT|seed CAPTURES OUT|dict OUT");
        return 2;
}

static byte[] ReadAll(Stream s)
{
    using var m = new MemoryStream();
    s.CopyTo(m);
    return m.ToArray();
}
