#!/usr/bin/env bash
# Scale: one hostsim serving 1, 4, 16 guest processes that run bench.c's submit benchmark at the same time,
# against the same number of native processes on the host driver. Not a test; prints one table.
#
#   bash tests/bench/scale.sh [COUNTS="1 4 16"]
#
# Per count and side: aggregate submits/s (the sum of the processes' medians), per-guest latency (the median over
# processes of 1/submits/s: one submit of BENCH_SUBMIT_DISPATCHES dispatches plus its share of the wait), and for
# the ICD hostsim's CPU per guest (its own and its workers' CPU time from /proc over the phase and the second after
# it, divided by N: the sessions' work and the worker starts that refill the pool the phase drained; as a share of
# the phase's wall time it read over 200 % for N=1, a short phase beside one worker's start) and memory per session (the mean over session workers of their peak PSS and RSS,
# sampled every 0.2 s). Uses the build in out/ like run.sh.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
counts="${1:-1 4 16}"
group_timeout="${BENCH_GROUP_TIMEOUT_S:-300}"
export BENCH_SUBMITS="${BENCH_SUBMITS:-20}" BENCH_SUBMITS_REPS="${BENCH_SUBMITS_REPS:-5}" BENCH_SUBMIT_DISPATCHES="${BENCH_SUBMIT_DISPATCHES:-100}"
bench_setup scale gcc glslc timeout awk
sampler_pid=""
cleanup() { [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null; bench_stop_hostsim; }
trap cleanup EXIT
gcc -O2 -std=c11 -Wall -pthread -o "$work/bench" "$here/bench.c" -lvulkan -lm || { echo "scale: build failed"; exit 2; }
glslc "$here/fma.comp" -o "$work/fma.comp.spv" && glslc "$here/noop.vert" -o "$work/noop.vert.spv" || exit 2

bench_start_hostsim
unset VK_ICD_FILENAMES VK_ADD_DRIVER_FILES VK_INSTANCE_LAYERS VK_LOADER_LAYERS_ENABLE VK_LOADER_DEBUG
hz=$(getconf CLK_TCK)

# CPU ticks of hostsim, its live children, and the children it has reaped.
cpu_ticks() {
  local total=0 p
  total=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$hostsim_pid/stat" 2>/dev/null || echo 0)
  for p in $(pgrep -P "$hostsim_pid"); do
    total=$((total + $(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

# Samples every session worker's PSS and RSS (kB) while a phase runs: lines "pid pss rss".
sample_memory() {
  while :; do
    for p in $(pgrep -P "$hostsim_pid"); do
      awk -v p="$p" '/^Pss:/{ pss = $2 } /^Rss:/{ rss = $2 } END { if (rss) print p, pss, rss }' "/proc/$p/smaps_rollup" 2>/dev/null
    done
    sleep 0.2
  done
}

# phase SIDE N: N processes of the submits group at once; prints "aggregate latency_ms cpu_per_guest pss_mb rss_mb".
phase() {
  local side="$1" n="$2" i pids=() t0 t1 c0 c1
  rm -f "$work/$side.$n".*.out "$work/mem.$n"
  if [ "$side" = icd ]; then c0=$(cpu_ticks); sample_memory > "$work/mem.$n" & sampler_pid=$!; fi
  t0=$(date +%s.%N)
  for i in $(seq "$n"); do
    if [ "$side" = native ]; then
      VK_DRIVER_FILES="$native_manifest" timeout -k 5 "$group_timeout" "$work/bench" submits "$work" > "$work/$side.$n.$i.out" 2>&1 &
    else
      VK_DRIVER_FILES="$icd_manifest" GUESTICD_TRANSPORT="unix:$sock" timeout -k 5 "$group_timeout" "$work/bench" submits "$work" > "$work/$side.$n.$i.out" 2>&1 &
    fi
    pids+=($!)
  done
  wait "${pids[@]}"
  t1=$(date +%s.%N)
  local cpu="-" pss="-" rss="-"
  if [ "$side" = icd ]; then
    sleep 1 # the workers of ended sessions are reaped into hostsim's children's time
    kill "$sampler_pid" 2>/dev/null; wait "$sampler_pid" 2>/dev/null; sampler_pid=""
    c1=$(cpu_ticks)
    cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" -v n="$n" 'BEGIN { printf "%.0f", 1000 * (b - a) / hz / n }')
    read -r pss rss < <(awk '{ if ($2 > p[$1]) p[$1] = $2; if ($3 > r[$1]) r[$1] = $3 } END { for (k in p) { sp += p[k]; sr += r[k]; c++ } if (c) printf "%.1f %.1f\n", sp / c / 1024, sr / c / 1024; else print "- -" }' "$work/mem.$n")
  fi
  cat "$work/$side.$n".*.out | awk -F'\t' -v n="$n" -v cpu="$cpu" -v pss="$pss" -v rss="$rss" '
    $1 == "metric" && $2 == "submits_per_s" && $4 != "n/a" { v[++k] = $4 + 0; sum += $4 }
    END {
      for (a = 2; a <= k; a++) { x = v[a]; for (b = a - 1; b >= 1 && v[b] > x; b--) v[b + 1] = v[b]; v[b + 1] = x }
      med = k ? ((k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2) : 0
      printf "%s\t%s\t%s\t%s\t%s\t%s\n", (k ? sprintf("%.1f", sum) : "n/a"), (k ? sprintf("%.2f", 1000 / med) : "n/a"), k "/" n, cpu, pss, rss
    }'
}

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
: > "$work/table"
for n in $counts; do
  echo "scale: $n process(es), native ..." >&2; native=$(phase native "$n")
  echo "scale: $n process(es), through the ICD ..." >&2; icd=$(phase icd "$n")
  printf '%s\t%s\t%s\n' "$n" "$native" "$icd" >> "$work/table"
done
cleanup; trap - EXIT

echo
echo "Scale — bench submits ($BENCH_SUBMITS submits of $BENCH_SUBMIT_DISPATCHES dispatches, median of $BENCH_SUBMITS_REPS) in N processes at once; one hostsim"
echo "$(nproc) CPU cores, load average $load_before before / $(cut -d' ' -f1-3 /proc/loadavg) after"
awk -F'\t' 'BEGIN {
    printf "%-3s | %-18s | %-15s | %-5s | %-17s | %-14s | %-9s | %-24s | %s\n", "N", "native submits/s", "ICD submits/s", "ratio", "native latency ms", "ICD latency ms", "measured", "hostsim CPU ms per guest", "memory per session: PSS / RSS (MiB)"
  }
  {
    ratio = ($2 != "n/a" && $8 != "n/a" && $2 > 0) ? sprintf("%.2f", $8 / $2) : "-"
    printf "%-3s | %-18s | %-15s | %-5s | %-17s | %-14s | %-9s | %-24s | %s / %s\n", $1, $2, $8, ratio, $3, $9, $4 " " $10, $11, $12, $13
  }' "$work/table"
if grep -qi -E "protocol error|unhandled|exception" "$work/hostsim.log" || [ "${BENCH_KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
