# Sourced by run.sh, callgrind.sh and scale.sh: the build they measure (out/, or BENCH_NATIVE_ICD,
# BENCH_ICD_MANIFEST, BENCH_HOSTSIM for another driver or build), the checks each makes before it starts, and
# its scratch folder with a hostsim that is stopped however the script ends.
#   bench_setup NAME TOOL...   NAME prefixes the messages; TOOL... must be on PATH
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
native_manifest="${BENCH_NATIVE_ICD:-/usr/share/vulkan/icd.d/lvp_icd.x86_64.json}"
icd_manifest="${BENCH_ICD_MANIFEST:-$root/out/icd/guesticd_icd.x86_64.json}"
hostsim="${BENCH_HOSTSIM:-$root/out/hostsim/guesticd-hostsim}"
hostsim_pid=""

bench_stop_hostsim() {
  if [ -n "$hostsim_pid" ]; then kill "$hostsim_pid" 2>/dev/null; wait "$hostsim_pid" 2>/dev/null; fi
  hostsim_pid=""
}

# bench_start_hostsim [ARG...]: hostsim on $work/hostsim.sock (log $work/hostsim.log), with its loader on the
# benchmark's driver only, as the native runs have it: on a host with every Mesa driver installed the loader
# otherwise loads and asks each of them at every session's vkCreateInstance. Sets hostsim_pid, and hostsim_up=1
# once it listens.
bench_start_hostsim() {
  sock="$work/hostsim.sock"
  VK_DRIVER_FILES="$native_manifest" "$hostsim" serve --listen "unix:$sock" ${BENCH_HOSTSIM_DEVICE:+--device "$BENCH_HOSTSIM_DEVICE"} "$@" > "$work/hostsim.log" 2>&1 &
  hostsim_pid=$!
  hostsim_up=0
  for _ in $(seq 300); do
    if grep -q "listening on" "$work/hostsim.log"; then hostsim_up=1; break; fi
    kill -0 "$hostsim_pid" 2>/dev/null || break
    sleep 0.1
  done
}

bench_setup() {
  local name="$1" tool f; shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$name: $tool is missing (scripts/setup.sh installs it)"; exit 2; }
  done
  [ -f /usr/include/vulkan/vulkan.h ] || { echo "$name: vulkan headers missing (apt-get install libvulkan-dev)"; exit 2; }
  for f in "$native_manifest" "$icd_manifest" "$hostsim"; do
    [ -e "$f" ] || { echo "$name: $f not found (build the project first with scripts/build.sh)"; exit 2; }
  done
  work="$(mktemp -d "${TMPDIR:-/tmp}/guesticd-$name.XXXXXX")"
  trap bench_stop_hostsim EXIT
}
