#!/usr/bin/env bash
# Names the crash site of each input: the signal, the innermost frame (library + offset into its .text,
# stable for one build of the driver) and the guest command hostsim was executing; then the distinct
# sites. Needs gdb. Usage: triage.sh FILE... (crash inputs from AFL, or regression inputs)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out=${GUESTICD_OUT:-out}
for f in "$@"; do
  [ -f "$f" ] || continue
  log=$(GUESTICD_FUZZ_TRACE=1 timeout 120 gdb -q -batch -ex "handle SIGUSR1 SIGUSR2 SIG34 SIG35 SIG36 SIGPIPE nostop noprint pass" \
    -ex run -ex "bt 8" -ex "info sharedlibrary" --args dotnet "$out/fuzz/guesticd-fuzz.dll" run "$f" 2>&1)
  printf '%s' "$log" | python3 -c "$(cat <<'PY'
import re, sys
log = sys.stdin.read()
f = sys.argv[1]
last = re.findall(r'fuzz: message (\S+)', log)
last = last[-1] if last else '-'
sig = re.search(r'received signal (\w+)', log)
if not sig:
    crash = re.search(r'CRASH (.*)', log)
    print(f"{f}\t{'managed' if crash else 'none'}\t{(crash.group(1)[:100] if crash else '-')}\t{last}")
    sys.exit()
frame = re.search(r'^#0\s+(0x[0-9a-f]+) in (\S+)(?: \(\))?(?: from (\S+))?', log, re.M)
pc = int(frame.group(1), 16) if frame else 0
site = frame.group(2) if frame else '?'
lib = frame.group(3) if frame and frame.group(3) else None
if lib:
    for m in re.finditer(r'^(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+\S+\s+(?:\(\*\)\s+)?(\S+)$', log, re.M):
        if m.group(3) == lib:
            site = f"{lib.split('/')[-1]}+0x{pc - int(m.group(1), 16):x}"
            break
elif site == '??':
    site = 'unknown-code'
print(f"{f}\t{sig.group(1)}\t{site}\t{last}")
PY
)" "$f"
done
