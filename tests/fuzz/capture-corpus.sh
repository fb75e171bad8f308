#!/usr/bin/env bash
# Recaptures the fuzz corpus (tests/fuzz/corpus/) from real sessions: vulkaninfo, the C compute client
# and the C render client, each through the Khronos loader and our ICD against `hostsim serve --capture`.
# Needs out/hostsim and out/icd (bash scripts/build.sh). Sessions that only probe (the loader opens the
# ICD several times) are kept too: they are the short, valid prefixes the fuzzer grows from.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out=${GUESTICD_OUT:-out}
work=$(mktemp -d /tmp/guesticd-capture.XXXXXX)
trap 'kill $hs 2>/dev/null; wait $hs 2>/dev/null; rm -rf "$work"' EXIT
sock=$work/hostsim.sock
"$out/hostsim/guesticd-hostsim" serve --listen "unix:$sock" --capture "$work/cap" --log-level Warning >"$work/hostsim.log" 2>&1 &
hs=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
export VK_DRIVER_FILES=$PWD/$out/icd/guesticd_icd.x86_64.json GUESTICD_TRANSPORT=unix:$sock VK_LOADER_LAYERS_DISABLE='*'

glslc -o "$work/multiply.spv" native-shim/shaders/multiply.comp
glslc -o "$work/render.vert.spv" native-shim/shaders/render.vert
glslc -o "$work/render.frag.spv" native-shim/shaders/render.frag
cc -std=c11 -O1 -o "$work/compute" native-shim/clients/compute.c -lvulkan
cc -std=c11 -O1 -o "$work/render" native-shim/clients/render.c -lvulkan

run() { # name, command...: the sessions a client opened are renamed after it
  local name=$1; shift
  local before; before=$(ls "$work/cap" 2>/dev/null | wc -l)
  timeout 120 "$@" >"$work/$name.out" 2>&1 || { echo "capture: $name failed:"; cat "$work/$name.out"; exit 1; }
  sleep 0.3
  local i=0
  for f in $(ls -tr "$work/cap" | tail -n +$((before + 1))); do
    i=$((i + 1)); mv "$work/cap/$f" "$work/cap/$name-$i.keep"
  done
  echo "capture: $name: $i sessions"
}
mkdir -p "$work/cap"
run vulkaninfo vulkaninfo --summary
# Small sizes keep each input short: the fuzzer's speed falls with input length.
run compute "$work/compute" "$work/multiply.spv" 256
run render "$work/render" "$work/render.vert.spv" "$work/render.frag.spv" "$work/out.ppm"
run render-dynamic "$work/render" "$work/render.vert.spv" "$work/render.frag.spv" "$work/out.ppm" --dynamic

rm -rf tests/fuzz/corpus && mkdir -p tests/fuzz/corpus
# A client's largest session is its own; any others are the loader's probes (hello, then goodbye), all
# alike: one copy is kept, as probe.gicd.
declare -A seen
for name in vulkaninfo compute render render-dynamic; do
  first=1
  for f in $(ls -S "$work"/cap/$name-[0-9]*.keep); do
    b=$name
    if [ $first = 0 ]; then
      sum=$(md5sum <"$f" | cut -c1-32)
      [ -n "${seen[$sum]:-}" ] && continue
      seen[$sum]=1
      b=probe
    fi
    first=0
    cp "$f" "tests/fuzz/corpus/$b.gicd"
  done
done
ls -l tests/fuzz/corpus
