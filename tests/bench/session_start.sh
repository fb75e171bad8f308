#!/usr/bin/env bash
# Session start cost with isolation (one worker process per session, the default) and without
# (serve --in-process): vkCreateInstance through the ICD (connect → handshake → hello → worker takes over
# → instance created), then vkCreateDevice, and hostsim's own figures for worker start and hand-over.
# Not a test: prints figures side by side, asserts nothing. Uses the build in out/.
# Environment: BENCH_ITERATIONS (20), BENCH_PAUSE_MS (300: lets the warm pool refill between sessions),
# BENCH_MODES (isolated isolated_b2b inprocess; add noreplay for workers that skip the warm-up replays,
# GUESTICD_WORKER_NO_REPLAY=1, to see what the replays buy).
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
icd_manifest="${BENCH_ICD_MANIFEST:-$root/out/icd/guesticd_icd.x86_64.json}"
hostsim="${BENCH_HOSTSIM:-$root/out/hostsim/guesticd-hostsim}"
iterations="${BENCH_ITERATIONS:-20}"
pause="${BENCH_PAUSE_MS:-300}"
work="$(mktemp -d "${TMPDIR:-/tmp}/guesticd-session-bench.XXXXXX")"
gcc -O2 -std=c11 -Wall -o "$work/session_start" "$here/session_start.c" -lvulkan || { echo "bench: build failed"; exit 2; }
unset VK_ICD_FILENAMES VK_ADD_DRIVER_FILES VK_INSTANCE_LAYERS VK_LOADER_LAYERS_ENABLE VK_LOADER_DEBUG

# stats FILE COLUMN: median min max of a tab-separated column
stats() { awk -F'\t' -v c="$2" '$1=="iteration"{print $c}' "$1" | sort -n | awk '{a[NR]=$1} END{if(NR==0){print "n/a";exit} printf "%.2f (min %.2f, max %.2f)", a[int((NR+1)/2)], a[1], a[NR]}'; }
logstat() { grep -o "$2 [0-9.]* ms" "$1" | awk '{print $(NF-1)}' | sort -n | awk '{a[NR]=$1} END{if(NR==0){print "n/a";exit} printf "%.1f (min %.1f, max %.1f)", a[int((NR+1)/2)], a[1], a[NR]}'; }

run_mode() { # run_mode NAME PAUSE_MS [hostsim args...]
  local name="$1" p="$2"; shift 2
  local sock="$work/$name.sock"
  "$hostsim" serve --listen "unix:$sock" --log-level Debug "$@" > "$work/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 300); do grep -q "listening on" "$work/$name.log" && break; sleep 0.1; done
  # Start with the warm pool full and warmed up (two workers; in-process has none to wait for).
  for _ in $(seq 300); do [ "$(grep -c "warmed up in" "$work/$name.log")" -ge 2 ] && break; case " $* " in *" --in-process "*) break ;; esac; sleep 0.1; done
  sleep 0.5
  VK_DRIVER_FILES="$icd_manifest" GUESTICD_TRANSPORT="unix:$sock" VK_LOADER_LAYERS_DISABLE='*' \
    timeout 300 "$work/session_start" "$iterations" "$p" > "$work/$name.tsv" 2> "$work/$name.err"
  if [ "$name" = isolated ] || [ "$name" = noreplay ]; then
    for w in $(pgrep -P "$pid"); do grep -E "VmRSS" "/proc/$w/status" 2>/dev/null | awk '{print $2}'; done | sort -n | head -1 > "$work/$name.rss"
  fi
  kill "$pid"; wait "$pid" 2>/dev/null
}
modes="${BENCH_MODES:-isolated isolated_b2b inprocess}"
for m in $modes; do
  case $m in
    isolated) run_mode isolated "$pause" ;;
    isolated_b2b) run_mode isolated_b2b 0 ;;
    inprocess) run_mode inprocess "$pause" --in-process ;;
    # Workers that only load the driver, without replaying recorded sessions (what the replays buy).
    noreplay) GUESTICD_WORKER_NO_REPLAY=1 run_mode noreplay "$pause" ;;
  esac
done

printf '%-52s | %-32s | %-32s\n' "metric (ms, median of $iterations)" "isolation (worker per session)" "in-process (--in-process)"
printf '%-52s | %-32s | %-32s\n' "vkCreateInstance, sessions ${pause} ms apart" "$(stats "$work/isolated.tsv" 4)" "$(stats "$work/inprocess.tsv" 4)"
[ -f "$work/noreplay.tsv" ] && printf '%-52s | %-32s | %-32s\n' "vkCreateInstance, workers without warm-up replays" "$(stats "$work/noreplay.tsv" 4)" "-"
printf '%-52s | %-32s | %-32s\n' "vkCreateDevice after it" "$(stats "$work/isolated.tsv" 6)" "$(stats "$work/inprocess.tsv" 6)"
[ -f "$work/isolated_b2b.tsv" ] && printf '%-52s | %-32s | %-32s\n' "vkCreateInstance, back to back (pool drained)" "$(stats "$work/isolated_b2b.tsv" 4)" "-"
printf '%-52s | %-32s | %-32s\n' "worker start (spawn → connected)" "$(logstat "$work/isolated.log" "started in")" "-"
printf '%-52s | %-32s | %-32s\n' "worker warm-up (replays, driver; while idle)" "$(logstat "$work/isolated.log" "warmed up in")" "-"
printf '%-52s | %-32s | %-32s\n' "hand-over wait, sessions ${pause} ms apart" "$(logstat "$work/isolated.log" "handed over after")" "-"
[ -f "$work/isolated_b2b.log" ] && printf '%-52s | %-32s | %-32s\n' "hand-over wait, back to back" "$(logstat "$work/isolated_b2b.log" "handed over after")" "-"
printf '%-52s | %-32s | %-32s\n' "idle warm worker RSS (KiB)" "$(cat "$work/isolated.rss" 2>/dev/null)" "-"
[ -f "$work/noreplay.rss" ] && printf '%-52s | %-32s | %-32s\n' "idle warm worker RSS without replays (KiB)" "$(cat "$work/noreplay.rss")" "-"
echo "logs and raw figures: $work"
