#!/usr/bin/env python3
"""Shrinks a crashing fuzzer input to the guest stream of the fewest messages that still crash the same
way (same signal, same command executing when it died), and writes it as a bare stream (hello first)
that `guesticd-hostsim replay`, `guesticd-fuzz run` and the regression tests can send.

Message-level rather than afl-tmin's byte-level: every crashing try costs afl-tmin a restart of the .NET
child (about a second and a half here), which makes byte-level minimising of a 5 KB stream take hours;
dropping whole messages keeps the stream well-formed and needs a few dozen tries.

usage: minimize.py INPUT OUT [--tries N]"""
import os
import re
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.environ.get("GUESTICD_OUT", "out")
FUZZ = [ "dotnet", os.path.join(ROOT, OUT, "fuzz", "guesticd-fuzz.dll") ]


def run(stream):
    """(signal or None, name of the last message read) for a bare stream."""
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(b"\0" + stream)
        path = f.name
    try:
        env = dict(os.environ, GUESTICD_FUZZ_TRACE="1")
        p = subprocess.run(FUZZ + ["run", path], capture_output=True, env=env, timeout=60)
        names = re.findall(rb"fuzz: message (\S+)", p.stderr)
        last = names[-1].decode() if names else "-"
        sig = -p.returncode if p.returncode < 0 else (p.returncode - 128 if p.returncode > 128 else None)
        if sig is None and b"CRASH internal error" in p.stdout:
            sig = "managed"
        return sig, last, len(names)
    except subprocess.TimeoutExpired:
        return "hang", "-", 0
    finally:
        os.unlink(path)


def messages(stream):
    out, at = [], 0
    while at + 12 <= len(stream):
        n = struct.unpack_from("<I", stream, at + 8)[0]
        total = ((12 + n + 7) & ~7)
        out.append(stream[at:at + total])
        at += total
    if at < len(stream):
        out.append(stream[at:])
    return out


def main():
    src, dst = sys.argv[1], sys.argv[2]
    tries = int(sys.argv[sys.argv.index("--tries") + 1]) if "--tries" in sys.argv else 60
    with tempfile.NamedTemporaryFile(delete=False) as f:
        bare = f.name
    subprocess.run(FUZZ + ["emit", src, bare], check=True, capture_output=True)
    stream = open(bare, "rb").read()
    os.unlink(bare)
    sig, last, count = run(stream)
    if sig is None:
        print(f"{src}: does not crash on its own ({last})")
        return 1
    msgs = messages(stream)[:count]  # what follows the message that killed it never ran
    want = (sig, last)
    print(f"{src}: {sig} in {last}, {len(msgs)} messages")
    used = 1
    size = max(1, len(msgs) // 4)
    while size >= 1 and used < tries:
        i = len(msgs) - 1 - size  # never the hello (0) nor the crashing message (last)
        while i >= 1 and used < tries:
            cand = msgs[:i] + msgs[i + size:]
            used += 1
            got = run(b"".join(cand))
            if got[:2] == want and got[2] == len(cand):
                msgs = cand
            i -= size
        size //= 2
    open(dst, "wb").write(b"".join(msgs))
    print(f"{dst}: {len(msgs)} messages, {sum(map(len, msgs))} bytes ({used} tries)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
