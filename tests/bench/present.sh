#!/usr/bin/env bash
# Presentation benchmark (issue 9 point 6), not a test: vkcube on a private Xvfb, natively on lavapipe and
# through the GuestIcd ICD + hostsim (MIT-SHM, and xcb_put_image with GUESTICD_X11_NO_SHM=1), each run
# `vkcube --c FRAMES` with present_timer.so preloaded, which times every vkQueuePresentKHR the same way for every
# driver. Prints per configuration the median over ROUNDS of: frames/s (first to last present), mean, median
# and p99 present-to-present time (ms), and the whole run's wall time (start-up and teardown included);
# then vkcube-wayland on a private headless Weston (pixman renderer) in MAILBOX (FIFO would measure the
# output's 60 Hz), natively and through the ICD (wl_shm buffers), where weston is installed;
# then glxgears through Zink (MESA_LOADER_DRIVER_OVERRIDE=zink) natively and through the ICD: its frames/s.
#   bash tests/bench/present.sh [FRAMES=300] [ROUNDS=3]
# Needs the build in out/ (never rebuilds it), Xvfb, vkcube, cc; weston for the Wayland rows.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
frames=${1:-300}
rounds=${2:-3}
work=$(mktemp -d /tmp/guesticd-present-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${BENCH_KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
cc -shared -fPIC -O2 -o "$work/present_timer.so" tests/bench/present_timer.c -ldl

exec 3> "$work/display"
Xvfb -displayfd 3 -screen 0 1024x768x24 -nolisten tcp > "$work/xvfb.log" 2>&1 &
pids+=($!)
exec 3>&-
for _ in $(seq 100); do [ -s "$work/display" ] && break; sleep 0.1; done
display=":$(head -1 "$work/display")"
out/hostsim/guesticd-hostsim serve --listen "unix:$work/hostsim.sock" > "$work/hostsim.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$work/hostsim.log" 2>/dev/null && break; sleep 0.1; done

run() { # name, then env assignments; CUBE="vkcube-wayland --present_mode 1" for the Wayland rows
  local name=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  env DISPLAY="$display" LD_PRELOAD="$work/present_timer.so" "$@" ${CUBE:-vkcube} --c "$frames" > "$work/$name.out" 2> "$work/$name.err" || { echo "$name: ${CUBE:-vkcube} failed" >&2; tail -5 "$work/$name.err" >&2; return; }
  t1=$(date +%s.%N)
  echo "$name $(grep -h '^present:' "$work/$name.err" | tail -1) wall=$(echo "$t1 - $t0" | bc)" >> "$work/results"
}
icd=(VK_DRIVER_FILES="$PWD/out/icd/guesticd_icd.x86_64.json" GUESTICD_TRANSPORT="unix:$work/hostsim.sock")
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq "$rounds"); do
  # Alternating, so a change of load on the machine hits every configuration.
  run native VK_DRIVER_FILES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
  run icd-shm "${icd[@]}"
  run icd-putimage "${icd[@]}" GUESTICD_X11_NO_SHM=1
done
if command -v weston >/dev/null && command -v vkcube-wayland >/dev/null; then
  mkdir -m 700 "$work/xdg"
  printf '[core]\nidle-time=0\n[shell]\nanimation=none\nstartup-animation=none\npanel-position=none\n' > "$work/weston.ini"
  XDG_RUNTIME_DIR="$work/xdg" weston --config="$work/weston.ini" --backend=headless-backend.so --socket=bench \
    --width=640 --height=640 --use-pixman > "$work/weston.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q "weston-desktop-shell'" "$work/weston.log" 2>/dev/null && break; sleep 0.1; done
  sleep 0.5
  wl=(XDG_RUNTIME_DIR="$work/xdg" WAYLAND_DISPLAY=bench)
  for r in $(seq "$rounds"); do
    CUBE="vkcube-wayland --present_mode 1" run wayland-native "${wl[@]}" VK_DRIVER_FILES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
    CUBE="vkcube-wayland --present_mode 1" run wayland-icd "${wl[@]}" "${icd[@]}"
  done
fi
# glxgears through Zink (kopper presents through a VkSwapchain): its own frame rate over its second 5 s period.
gears() { # name, then env assignments
  local name=$1; shift
  env DISPLAY="$display" MESA_LOADER_DRIVER_OVERRIDE=zink "$@" timeout -s INT 11 glxgears > "$work/$name.out" 2> "$work/$name.err" || true
  local fps
  fps=$(grep -o '= [0-9.]* FPS' "$work/$name.out" | tail -1 | tr -dc '0-9.')
  [ -n "$fps" ] && echo "$fps" >> "$work/$name.fps"
}
if command -v glxgears >/dev/null; then
  for r in $(seq "$rounds"); do
    gears gears-native VK_DRIVER_FILES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json LIBGL_ALWAYS_SOFTWARE=1
    gears gears-icd "${icd[@]}"
  done
fi
echo "vkcube --c $frames, $rounds rounds (median of rounds), Xvfb 24-bit; load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$work/results" <<'EOF'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    name, _, *kv = line.split()
    rows.setdefault(name, []).append({k: float(v) for k, v in (x.split('=') for x in kv)})
print(f"{'configuration':<16} {'frames/s':>9} {'mean ms':>8} {'median ms':>10} {'p99 ms':>8} {'run s':>7}")
native = None
for name in ('native', 'icd-shm', 'icd-putimage', 'wayland-native', 'wayland-icd'):
    if name not in rows: print(f"{name:<16} n/a"); continue
    m = {k: statistics.median(r[k] for r in rows[name]) for k in ('fps', 'mean', 'median', 'p99', 'wall')}
    if name == 'wayland-native': native = None
    native = native or m
    print(f"{name:<16} {m['fps']:>9.1f} {m['mean']:>8.3f} {m['median']:>10.3f} {m['p99']:>8.3f} {m['wall']:>7.2f}"
          + ("" if m is native else f"   ({m['fps'] / native['fps']:.2f}x native frames/s)"))
EOF
for g in gears-native gears-icd; do
  [ -s "$work/$g.fps" ] && echo "glxgears (Zink) ${g#gears-}: $(sort -n "$work/$g.fps" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') frames/s (median of $(wc -l < "$work/$g.fps") rounds)"
done
exit 0
