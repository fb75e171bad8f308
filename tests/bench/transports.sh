#!/usr/bin/env bash
# GuestIcd transports side by side: round-trip latency and bulk throughput through the ICD over
#   (1) unix socket + shared-memory ring (same host), (2) TCP loopback (changed pages, shared secret),
#   (3) a QEMU guest over ivshmem + virtio-serial, (4) the same guest over virtio-gpu with hostsim as
#   the device's vhost-user backend (tests/vm/run-in-vm.sh --vgpu).
# Not a test: it never fails on a number; it prints one table. See tests/bench/README.md.
#
# Uses the existing build in $GUESTICD_OUT (default out/; it never builds or rewrites the ICD or hostsim).
# Its temporary files go to $GUESTICD_OUT/bench-tmp/ (not /tmp: the guest sees the host's files read-only
# at the same paths, but mounts its own /tmp).
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${GUESTICD_OUT:-out}"
case "$out" in /*) ;; *) out="$root/$out" ;; esac
icd_manifest="${BENCH_ICD_MANIFEST:-$out/icd/guesticd_icd.x86_64.json}"
hostsim="${BENCH_HOSTSIM:-$out/hostsim/guesticd-hostsim}"
group_timeout="${BENCH_GROUP_TIMEOUT_S:-120}"
rounds="${BENCH_ROUNDS:-3}"
vm_timeout="${BENCH_VM_TIMEOUT_S:-150}"
groups="submit query upload"
# 8 MiB uploads in every column: over TCP, 16 MiB and more of changed pages in one flush fail in the ICD
# (OutOfMemoryException / a hang when this was written), and a common size keeps the columns comparable.
export BENCH_UPLOAD_MB="${BENCH_UPLOAD_MB:-8}"

for tool in gcc glslc timeout awk base64 head; do
  command -v "$tool" >/dev/null || { echo "transports: $tool is missing (apt-get install gcc glslc coreutils gawk)"; exit 2; }
done
[ -f /usr/include/vulkan/vulkan.h ] || { echo "transports: vulkan headers missing (apt-get install libvulkan-dev)"; exit 2; }
for f in "$icd_manifest" "$hostsim"; do
  [ -e "$f" ] || { echo "transports: $f not found (build first, or set GUESTICD_OUT to the build folder)"; exit 2; }
done

mkdir -p "$out/bench-tmp"
work="$(mktemp -d "$out/bench-tmp/transports.XXXXXX")"
shm="/dev/shm/guesticd-bench-$$.shm"
hostsim_pid=""
vgpu_pid=""
cleanup() {
  if [ -n "$hostsim_pid" ]; then kill "$hostsim_pid" 2>/dev/null; wait "$hostsim_pid" 2>/dev/null; fi
  if [ -n "$vgpu_pid" ]; then kill "$vgpu_pid" 2>/dev/null; wait "$vgpu_pid" 2>/dev/null; fi
  rm -f "$shm"
}
trap cleanup EXIT

# ---- build (as run.sh does)
gcc -O2 -std=c11 -Wall -o "$work/bench" "$here/bench.c" -lvulkan -lm || { echo "transports: build failed"; exit 2; }
glslc "$here/fma.comp" -o "$work/fma.comp.spv" && glslc "$here/noop.vert" -o "$work/noop.vert.spv" || { echo "transports: shader build failed"; exit 2; }
"$work/bench" --list > "$work/metrics.tsv"

# ---- one hostsim, listening on all three transports
sock="$work/hostsim.sock"
vmsock="$work/vm.sock"
secret="$work/secret"
head -c 32 /dev/urandom | base64 > "$secret"
port=""
for _ in $(seq 50); do
  p=$(( 20000 + RANDOM % 40000 ))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || { echo "transports: no free TCP port found"; exit 2; }
"$hostsim" serve --listen "unix:$sock" --listen "tcp:127.0.0.1:$port" --secret-file "$secret" \
  --listen "vm:$vmsock,shm=$shm,size=268435456" \
  ${BENCH_HOSTSIM_DEVICE:+--device "$BENCH_HOSTSIM_DEVICE"} > "$work/hostsim.log" 2>&1 &
hostsim_pid=$!
# virtio-gpu sessions cannot run in worker processes yet: their own hostsim, --in-process.
"$hostsim" serve --listen "vhost-user-gpu:$work/gpu.sock" --in-process \
  ${BENCH_HOSTSIM_DEVICE:+--device "$BENCH_HOSTSIM_DEVICE"} > "$work/hostsim-vgpu.log" 2>&1 &
vgpu_pid=$!
hostsim_up=0
for _ in $(seq 300); do
  # one "listening on" line per listener
  if [ "$(grep -c "listening on" "$work/hostsim.log")" -ge 3 ] && grep -q "listening on" "$work/hostsim-vgpu.log"; then hostsim_up=1; break; fi
  kill -0 "$hostsim_pid" 2>/dev/null || break
  sleep 0.1
done
if [ "$hostsim_up" != 1 ]; then
  echo "transports: hostsim did not start (kept $work):"; tail -20 "$work/hostsim.log"; exit 2
fi

unset VK_ICD_FILENAMES VK_ADD_DRIVER_FILES VK_INSTANCE_LAYERS VK_LOADER_LAYERS_ENABLE VK_LOADER_DEBUG GUESTICD_SECRET GUESTICD_SECRET_FILE

# record WHICH GROUP OUTFILE RC: appends the group's metric lines to $work/WHICH.tsv, "n/a (why)" for the
# metrics the process did not print.
record() {
  local which="$1" group="$2" file="$3" rc="$4" why="${5:-}"
  [ -n "$why" ] || case $rc in
    0) why="the program printed no line for it" ;;
    124|137) why="timed out" ;;
    *) if [ "$rc" -gt 128 ]; then why="bench killed by signal $((rc - 128))"; else why="exited with status $rc"; fi ;;
  esac
  grep $'^metric\t' "$file" >> "$work/$which.tsv"
  awk -F'\t' -v g="$group" '$2 == g { print $3 "\t" $4 }' "$work/metrics.tsv" | while IFS=$'\t' read -r name unit; do
    grep -q $'^metric\t'"$name"$'\t' "$file" || printf 'metric\t%s\t%s\tn/a\t%s\n' "$name" "$unit" "$why" >> "$work/$which.tsv"
  done
}

run_host() {
  local which="$1" group="$2" o="$work/$1.$2.$round.out" e="$work/$1.$2.$round.err" rc
  if [ "$which" = unix ]; then
    VK_DRIVER_FILES="$icd_manifest" GUESTICD_TRANSPORT="unix:$sock" \
      timeout -k 5 "$group_timeout" "$work/bench" "$group" "$work" > "$o" 2> "$e"; rc=$?
  else
    VK_DRIVER_FILES="$icd_manifest" GUESTICD_TRANSPORT="tcp:127.0.0.1:$port" GUESTICD_SECRET_FILE="$secret" \
      timeout -k 5 "$group_timeout" "$work/bench" "$group" "$work" > "$o" 2> "$e"; rc=$?
  fi
  record "$which" "$group" "$o" "$rc"
}

: > "$work/unix.tsv"; : > "$work/tcp.tsv"; : > "$work/vm.tsv"; : > "$work/vgpu.tsv"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s)
for round in $(seq "$rounds"); do
  for group in $groups; do
    echo "transports: round $round/$rounds: $group (unix ring, TCP) ..." >&2
    run_host unix "$group"
    run_host tcp "$group"
  done
done
host_elapsed=$(( $(date +%s) - start ))

# ---- the VM: one guest boot runs every group (each in its own process), with smaller sizes under TCG.
vmdir="${GUESTICD_VM_DIR:-$out/vm}"
if [ ! -f "$vmdir/kernel/current" ] && [ -f "$root/out/vm/kernel/current" ] && [ "$vmdir" != "$root/out/vm" ]; then
  # reuse the kernel another build folder already downloaded (read from there, copied here)
  mkdir -p "$vmdir" && cp -a "$root/out/vm/kernel" "$vmdir/"
fi
mkdir -p "$work/share"
vm_env=(
  --env "BENCH_SUBMIT_REPS=${BENCH_VM_SUBMIT_REPS:-100}" --env "BENCH_SUBMIT_WARMUP=${BENCH_VM_SUBMIT_WARMUP:-10}"
  --env "BENCH_QUERY_REPS=${BENCH_VM_QUERY_REPS:-50}" --env "BENCH_QUERY_WARMUP=${BENCH_VM_QUERY_WARMUP:-5}"
  --env "BENCH_FENCE_ITERS=${BENCH_VM_FENCE_ITERS:-2048}"
  --env "BENCH_UPLOAD_MB=${BENCH_VM_UPLOAD_MB:-$BENCH_UPLOAD_MB}" --env "BENCH_UPLOAD_REPS=${BENCH_VM_UPLOAD_REPS:-5}" --env "BENCH_UPLOAD_WARMUP=1"
)
# run_vm WHICH TRANSPORT ARGS...: one guest boot, every group in its own process.
run_vm() {
  local which="$1" transport="$2"; shift 2
  echo "transports: VM (TCG, $which): $groups ..." >&2
  local vm_start; vm_start=$(date +%s)
  # shellcheck disable=SC2016,SC2086  # the script is for the guest's bash; $groups splits on purpose
  GUESTICD_VM_DIR="$vmdir" VK_DRIVER_FILES="$icd_manifest" GUESTICD_TRANSPORT="$transport" \
    "$root/tests/vm/run-in-vm.sh" --timeout "$vm_timeout" --share "$work/share" "$@" "${vm_env[@]}" -- \
    bash -c 'b=$1 d=$2 t=$3; shift 3; for g in "$@"; do echo "group-start $g"; timeout -k 5 "$t" "$b" "$g" "$d"; echo "group-end $g $?"; done' \
    _ "$work/bench" "$work" "$group_timeout" $groups > "$work/$which.out" 2> "$work/$which.err"
  vm_rc=$?
  eval "${which}_elapsed=$(( $(date +%s) - vm_start ))"
  eval "${which}_rc=$vm_rc"
  for group in $groups; do
    awk -v g="$group" '$1 == "group-start" { on = ($2 == g) } on && /^metric\t/' "$work/$which.out" > "$work/$which.$group.out"
    rc=$(awk -v g="$group" '$1 == "group-end" && $2 == g { print $3 }' "$work/$which.out")
    why=""
    if [ -z "$rc" ]; then  # the guest never finished this group
      rc=$vm_rc
      case $vm_rc in
        124) why="the VM timed out after ${vm_timeout}s" ;;
        77) why="VM harness prerequisite missing (see $which.err)" ;;
        125) why="the VM did not start (see $which.err)" ;;
        *) why="the VM ended with status $vm_rc" ;;
      esac
    fi
    record "$which" "$group" "$work/$which.$group.out" "$rc" "$why"
  done
}
run_vm vm vm --ivshmem "$shm:256M" --serial "$vmsock"
run_vm vgpu virtio-gpu --vgpu "$work/gpu.sock"
cleanup; hostsim_pid=""; vgpu_pid=""; trap - EXIT

# ---- the table
echo
echo "GuestIcd transports — ICD $icd_manifest + hostsim ($(grep -o 'serving .*' "$work/hostsim.log" | head -1 | sed 's/^serving //'))"
echo "unix ring and TCP: median over $rounds rounds (alternating per group) of each process's median, ${host_elapsed}s; VMs: one pass each with smaller sizes, ${vm_elapsed}s and ${vgpu_elapsed}s incl. boot; $(nproc) CPU cores, load average $load_before before / $(cut -d' ' -f1-3 /proc/loadavg) after"
awk -F'\t' -v groups="$groups" '
  function fmt(v) {
    if (v == "n/a") return v
    v += 0
    if (v >= 1000) return sprintf("%.0f", v)
    if (v >= 100) return sprintf("%.1f", v)
    if (v >= 10) return sprintf("%.2f", v)
    if (v >= 1) return sprintf("%.3f", v)
    return sprintf("%.3g", v)
  }
  BEGIN { ng = split(groups, gl, " "); for (i = 1; i <= ng; i++) want[gl[i]] = 1 }
  FILENAME ~ /metrics.tsv$/ { if ($2 in want) { names[++n] = $3; unit[$3] = $4; label[$3] = $7 }; next }
  {
    f = FILENAME; sub(/.*\//, "", f); sub(/\.tsv$/, "", f)
    if ($4 == "n/a") { if (!((f, $2) in why)) why[f, $2] = $5; next }
    k = ++cnt[f, $2]; v[f, $2, k] = $4 + 0
  }
  END {
    split("unix tcp vm vgpu", sides, " ")
    for (i = 1; i <= n; i++) for (s = 1; s <= 4; s++) {
      f = sides[s]; m = names[i]; k = cnt[f, m] + 0
      if (k == 0) { cellv[f, m] = "n/a (" (((f, m) in why) ? why[f, m] : "no result") ")"; continue }
      for (a = 1; a <= k; a++) tmp[a] = v[f, m, a]
      for (a = 2; a <= k; a++) { x = tmp[a]; for (b = a - 1; b >= 1 && tmp[b] > x; b--) tmp[b + 1] = tmp[b]; tmp[b + 1] = x }
      med = (k % 2) ? tmp[(k + 1) / 2] : (tmp[k / 2] + tmp[k / 2 + 1]) / 2
      cellv[f, m] = fmt(med)
    }
    h[1] = "metric"; h[2] = "unix ring"; h[3] = "TCP loopback"; h[4] = "VM (ivshmem+virtio-serial)"; h[5] = "VM (virtio-gpu)"
    for (c = 1; c <= 5; c++) w[c] = length(h[c])
    for (i = 1; i <= n; i++) {
      m = names[i]; row[i, 1] = label[m] " (" unit[m] ")"
      for (s = 1; s <= 4; s++) row[i, s + 1] = cellv[sides[s], m]
      for (c = 1; c <= 5; c++) if (length(row[i, c]) > w[c]) w[c] = length(row[i, c])
    }
    fl = "%-" w[1] "s | %" w[2] "s | %" w[3] "s | %" w[4] "s | %" w[5] "s\n"
    printf fl, h[1], h[2], h[3], h[4], h[5]
    line = ""; for (j = 0; j < w[1] + w[2] + w[3] + w[4] + w[5] + 12; j++) line = line "-"; print line
    for (i = 1; i <= n; i++) printf fl, row[i, 1], row[i, 2], row[i, 3], row[i, 4], row[i, 5]
  }' "$work/metrics.tsv" "$work/unix.tsv" "$work/tcp.tsv" "$work/vm.tsv" "$work/vgpu.tsv"
echo "Note: the VM runs under TCG (emulated CPU, no KVM), so its column includes the emulation of the guest's"
echo "CPU (the ICD, the copies into the ivshmem BAR, the doorbells) — compare it with the others as an upper bound."
echo "Bulk path ($BENCH_UPLOAD_MB MiB per upload${BENCH_VM_UPLOAD_MB:+, VM $BENCH_VM_UPLOAD_MB MiB}): unix ring and VM map HOST_VISIBLE memory zero-copy"
echo "(shared memory / ivshmem BAR); over TCP the mapping is a local copy and the changed pages travel at submit."

# ---- what went wrong, if anything
problems=0
if grep -qi -E "protocol error|exception|fail" "$work/hostsim.log"; then
  echo; echo "hostsim reported:"; grep -i -E "protocol error|exception|fail" "$work/hostsim.log" | head -20; problems=1
fi
if grep -q $'\tn/a\t' "$work/unix.tsv" "$work/tcp.tsv" "$work/vm.tsv" "$work/vgpu.tsv"; then problems=1; fi
for which in vm vgpu; do
  eval "rc=\$${which}_rc"
  if [ "$rc" != 0 ]; then echo; echo "VM harness ($which) exited with status $rc:"; tail -5 "$work/$which.err"; problems=1; fi
done
if [ "$problems" = 1 ] || [ "${BENCH_KEEP:-0}" = 1 ]; then
  echo; echo "logs and raw results kept in $work (hostsim.log, {unix,tcp}.GROUP.ROUND.{out,err}, vm.{out,err}, {unix,tcp,vm}.tsv)"
else
  rm -rf "$work"
fi
exit 0
