#!/usr/bin/env bash
# A bounded AFL++ run of the harness (tests/fuzz/README.md). Prints one result line in the form
# scripts/test.sh adds up ("Failed: N, Passed: N, Skipped: N") and exits non-zero on a crash or hang.
#   --seconds N       how long AFL fuzzes (default 60)
#   --target T        session (default: hostsim Session on the real driver) or decode (the decoder alone)
#   --out DIR         where AFL keeps its queue and findings (default out/fuzz-runs/TARGET)
#   --skip REASON     report the run as skipped with REASON and do nothing else
# Deterministic as far as AFL allows: fixed seed (-s 1), the committed corpus as the start, and no
# dictionary randomness; the exec count within N seconds still depends on the machine's load.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
seconds=60; target=session; outdir=""; skip=""
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    --out) outdir=$2; shift 2 ;;
    --skip) skip=$2; shift 2 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
name="fuzz $target ${seconds}s"
result() { # failed passed skipped why
  echo "$name: $5"
  echo "$name: Failed: $1, Passed: $2, Skipped: $3, Total: 1"
}
if [ -n "$skip" ]; then result 0 0 1 "" "skipped: $skip"; exit 0; fi
for tool in afl-fuzz dotnet; do
  command -v $tool >/dev/null || { result 0 0 1 "" "skipped: $tool is not installed (scripts/setup.sh installs it)"; exit 0; }
done
out=${GUESTICD_OUT:-out}
outdir=${outdir:-$out/fuzz-runs/$target}
if ! bash tests/fuzz/build.sh >"$out/fuzz-build.log" 2>&1; then
  cat "$out/fuzz-build.log"; result 1 0 0 "" "failed: the harness did not build"; exit 1
fi
seeds=$outdir.seeds
rm -rf "$outdir" "$seeds"
mkdir -p "$(dirname "$outdir")"
dotnet "$out/fuzz/guesticd-fuzz.dll" seed tests/fuzz/corpus "$seeds"
dotnet "$out/fuzz/guesticd-fuzz.dll" dict "$outdir.dict"
# afl-fuzz wants these on a machine it does not own: no CPU governor, no pinning, no core_pattern change.
export AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_BIN_CHECK=1
export AFL_NO_UI=1
export AFL_FORKSRV_INIT_TMOUT=60000 AFL_SHUFFLE_QUEUE=0
# The host driver (lavapipe) runs a session per input: slow next to a parser, hence the generous timeout.
timeout $((seconds + 120)) afl-fuzz -i "$seeds" -o "$outdir" -x "$outdir.dict" -s 1 -t 5000 -m none -V "$seconds" \
  -- dotnet "$out/fuzz/guesticd-fuzz.dll" "$target" >"$outdir.log" 2>&1
rc=$?
stats=$outdir/default/fuzzer_stats
if [ ! -f "$stats" ]; then
  tail -30 "$outdir.log"; result 1 0 0 "" "failed: afl-fuzz did not run (exit $rc)"; exit 1
fi
if [ "$rc" -ne 0 ]; then
  tail -30 "$outdir.log"; result 1 0 0 "" "failed: afl-fuzz stopped early (exit $rc)"; exit 1
fi
get() { sed -nE "s/^$1 +: *//p" "$stats"; }
crashes=$(ls "$outdir/default/crashes" 2>/dev/null | grep -vc README)
hangs=$(ls "$outdir/default/hangs" 2>/dev/null | grep -vc README)
summary="$(get execs_done) inputs, $(get corpus_count) in the queue, map density $(get bitmap_cvg), $(get edges_found) edges, $crashes crashes, $hangs hangs"
if [ "$crashes" -gt 0 ] || [ "$hangs" -gt 0 ]; then
  result 1 0 0 "" "failed: $summary (inputs under $outdir/default/crashes and hangs; replay one with guesticd-fuzz run FILE)"
  exit 1
fi
result 0 1 0 "" "passed: $summary"
