#!/usr/bin/env bash
# The main job: hostsim on the host's Vulkan driver (lavapipe here) and an unmodified Vulkan application
# (vulkaninfo) loaded through the Khronos loader with our ICD as its only driver.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
bash scripts/build.sh
mkdir -p out/logs
sock="$PWD/out/run/hostsim.sock"
out/hostsim/guesticd-hostsim serve --listen "unix:$sock" > out/logs/hostsim.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "listening on" out/logs/hostsim.log && break; sleep 0.1; done
echo "== vulkaninfo --summary through the GuestIcd ICD (VK_DRIVER_FILES=out/icd/guesticd_icd.x86_64.json) =="
VK_DRIVER_FILES="$PWD/out/icd/guesticd_icd.x86_64.json" GUESTICD_TRANSPORT="unix:$sock" vulkaninfo --summary 2> out/logs/vulkaninfo.stderr
echo
echo "== vkcube through the ICD on a private Xvfb, 60 frames, its window saved as out/vkcube.png =="
GUESTICD_TRANSPORT="unix:$sock" bash scripts/vkcube-shot.sh out/vkcube.png 60 || echo "(vkcube demo skipped: see above)"
kill $pid; wait $pid 2>/dev/null || true
trap - EXIT
echo
echo "hostsim stopped. Logs: $PWD/out/logs/hostsim.log (host), $PWD/out/logs/vulkaninfo.stderr (guest)"
