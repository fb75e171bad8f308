#!/usr/bin/env bash
# GuestIcd benchmark: native lavapipe vs the same program through the ICD + hostsim, side by side.
# Not a test: it never fails on a missed target; it prints one table. See tests/bench/README.md.
#
# Uses the existing build in out/ (it never builds or rewrites out/). Builds bench.c and the shaders into a
# temporary folder, starts hostsim on a private socket, runs every metric group once natively and once
# through the ICD (each group in its own process, so a crash costs only that group's metrics), stops
# hostsim and prints: metric | native | through ICD | ratio ICD/native | target | met?
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
group_timeout="${BENCH_GROUP_TIMEOUT_S:-120}"
bench_setup bench gcc glslc timeout awk

# ---- build
gcc -O2 -std=c11 -Wall -pthread -o "$work/bench" "$here/bench.c" -lvulkan -lm || { echo "bench: build failed"; exit 2; }
glslc "$here/fma.comp" -o "$work/fma.comp.spv" && glslc "$here/noop.vert" -o "$work/noop.vert.spv" || { echo "bench: shader build failed"; exit 2; }
"$work/bench" --list > "$work/metrics.tsv"
gcc -O2 -std=c11 -Wall -o "$work/pingpong" "$here/pingpong.c" || { echo "bench: pingpong build failed"; exit 2; }

# ---- hostsim on a private socket
bench_start_hostsim

# The loader must see exactly one driver and no layers in both runs.
unset VK_ICD_FILENAMES VK_ADD_DRIVER_FILES VK_INSTANCE_LAYERS VK_LOADER_LAYERS_ENABLE VK_LOADER_DEBUG

# run_group WHICH GROUP: appends the group's metric lines to $work/WHICH.tsv; a metric the process did not
# print (crash, timeout) becomes "n/a (why)".
run_group() {
  local which="$1" group="$2" rc
  local out="$work/$which.$group.$round.out" err="$work/$which.$group.$round.err"
  if [ "$which" = native ]; then
    VK_DRIVER_FILES="$native_manifest" timeout -k 5 "$group_timeout" "$work/bench" "$group" "$work" > "$out" 2> "$err"
    rc=$?
  elif [ "$hostsim_up" = 1 ] && kill -0 "$hostsim_pid" 2>/dev/null; then
    VK_DRIVER_FILES="$icd_manifest" GUESTICD_TRANSPORT="unix:$sock" timeout -k 5 "$group_timeout" "$work/bench" "$group" "$work" > "$out" 2> "$err"
    rc=$?
  else
    : > "$out"; echo "hostsim is not running (see $work/hostsim.log)" > "$err"; rc=255
  fi
  local why
  case $rc in
    0) why="the program printed no line for it" ;;
    124|137) why="timed out after ${group_timeout}s" ;;
    255) why="hostsim is not running" ;;
    *) if [ "$rc" -gt 128 ]; then why="bench killed by signal $((rc - 128))"; else why="bench exited with status $rc"; fi ;;
  esac
  grep $'^metric\t' "$out" >> "$work/$which.tsv"
  awk -F'\t' -v g="$group" '$2 == g { print $3 "\t" $4 }' "$work/metrics.tsv" | while IFS=$'\t' read -r name unit; do
    grep -q $'^metric\t'"$name"$'\t' "$out" || printf 'metric\t%s\t%s\tn/a\t%s\n' "$name" "$unit" "$why" >> "$work/$which.tsv"
  done
}

: > "$work/native.tsv"; : > "$work/icd.tsv"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s)
rounds="${BENCH_ROUNDS:-3}"
for round in $(seq "$rounds"); do
  for group in $("$work/bench" --groups); do
    echo "bench: round $round/$rounds: $group ..." >&2
    run_group native "$group"
    run_group icd "$group"
  done
done
elapsed=$(( $(date +%s) - start ))
bench_stop_hostsim; trap - EXIT

# ---- the table
echo
echo "GuestIcd benchmark — native: $native_manifest; through ICD: $icd_manifest + hostsim ($(grep -o 'serving .*' "$work/hostsim.log" | head -1 | sed 's/^serving //'))"
echo "each cell: median over $rounds rounds (native and ICD alternating per group) of each round's median after warm-up; $(nproc) CPU cores, load average $load_before before / $(cut -d' ' -f1-3 /proc/loadavg) after; groups took ${elapsed}s"
awk -F'\t' '
  function fmt(v) {
    if (v == "n/a") return v
    v += 0
    if (v >= 1000) return sprintf("%.0f", v)
    if (v >= 100) return sprintf("%.1f", v)
    if (v >= 10) return sprintf("%.2f", v)
    if (v >= 1) return sprintf("%.3f", v)
    return sprintf("%.3g", v)
  }
  function cell(file, name) {
    if (val[file, name] == "n/a") return "n/a (" why[file, name] ")"
    return fmt(val[file, name]) (((file, name) in partial) ? " (" partial[file, name] " of " rounds " rounds; other: " why[file, name] ")" : "")
  }
  FILENAME ~ /metrics.tsv$/ { names[++n] = $3; unit[$3] = $4; better[$3] = $5; target[$3] = $6; label[$3] = $7; next }
  {
    f = (FILENAME ~ /native.tsv$/) ? "native" : "icd"
    if ($4 == "n/a") { if (!((f, $2) in why)) why[f, $2] = $5; next }
    k = ++cnt[f, $2]; v[f, $2, k] = $4 + 0
  }
  END {
    # per side and metric: the median of the rounds that measured it; n/a (first reason) when none did
    for (i = 1; i <= n; i++) for (s = 0; s < 2; s++) {
      f = s ? "icd" : "native"; m = names[i]; k = cnt[f, m] + 0
      if (k == 0) { val[f, m] = "n/a"; if (!((f, m) in why)) why[f, m] = "no result"; continue }
      for (a = 1; a <= k; a++) tmp[a] = v[f, m, a]
      for (a = 2; a <= k; a++) { x = tmp[a]; for (b = a - 1; b >= 1 && tmp[b] > x; b--) tmp[b + 1] = tmp[b]; tmp[b + 1] = x }
      val[f, m] = (k % 2) ? tmp[(k + 1) / 2] : (tmp[k / 2] + tmp[k / 2 + 1]) / 2
      if (k < rounds) partial[f, m] = k
    }
    rows = 0
    for (i = 1; i <= n; i++) {
      m = names[i]; r = ""; met = "-"
      a = val["native", m]; b = val["icd", m]
      if (a != "" && b != "" && a != "n/a" && b != "n/a" && a + 0 > 0) {
        ratio = (b + 0) / (a + 0); r = sprintf("%.2f", ratio)
        if (target[m] != "-") {
          t = substr(target[m], 3) + 0
          ok = (substr(target[m], 1, 2) == "<=") ? (ratio <= t) : (ratio >= t)
          met = ok ? "yes" : "NO"
        }
      } else if (target[m] != "-") met = "n/a"
      if (r == "") r = "-"
      tgt = target[m] == "-" ? "-" : (substr(target[m], 1, 2) == "<=" ? "<= " : ">= ") sprintf("%.2f", substr(target[m], 3) + 0) "x"
      rows++
      c1[rows] = label[m] " (" unit[m] ")"; c2[rows] = cell("native", m); c3[rows] = cell("icd", m); c4[rows] = r; c5[rows] = tgt; c6[rows] = met
    }
    h1 = "metric"; h2 = "native"; h3 = "through ICD"; h4 = "ratio ICD/native"; h5 = "target"; h6 = "met?"
    w1 = length(h1); w2 = length(h2); w3 = length(h3); w4 = length(h4); w5 = length(h5); w6 = length(h6)
    for (i = 1; i <= rows; i++) {
      if (length(c1[i]) > w1) w1 = length(c1[i]); if (length(c2[i]) > w2) w2 = length(c2[i]); if (length(c3[i]) > w3) w3 = length(c3[i])
      if (length(c4[i]) > w4) w4 = length(c4[i]); if (length(c5[i]) > w5) w5 = length(c5[i]); if (length(c6[i]) > w6) w6 = length(c6[i])
    }
    fmtl = "%-" w1 "s | %" w2 "s | %" w3 "s | %" w4 "s | %-" w5 "s | %s\n"
    printf fmtl, h1, h2, h3, h4, h5, h6
    line = ""; for (j = 0; j < w1 + w2 + w3 + w4 + w5 + w6 + 15; j++) line = line "-"; print line
    for (i = 1; i <= rows; i++) printf fmtl, c1[i], c2[i], c3[i], c4[i], c5[i], c6[i]
  }' rounds="$rounds" "$work/metrics.tsv" "$work/native.tsv" "$work/icd.tsv"

# ---- the machine's floor for a round trip, next to the ICD's (vkQueueWaitIdle on an idle queue above)
timeout -k 5 120 "$work/pingpong" "${BENCH_PINGPONG_ROUNDTRIPS:-20000}" 9 > "$work/pingpong.tsv" 2>&1
echo
echo "round-trip floor on this machine, two processes on shared memory (pingpong.c, µs per round trip, median of 9):"
awk -F'\t' '$1 == "pingpong" { printf "  %-11s %s%s\n", $2, $4, ($4 == "n/a" ? " (" $5 ")" : "") }' "$work/pingpong.tsv"
awk -F'\t' '$2 == "queue_wait_idle_us" && $4 != "n/a" { v[++k] = $4 } END { if (k) { for (a = 2; a <= k; a++) { x = v[a]; for (b = a - 1; b >= 1 && v[b] > x; b--) v[b + 1] = v[b]; v[b + 1] = x }; printf "  %-11s %s (the ICD: vkQueueWaitIdle, one empty round trip through hostsim)\n", "ICD", (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2 } }' "$work/icd.tsv"

# ---- what went wrong, if anything
problems=0
if grep -qi -E "protocol error|unhandled|exception|fail" "$work/hostsim.log"; then
  echo; echo "hostsim reported:"; grep -i -E "protocol error|unhandled|exception|fail" "$work/hostsim.log" | head -20; problems=1
fi
if grep -q $'\tn/a\t' "$work/native.tsv" "$work/icd.tsv"; then problems=1; fi
if [ "$hostsim_up" != 1 ]; then echo; echo "hostsim did not start:"; tail -5 "$work/hostsim.log"; problems=1; fi
if [ "$problems" = 1 ] || [ "${BENCH_KEEP:-0}" = 1 ]; then
  echo; echo "logs and raw results kept in $work (hostsim.log, {native,icd}.GROUP.ROUND.{out,err}, {native,icd}.tsv)"
else
  rm -rf "$work"
fi
exit 0
