#!/usr/bin/env bash
# vkcube through the GuestIcd ICD on a private Xvfb, and a PNG of its window after N frames.
#   bash scripts/vkcube-shot.sh [OUT.png] [FRAMES]      (default out/vkcube.png, 60 frames)
# Uses the build in out/ (bash scripts/build.sh). With GUESTICD_TRANSPORT set, talks to that hostsim;
# otherwise starts its own. The window is read back at vkcube's xcb_destroy_window, after the X server ran
# every earlier request (native-shim/clients/xshot_preload.c), so the PNG is exactly the last frame presented.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
png=${1:-out/vkcube.png}
frames=${2:-60}
for tool in Xvfb vkcube convert cc; do
  command -v $tool >/dev/null || { echo "vkcube-shot: $tool is missing (bash scripts/setup.sh installs it)" >&2; exit 1; }
done
[ -f out/icd/guesticd_icd.x86_64.json ] || { echo "vkcube-shot: no out/icd (bash scripts/build.sh)" >&2; exit 1; }
work=$(mktemp -d /tmp/guesticd-shot.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cc -shared -fPIC -O1 -o "$work/xshot.so" native-shim/clients/xshot_preload.c -ldl -lxcb

# Xvfb picks a free display and writes its number to fd 3.
exec 3> "$work/display"
Xvfb -displayfd 3 -screen 0 1024x768x24 -nolisten tcp > "$work/xvfb.log" 2>&1 &
pids+=($!)
exec 3>&-
for _ in $(seq 100); do [ -s "$work/display" ] && break; sleep 0.1; done
display=":$(head -1 "$work/display")"

transport=${GUESTICD_TRANSPORT:-}
if [ -z "$transport" ]; then
  out/hostsim/guesticd-hostsim serve --listen "unix:$work/hostsim.sock" > "$work/hostsim.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q "listening on" "$work/hostsim.log" 2>/dev/null && break; sleep 0.1; done
  transport="unix:$work/hostsim.sock"
fi

DISPLAY=$display VK_DRIVER_FILES="$PWD/out/icd/guesticd_icd.x86_64.json" GUESTICD_TRANSPORT=$transport \
  GUESTICD_LOG=info LD_PRELOAD="$work/xshot.so" GUESTICD_SHOT="$work/shot.ppm" \
  vkcube --c "$frames" > "$work/vkcube.out" 2> "$work/vkcube.err" || { cat "$work/vkcube.out" "$work/vkcube.err" >&2; exit 1; }
mkdir -p "$(dirname "$png")"
convert "$work/shot.ppm" "$png"

# What it showed: the device vkcube picked, how the ICD presented, and what the window held at the end.
grep -h "Selected GPU" "$work/vkcube.out" "$work/vkcube.err" | head -1 | sed 's/^/vkcube: /' || true
grep -h -E "GuestIcd info: (swapchain|X11 presentation)" "$work/vkcube.err" | sed 's/^GuestIcd info: /ICD: /'
python3 - "$work/shot.ppm" "$png" <<'EOF'
import sys
data = open(sys.argv[1], 'rb').read()
magic, size, maxval, pixels = data.split(b'\n', 3)
w, h = map(int, size.split())
px = [pixels[i:i + 3] for i in range(0, w * h * 3, 3)]
background = max(set(px[:w]), key=px[:w].count)  # the top row is background only
cube = [p for p in px if p != background]
xs = [i % w for i, p in enumerate(px) if p != background]
ys = [i // w for i, p in enumerate(px) if p != background]
print(f"window: {w}x{h} pixels, {len(set(px))} colours; background rgb{tuple(background)}; "
      f"the cube covers {100 * len(cube) / len(px):.1f}% of it, within x {min(xs)}..{max(xs)}, y {min(ys)}..{max(ys)}")
print(f"screenshot: {sys.argv[2]}")
EOF
