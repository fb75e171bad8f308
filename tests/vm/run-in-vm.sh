#!/usr/bin/env bash
# Boots a real Linux guest (Debian's generic 6.1 kernel) under qemu-system-x86_64, runs one command in
# it as root with the host's working directory, prints its stdout and stderr and exits with its status.
# The guest's root filesystem is the host's, shared read-only over virtio-9p with a tmpfs overlay for
# writes. See tests/vm/README.md.
#
#   tests/vm/run-in-vm.sh [options] -- COMMAND [ARGS...]
#
# Exit status: the command's; 124 when --timeout expired (qemu is killed); 77 when qemu (or another
# prerequisite: busybox-static, cpio, apt-get, dpkg-deb, depmod/modprobe) is missing; 125 when the
# harness or the guest failed before the command's status was known.
# shellcheck disable=SC2054,SC2317  # qemu's options contain commas; cleanup runs from a trap
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
vmdir=${GUESTICD_VM_DIR:-$repo/out/vm}
qemu=${GUESTICD_VM_QEMU:-qemu-system-x86_64}
accel=${GUESTICD_VM_ACCEL:-tcg}
mem=${GUESTICD_VM_MEM:-1024}
smp=${GUESTICD_VM_SMP:-1}
timeout=${GUESTICD_VM_TIMEOUT:-120}
share=
ivshmem=
serial=
serial_name=org.guesticd.0
vgpu=
vgpu_device=${GUESTICD_VM_VGPU_DEVICE:-vhost-user-gpu-pci}
prepare_only=0
verbose=${GUESTICD_VM_VERBOSE:-0}
extra_env=()

# Modules the guest needs; modprobe --show-depends adds their dependencies and drops the built-ins.
modules=(virtio_pci 9pnet_virtio 9p overlay virtio_console virtio_gpu)
# Kernel command line: the console on the first serial port (written to console.log), quiet.
cmdline="console=ttyS0 quiet loglevel=4 panic=-1 tsc=reliable no_timer_check mitigations=off guesticd.vm=1"
cmdline+=${GUESTICD_VM_APPEND:+ $GUESTICD_VM_APPEND}

usage() {
    cat <<'EOF'
usage: tests/vm/run-in-vm.sh [options] -- COMMAND [ARGS...]
  --ivshmem FILE:SIZE   add an ivshmem-plain PCI device (1af4:1110) whose BAR2 is the host file FILE
                        (SIZE in qemu's syntax, a power of two: 1M, 64M; qemu creates FILE if missing)
  --serial SOCKET       add a virtio-serial port named org.guesticd.0 connected to the host unix socket
                        SOCKET (qemu connects: something must listen there first); in the guest it is
                        /dev/virtio-ports/org.guesticd.0
  --serial-name NAME    another name for that port
  --vgpu SOCKET         add a vhost-user virtio-gpu device whose backend listens on SOCKET (hostsim
                        serve --listen vhost-user-gpu:SOCKET); guest RAM becomes a shared memfd. In the
                        guest: /dev/dri/renderD128. GUESTICD_VM_VGPU_DEVICE picks the frontend:
                        vhost-user-device-pci (default; the backend's features pass through) or
                        vhost-user-gpu-pci
  --share DIR           the writable host folder shared at the same path in the guest
                        (default: out/vm/share)
  --timeout SEC         kill the guest after SEC seconds and exit 124 (default 120)
  --env NAME=VALUE      set a variable in the command's environment (repeatable)
  --mem MIB, --smp N    guest memory (default 1024) and CPUs (default 1)
  --prepare             only prepare the kernel and initramfs cache under out/vm/, then exit
  -v, --verbose         print the qemu command line and the guest console on stderr
Environment: GUESTICD_* and VK_* variables are forwarded into the guest (GUESTICD_VM_* excepted);
GUESTICD_VM_ACCEL=kvm uses KVM (default tcg), GUESTICD_VM_QEMU names the qemu binary,
GUESTICD_VM_KERNEL_PKG pins the Debian kernel package, GUESTICD_VM_APPEND adds to the kernel command
line (e.g. ignore_loglevel), GUESTICD_VM_KEEP=1 keeps the run folder.
EOF
}

die() { echo "run-in-vm: $*" >&2; exit 125; }
missing() { echo "run-in-vm: $* (skipping: the VM cannot run on this machine)" >&2; exit 77; }

while [ $# -gt 0 ]; do
    case "$1" in
        --ivshmem) [ $# -ge 2 ] || die "--ivshmem needs FILE:SIZE"; ivshmem=$2; shift 2 ;;
        --serial) [ $# -ge 2 ] || die "--serial needs SOCKET"; serial=$2; shift 2 ;;
        --serial-name) [ $# -ge 2 ] || die "--serial-name needs NAME"; serial_name=$2; shift 2 ;;
        --vgpu) [ $# -ge 2 ] || die "--vgpu needs SOCKET"; vgpu=$2; shift 2 ;;
        --share) [ $# -ge 2 ] || die "--share needs DIR"; share=$2; shift 2 ;;
        --timeout) [ $# -ge 2 ] || die "--timeout needs SEC"; timeout=$2; shift 2 ;;
        --env) [ $# -ge 2 ] || die "--env needs NAME=VALUE"; extra_env+=("$2"); shift 2 ;;
        --mem) [ $# -ge 2 ] || die "--mem needs MIB"; mem=$2; shift 2 ;;
        --smp) [ $# -ge 2 ] || die "--smp needs N"; smp=$2; shift 2 ;;
        --prepare) prepare_only=1; shift ;;
        -v|--verbose) verbose=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        *) echo "run-in-vm: unknown option $1" >&2; usage >&2; exit 125 ;;
    esac
done
if [ "$prepare_only" = 0 ] && [ $# -eq 0 ]; then usage >&2; exit 125; fi
if ! [[ "$timeout" =~ ^[0-9]+$ ]] || [ "$timeout" -eq 0 ]; then die "--timeout must be a positive number of seconds"; fi
for e in "${extra_env[@]}"; do [[ "$e" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env wants NAME=VALUE, not $e"; done

# ---- prerequisites -------------------------------------------------------------------------------
command -v "$qemu" >/dev/null 2>&1 || missing "$qemu not found: install qemu-system-x86"
PATH=$PATH:/usr/sbin:/sbin
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || missing "busybox not found: install busybox-static"
if ldd "$busybox" >/dev/null 2>&1; then missing "$busybox is dynamically linked: install busybox-static"; fi
for tool in cpio dpkg-deb apt-get apt-cache depmod modprobe flock; do
    command -v "$tool" >/dev/null 2>&1 || missing "$tool not found (packages: cpio dpkg apt kmod util-linux)"
done
hostbash=$(command -v bash)

# ---- the cache: kernel, modules, initramfs (out/vm/) ---------------------------------------------
mkdir -p "$vmdir/kernel"
exec 9>"$vmdir/.lock"
flock 9
rm -rf "$vmdir"/kernel/.tmp.*   # left by an interrupted preparation

kernel_ready() {
    { [ -f "$1/vmlinux" ] || [ -f "$1/vmlinuz" ]; } && [ -f "$1/modules.load" ] && [ -f "$1/package" ] \
        && [ "$(cat "$1/modules.wanted" 2>/dev/null)" = "${modules[*]}" ]
}

prepare_kernel() {
    local pkg=${GUESTICD_VM_KERNEL_PKG:-} kver kdir tmp deb m
    if [ -z "$pkg" ] && [ -f "$vmdir/kernel/current" ]; then
        kver=$(<"$vmdir/kernel/current")
        if kernel_ready "$vmdir/kernel/$kver"; then echo "$kver"; return; fi
    fi
    if [ -z "$pkg" ]; then
        # the kernel linux-image-amd64 points at, else the newest linux-image-6.1.0-N-amd64
        pkg=$(apt-cache depends linux-image-amd64 2>/dev/null \
            | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1)
        [ -n "$pkg" ] || pkg=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' 2>/dev/null \
            | cut -d' ' -f1 | sort -V | tail -n1)
        [ -n "$pkg" ] || die "no Debian kernel package found (run apt-get update)"
    fi
    kver=${pkg#linux-image-}
    kdir=$vmdir/kernel/$kver
    if kernel_ready "$kdir"; then echo "$kver" >"$vmdir/kernel/current"; echo "$kver"; return; fi

    echo "run-in-vm: preparing $pkg under ${kdir#"$repo/"} (once)" >&2
    tmp=$(mktemp -d "$vmdir/kernel/.tmp.XXXXXX")
    (cd "$tmp" && apt-get download -q "$pkg" >download.log 2>&1) \
        || { cat "$tmp/download.log" >&2; die "apt-get download $pkg failed"; }
    deb=$(ls "$tmp"/*.deb)
    mkdir -p "$tmp/x" "$tmp/k/modules"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/x" "./boot/vmlinuz-$kver" "./lib/modules/$kver" \
        || die "cannot unpack $deb"
    echo "$pkg $(dpkg-deb -f "$deb" Version)" >"$tmp/k/package"
    rm -f "$deb"
    depmod -b "$tmp/x" "$kver" || die "depmod failed on $pkg"
    # insmod lines in load order, deduplicated; "builtin" lines need nothing
    modprobe -d "$tmp/x" -S "$kver" --show-depends -a "${modules[@]}" >"$tmp/deps" \
        || die "modprobe --show-depends failed for ${modules[*]}"
    awk '$1 == "insmod" && !seen[$2]++ { print $2 }' "$tmp/deps" | while read -r m; do
        cp "$m" "$tmp/k/modules/"
        basename "$m" .ko >>"$tmp/k/modules.load"
    done
    [ -s "$tmp/k/modules.load" ] || die "no modules to load for ${modules[*]}?"
    echo "${modules[*]}" >"$tmp/k/modules.wanted"
    # qemu boots the uncompressed ELF through its PVH entry (CONFIG_PVH): that skips SeaBIOS loading
    # the bzImage and its xz decompression, about 4 s under TCG. The bzImage stays the fallback.
    local off
    off=$(LC_ALL=C grep -obUaP -m1 '\xfd7zXZ\x00' "$tmp/x/boot/vmlinuz-$kver" | awk -F: 'NR == 1 { print $1 }')
    if [ -n "$off" ] && tail -c +$((off + 1)) "$tmp/x/boot/vmlinuz-$kver" >"$tmp/payload.xz" \
        && xz -dc --single-stream "$tmp/payload.xz" >"$tmp/k/vmlinux" 2>/dev/null \
        && [ "$(head -c 4 "$tmp/k/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ]; then
        :
    else
        rm -f "$tmp/k/vmlinux"
        cp "$tmp/x/boot/vmlinuz-$kver" "$tmp/k/vmlinuz"
    fi
    rm -rf "$kdir"
    mv "$tmp/k" "$kdir"
    rm -rf "$tmp"
    echo "$kver" >"$vmdir/kernel/current"
    echo "$kver"
}

prepare_initramfs() {
    local kdir=$1 hash img tmp
    hash=$( { cat "$here/init.sh" "$kdir/modules.load"; sha256sum "$busybox"; } | sha256sum | cut -c1-16)
    img=$kdir/initramfs-$hash.cpio
    if [ ! -f "$img" ]; then
        tmp=$(mktemp -d "$vmdir/kernel/.tmp.XXXXXX")
        mkdir -p "$tmp/r"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,lib/modules}
        cp "$busybox" "$tmp/r/bin/busybox"
        cp "$here/init.sh" "$tmp/r/init"
        chmod 0755 "$tmp/r/init" "$tmp/r/bin/busybox"
        cp "$kdir"/modules/*.ko "$kdir/modules.load" "$tmp/r/lib/modules/"
        # uncompressed: unpacking is faster than gunzip under TCG
        (cd "$tmp/r" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$tmp/img" \
            || die "cpio failed"
        rm -f "$kdir"/initramfs-*.cpio
        mv "$tmp/img" "$img"
        rm -rf "$tmp"
    fi
    echo "$img"
}

kver=$(prepare_kernel)
kdir=$vmdir/kernel/$kver
kernel=$kdir/vmlinux
[ -f "$kernel" ] || kernel=$kdir/vmlinuz
initrd=$(prepare_initramfs "$kdir")
share=${share:-$vmdir/share}
mkdir -p "$share"
share=$(cd "$share" && pwd -P)
exec 9>&-
if [ "$prepare_only" = 1 ]; then
    echo "run-in-vm: ready: kernel $kver ($(cut -d' ' -f2 "$kdir/package")), ${initrd#"$repo/"}" >&2
    exit 0
fi

# ---- the run folder (9p tag ctl): the command script in, stdout/stderr/status out ---------------
cwd=$(pwd -P)
under() { case "$1/" in "$2"/*) return 0 ;; *) return 1 ;; esac; }
# A working directory under a folder the guest mounts anew (/tmp, /run: CI clones often live there) is
# exported on its own (read-only, 9p tag work) and mounted over it at the same path.
work=
if ! under "$cwd" "$share"; then
    for d in /tmp /run; do under "$cwd" "$d" && work=$cwd; done
    for d in /dev /proc /sys; do
        under "$cwd" "$d" && die "the working directory $cwd is hidden in the guest (it mounts its own $d); use --share or another folder"
    done
fi
[[ "$cwd$share" != *$'\n'* ]] || die "paths with newlines are not supported"

ctl=$(mktemp -d "${TMPDIR:-/tmp}/guesticd-vm.XXXXXX")
qpid=
cleanup() {
    if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then kill -KILL "$qpid" 2>/dev/null || true; fi
    if [ "${GUESTICD_VM_KEEP:-0}" = 1 ]; then echo "run-in-vm: kept $ctl" >&2; else rm -rf "$ctl"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

{
    echo "# written by tests/vm/run-in-vm.sh; run by the guest's init with $hostbash"
    printf 'export PATH=%q HOME=%q LANG=%q\n' "$PATH" "${HOME:-/root}" "${LANG:-C.UTF-8}"
    while read -r name; do
        case "$name" in GUESTICD_VM_*) continue ;; esac
        printf 'export %s=%q\n' "$name" "${!name}"
    done < <(compgen -e | grep -E '^(GUESTICD_|VK_)' || true)
    for e in "${extra_env[@]}"; do printf 'export %s=%q\n' "${e%%=*}" "${e#*=}"; done
    printf 'cd -- %q || { echo "run-in-vm: cannot enter %q in the guest" >&2; exit 125; }\n' "$cwd" "$cwd"
    printf 'exec'; printf ' %q' "$@"; printf '\n'
} >"$ctl/cmd.sh"
echo "$share" >"$ctl/share"
echo "$work" >"$ctl/work"
echo "$hostbash" >"$ctl/bash"
: >"$ctl/stdout"; : >"$ctl/stderr"; : >"$ctl/console.log"

# ---- qemu ------------------------------------------------------------------------------------------
case "$accel" in
    kvm) accel_args=(-accel kvm -cpu host) ;;
    tcg) accel_args=(-accel tcg -cpu max) ;;
    *) die "GUESTICD_VM_ACCEL must be tcg or kvm, not $accel" ;;
esac
args=(
    -nodefaults -no-user-config -display none -monitor none -no-reboot
    -machine "pc${vgpu:+,memory-backend=mem}" "${accel_args[@]}" -m "$mem" -smp "$smp"
    -kernel "$kernel" -initrd "$initrd" -append "$cmdline"
    -serial "file:$ctl/console.log"
    -fsdev "local,id=hostroot,path=/,readonly=on,security_model=none,multidevs=remap"
    -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot
    -fsdev "local,id=share,path=$share,security_model=none,multidevs=remap"
    -device virtio-9p-pci,fsdev=share,mount_tag=share
    -fsdev "local,id=ctl,path=$ctl,security_model=none"
    -device virtio-9p-pci,fsdev=ctl,mount_tag=ctl
)
if [ -n "$work" ]; then
    [[ "$work" != *,* ]] || die "the working directory must not contain a comma"
    args+=(-fsdev "local,id=work,path=$work,readonly=on,security_model=none,multidevs=remap"
           -device virtio-9p-pci,fsdev=work,mount_tag=work)
fi
if [ -n "$ivshmem" ]; then
    [[ "$ivshmem" == *:* ]] || die "--ivshmem wants FILE:SIZE, not $ivshmem"
    shm_file=${ivshmem%:*} shm_size=${ivshmem##*:}
    [[ "$shm_file" != *,* ]] || die "the ivshmem file name must not contain a comma"
    args+=(-object "memory-backend-file,id=shm,share=on,mem-path=$shm_file,size=$shm_size"
           -device ivshmem-plain,memdev=shm)
fi
if [ -n "$serial" ]; then
    [[ "$serial$serial_name" != *,* ]] || die "the serial socket path and name must not contain a comma"
    args+=(-device virtio-serial-pci,id=vser0 -chardev "socket,id=ch0,path=$serial"
           -device "virtserialport,bus=vser0.0,chardev=ch0,name=$serial_name")
fi
if [ -n "$vgpu" ]; then
    [[ "$vgpu" != *,* ]] || die "the vhost-user-gpu socket path must not contain a comma"
    [ -S "$vgpu" ] || die "--vgpu $vgpu: nothing listens there (start hostsim serve --listen vhost-user-gpu:$vgpu first)"
    # vhost-user needs guest RAM in a file it can share: the backend maps the memfds (SET_MEM_TABLE).
    args+=(-object "memory-backend-memfd,id=mem,size=${mem}M,share=on" -chardev "socket,id=vgpu,path=$vgpu")
    case "$vgpu_device" in
        vhost-user-device-pci) args+=(-device "vhost-user-device-pci,chardev=vgpu,virtio-id=16,num_vqs=2,config_size=16") ;;
        vhost-user-gpu-pci) args+=(-device "vhost-user-gpu-pci,chardev=vgpu") ;;
        *) die "GUESTICD_VM_VGPU_DEVICE must be vhost-user-device-pci or vhost-user-gpu-pci, not $vgpu_device" ;;
    esac
fi
[ "$verbose" = 1 ] && echo "run-in-vm: $qemu ${args[*]}" >&2

start=$SECONDS
"$qemu" "${args[@]}" </dev/null >"$ctl/qemu.log" 2>&1 &
qpid=$!

# Stream the guest's stdout/stderr while it runs: each cat continues where the last one stopped,
# because the two descriptors stay open here.
exec 5<"$ctl/stdout" 6<"$ctl/stderr"
pump() { cat <&5 || true; cat <&6 >&2 || true; }
timed_out=0
while kill -0 "$qpid" 2>/dev/null; do
    pump
    if [ $((SECONDS - start)) -ge "$timeout" ]; then
        timed_out=1
        kill -TERM "$qpid" 2>/dev/null || true
        sleep 1
        kill -KILL "$qpid" 2>/dev/null || true
        break
    fi
    sleep 0.2
done
qrc=0
wait "$qpid" || qrc=$?
qpid=
pump
exec 5<&- 6<&-

tail_console() {
    if [ -s "$ctl/console.log" ]; then
        echo "run-in-vm: last lines of the guest console:" >&2
        tail -n "${1:-25}" "$ctl/console.log" | sed 's/^/  | /' >&2
    fi
    if [ -s "$ctl/qemu.log" ]; then
        echo "run-in-vm: qemu said:" >&2
        sed 's/^/  | /' "$ctl/qemu.log" >&2
    fi
}
[ "$verbose" = 1 ] && { echo "run-in-vm: guest console:" >&2; sed 's/^/  | /' "$ctl/console.log" >&2; }

if [ "$timed_out" = 1 ]; then
    echo "run-in-vm: timed out after ${timeout} s; qemu killed (raise it with --timeout SEC)" >&2
    tail_console 15
    exit 124
fi
if [ -s "$ctl/status" ]; then
    status=$(<"$ctl/status")
    [[ "$status" =~ ^[0-9]+$ ]] || die "bad status from the guest: $status"
    exit "$status"
fi
echo "run-in-vm: the guest stopped without running the command to its end (qemu exit $qrc)" >&2
tail_console 40
exit 125
