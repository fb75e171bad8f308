#!/usr/bin/env bash
# Instructions per recorded command, natively on the host driver and through the ICD, counted by
# `valgrind --tool=callgrind` on a fixed loop (callgrind_loop.c): unlike wall-clock figures they do not depend
# on the machine's load. Not a test; prints one table. See tests/bench/README.md.
#
#   bash tests/bench/callgrind.sh [COUNT=10000]
#
# Uses the build in out/ (BENCH_ICD_MANIFEST, BENCH_HOSTSIM, BENCH_NATIVE_ICD as in run.sh); hostsim runs
# outside valgrind, on a private socket, and nothing is submitted to it.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
count="${1:-10000}"
bench_setup callgrind gcc valgrind timeout awk
[ -f /usr/include/valgrind/callgrind.h ] || { echo "callgrind: valgrind/callgrind.h missing (apt-get install valgrind)"; exit 2; }
gcc -O2 -std=c11 -Wall -o "$work/loop" "$here/callgrind_loop.c" -lvulkan || { echo "callgrind: build failed"; exit 2; }

bench_start_hostsim
unset VK_ICD_FILENAMES VK_ADD_DRIVER_FILES VK_INSTANCE_LAYERS VK_LOADER_LAYERS_ENABLE VK_LOADER_DEBUG

# run WHICH: callgrind dumps of the measured loops in $work/WHICH.out.*
run() {
  local which="$1"; shift
  env "$@" timeout -k 5 "${BENCH_CALLGRIND_TIMEOUT_S:-600}" valgrind --tool=callgrind --callgrind-out-file="$work/$which.out" \
    "$work/loop" "$count" > "$work/$which.stdout" 2> "$work/$which.stderr" || echo "callgrind: the $which run failed (see $work/$which.stderr)" >&2
}
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
run native VK_DRIVER_FILES="$native_manifest"
# Valgrind 3.19 gives up on the DWARF 5 of the ICD's separate debug file (libguesticd.so.dbg, found through the
# library's debuglink): the ICD runs from a copy without it, through a manifest of our own.
icd_lib="$(sed -n 's/.*"library_path": *"\([^"]*\)".*/\1/p' "$icd_manifest")"
mkdir -p "$work/icd" && cp "$icd_lib" "$work/icd/libguesticd.so"
sed "s|$icd_lib|$work/icd/libguesticd.so|" "$icd_manifest" > "$work/icd/guesticd_icd.x86_64.json"
run icd VK_DRIVER_FILES="$work/icd/guesticd_icd.x86_64.json" GUESTICD_TRANSPORT="unix:$sock"
bench_stop_hostsim; trap - EXIT

# Each dump file: "desc: Trigger: Client Request: NAME" and "totals: IR" (or "summary:").
irs() {
  for f in "$work/$1.out".*; do
    [ -f "$f" ] || continue
    awk '/^desc: Trigger: Client Request: /{ n = $NF } /^(totals|summary): /{ t = $2 } END { if (n != "") print n "\t" t }' "$f"
  done
}
irs native > "$work/native.tsv"; irs icd > "$work/icd.tsv"
echo "Instructions per recorded command (callgrind Ir of $count calls / $count: the loop, the loader's trampoline, the driver)"
echo "native: $native_manifest; through ICD: $icd_manifest; load average $load_before (instruction counts do not depend on it)"
awk -F'\t' -v count="$count" '
  FILENAME ~ /native.tsv$/ { nat[$1] = $2 / count; next }
  { icd[$1] = $2 / count }
  END {
    split("vkCmdDispatch vkCmdDraw vkCmdBindDescriptorSets vkCmdPushConstants vkCmdPipelineBarrier", k, " ")
    printf "%-26s | %12s | %12s | %s\n", "command", "native Ir", "ICD Ir", "ratio ICD/native"
    print "---------------------------+--------------+--------------+-----------------"
    for (i = 1; i <= 5; i++) {
      a = (k[i] in nat) ? sprintf("%.1f", nat[k[i]]) : "n/a"; b = (k[i] in icd) ? sprintf("%.1f", icd[k[i]]) : "n/a"
      r = ((k[i] in nat) && (k[i] in icd) && nat[k[i]] > 0) ? sprintf("%.2f", icd[k[i]] / nat[k[i]]) : "-"
      printf "%-26s | %12s | %12s | %s\n", k[i], a, b, r
    }
  }' "$work/native.tsv" "$work/icd.tsv"
if [ "${BENCH_KEEP:-0}" = 1 ] || ! [ -s "$work/native.tsv" ] || ! [ -s "$work/icd.tsv" ]; then echo "kept $work"; else rm -rf "$work"; fi
