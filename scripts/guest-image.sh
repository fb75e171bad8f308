#!/usr/bin/env bash
# Builds a bootable Debian 12 guest disk image with the GuestIcd driver installed and configured for the
# VM transport (virtio-gpu), then prints the qemu command line that pairs it with a running hostsim.
#
#   scripts/guest-image.sh [--out FILE] [--size SIZE] [--mirror URL] [--force]
#
#   --out FILE     the raw disk image (default out/guest-image/guesticd-guest.img)
#   --size SIZE    its size, as truncate takes it (default 3G; the file is sparse)
#   --mirror URL   the Debian mirror (default: the one this machine's apt sources use)
#   --force        rebuild even when the image is up to date
#
# The image: an MBR disk with one ext4 partition holding a debootstrap'ed bookworm (minbase, systemd, udev,
# linux-image-amd64, libvulkan1, vulkan-tools) plus out/packages/guesticd_*.deb, /etc/guesticd.conf saying
# "transport = virtio-gpu", a root login without password on the serial console, and GRUB (i386-pc) in the
# MBR gap booting the kernel with console=ttyS0. Booted with the QEMU firmware entry
# -fw_cfg name=opt/org.guesticd.selftest,string=1, guesticd-selftest.service runs vulkaninfo --summary through
# the ICD on the serial console and powers off (GRUB's built-in configuration cannot take a kernel option).
#
# Caches (GUESTICD_IMAGE_CACHE, default /var/cache/guesticd-image): the downloaded .debs, and the debootstrap
# tree keyed by the mirror, suite and package list, so that a new guesticd package only redoes the last steps.
# The image itself is rebuilt only when its inputs' hash (this script, the guesticd package, the base tree)
# changes: FILE.inputs holds that hash.
#
# Progress: "[N/8] step" lines; on a terminal debootstrap's packages show as a bar, otherwise as plain lines.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

out=$repo/out/guest-image/guesticd-guest.img
size=3G
mirror=
force=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$(realpath -m "$2"); shift 2 ;;
        --size) size=$2; shift 2 ;;
        --mirror) mirror=$2; shift 2 ;;
        --force) force=1; shift ;;
        -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "guest-image.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
suite=bookworm
packages=linux-image-amd64,systemd-sysv,udev,kmod,libvulkan1,vulkan-tools
cache=${GUESTICD_IMAGE_CACHE:-/var/cache/guesticd-image}
total=9
n=0
tty=0; [ -t 1 ] && tty=1

step() { n=$((n + 1)); echo "[$n/$total] $*"; }
die() { echo "guest-image.sh: $*" >&2; exit 1; }

# A one-line bar on a terminal: bar DONE TOTAL LABEL.
bar() {
    local done=$1 all=$2 label=$3 width=40 filled pct
    [ "$all" -gt 0 ] || all=1
    [ "$done" -le "$all" ] || done=$all
    pct=$((done * 100 / all)); filled=$((done * width / all))
    printf '\r  [%-*s] %3d%% %-40.40s' "$width" "$(printf '%*s' "$filled" '' | tr ' ' '#')" "$pct" "$label"
}

step "checking tools and the guesticd package"
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot)"
PATH=$PATH:/usr/sbin:/sbin
for tool in debootstrap mke2fs sfdisk grub-mkimage chroot sha256sum; do
    command -v "$tool" >/dev/null || die "$tool not found: run scripts/setup.sh (debootstrap e2fsprogs fdisk grub-pc-bin)"
done
[ -f /usr/lib/grub/i386-pc/boot.img ] || die "/usr/lib/grub/i386-pc missing: apt-get install grub-pc-bin"
deb=$(ls "$repo"/out/packages/guesticd_*_amd64.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
    echo "  no out/packages/guesticd_*.deb: running scripts/package.sh"
    bash scripts/package.sh --no-lintian >/dev/null
    deb=$(ls "$repo"/out/packages/guesticd_*_amd64.deb | head -n1)
fi
echo "  $(basename "$deb")"
if [ -z "$mirror" ]; then
    # The first URI that serves $suite in this machine's apt sources (deb822 or one-line format).
    mirror=$(awk -v s="$suite" '
        /^URIs:/ { u = $2 } /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) { print u; exit } }
        /^deb / && $3 == s { print $2; exit }' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi
echo "  mirror $mirror, suite $suite"

base_key=$(printf '%s\n' "$mirror" "$suite" "$packages" "minbase" | sha256sum | cut -c1-16)
base=$cache/base-$base_key
inputs=$( { sha256sum "$0" "$deb" | cut -d' ' -f1; echo "$base_key $size"; } | sha256sum | cut -c1-16)
if [ "$force" = 0 ] && [ -f "$out" ] && [ "$(cat "$out.inputs" 2>/dev/null)" = "$inputs" ]; then
    n=$((total - 1))
    step "image up to date (inputs $inputs): $out"
    uptodate=1
else
    uptodate=0
fi

if [ "$uptodate" = 0 ]; then
    step "debootstrap $suite (minbase + $packages)"
    mkdir -p "$cache/debs"
    if [ -f "$base/.complete" ]; then
        echo "  cached: $base"
    else
        rm -rf "$base.tmp"
        log=$cache/debootstrap-$base_key.log
        # How many lines the last run printed: the bar's 100%.
        expect=$(cat "$cache/debootstrap.lines" 2>/dev/null || echo 700)
        lines=0 phase=
        while IFS= read -r line; do
            echo "$line" >>"$log"
            lines=$((lines + 1))
            case "$line" in
                "I: Retrieving"*) p="retrieving packages" ;;
                "I: Validating"*) p="validating packages" ;;
                "I: Extracting"*) p="extracting the base" ;;
                "I: Unpacking"*) p="unpacking packages" ;;
                "I: Configuring"*) p="configuring packages" ;;
                *) p=$phase ;;
            esac
            if [ "$tty" = 1 ]; then
                bar "$lines" "$expect" "$p: ${line#I: }"
            elif [ "$p" != "$phase" ]; then
                echo "  debootstrap: $p"
            fi
            phase=$p
        done < <(debootstrap --variant=minbase --cache-dir="$cache/debs" --include="$packages" \
                     "$suite" "$base.tmp" "$mirror" 2>&1; echo "debootstrap-exit: $?")
        [ "$tty" = 1 ] && echo
        grep -q '^debootstrap-exit: 0$' "$log" || { tail -n 20 "$log" >&2; die "debootstrap failed (log: $log)"; }
        echo "$lines" >"$cache/debootstrap.lines"
        rm -rf "$base"
        mv "$base.tmp" "$base"
        touch "$base/.complete"
    fi

    work=$(mktemp -d "${out%/*}.work.XXXXXX" 2>/dev/null || { mkdir -p "${out%/*}"; mktemp -d "${out%/*}/.work.XXXXXX"; })
    trap 'umount -R "$work/root/proc" 2>/dev/null || true; rm -rf "$work"' EXIT
    root=$work/root
    step "copying the base tree"
    cp -a "$base" "$root"
    rm -f "$root/.complete"

    step "installing $(basename "$deb")"
    cp "$deb" "$root/tmp/"
    mount -t proc proc "$root/proc"
    chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        dpkg -i "/tmp/$(basename "$deb")" | sed 's/^/  /'
    umount "$root/proc"
    rm -f "$root/tmp/$(basename "$deb")"

    step "configuring: virtio-gpu transport, serial console, self-test unit"
    sed -i 's|^transport = .*|transport = virtio-gpu|' "$root/etc/guesticd.conf"
    echo guesticd-guest >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\tguesticd-guest\n' >"$root/etc/hosts"
    printf 'LABEL=guesticd-root\t/\text4\terrors=remount-ro\t0\t1\n' >"$root/etc/fstab"
    # A test image: root logs in on the serial console without a password.
    chroot "$root" passwd -d root >/dev/null
    mkdir -p "$root/etc/systemd/system/serial-getty@ttyS0.service.d"
    printf '[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --keep-baud 115200,38400,9600 %%I $TERM\n' \
        >"$root/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf"
    cat >"$root/usr/local/sbin/guesticd-selftest" <<'EOF'
#!/bin/sh
# Asked for by QEMU's -fw_cfg name=opt/org.guesticd.selftest,string=1: vulkaninfo through the GuestIcd driver
# on the serial console, then power off. Otherwise nothing.
modprobe qemu_fw_cfg 2>/dev/null
[ -e /sys/firmware/qemu_fw_cfg/by_name/opt/org.guesticd.selftest/raw ] || exit 0
exec >/dev/ttyS0 2>&1
echo "guesticd-selftest: starting"
for _ in $(seq 60); do [ -e /dev/dri/renderD128 ] && break; sleep 0.5; done
echo "guesticd-selftest: render node: $(ls /dev/dri 2>&1 | tr '\n' ' ')"
env -i PATH=/usr/bin:/bin HOME=/root vulkaninfo --summary 2>&1
echo "guesticd-selftest: vulkaninfo exit $?"
sync
systemctl poweroff --force
EOF
    chmod 0755 "$root/usr/local/sbin/guesticd-selftest"
    cat >"$root/etc/systemd/system/guesticd-selftest.service" <<'EOF'
[Unit]
Description=GuestIcd self-test when QEMU asks for it (fw_cfg opt/org.guesticd.selftest)
ConditionVirtualization=qemu
After=systemd-udevd.service systemd-modules-load.service
# Before the console's getty, which would hang up the serial port under our output.
Before=getty.target serial-getty@ttyS0.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/guesticd-selftest

[Install]
WantedBy=multi-user.target
EOF
    ln -sf /etc/systemd/system/guesticd-selftest.service "$root/etc/systemd/system/multi-user.target.wants/guesticd-selftest.service"
    # virtio-gpu early rather than when udev's coldplug gets to it (slow under TCG). No periodic jobs that
    # compete with the guest's work, no first-boot questions, no package caches in the image.
    echo virtio_gpu >"$root/etc/modules-load.d/guesticd.conf"
    for u in e2scrub_reap.service getty-static.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
             fstrim.timer; do
        ln -sf /dev/null "$root/etc/systemd/system/$u"
    done
    rm -f "$root/etc/machine-id"; : >"$root/etc/machine-id"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/*
    cat >"$root/etc/default/guesticd-image" <<EOF
# Written by scripts/guest-image.sh
GUESTICD_IMAGE_INPUTS=$inputs
GUESTICD_IMAGE_PACKAGE=$(basename "$deb")
EOF

    step "the ext4 root filesystem"
    kver=$(basename "$(readlink "$root/vmlinuz")"); kver=${kver#vmlinuz-}
    img=$work/disk.img
    rm -f "$img"; truncate -s "$size" "$img"
    # One partition from 1 MiB: the gap before it holds GRUB's core image.
    echo 'label: dos
start=2048, type=83, bootable' | sfdisk --quiet "$img"
    bytes=$(stat -c %s "$img"); part_sectors=$((bytes / 512 - 2048))
    mke2fs -q -t ext4 -L guesticd-root -d "$root" -E offset=$((2048 * 512)) "$img" "$((part_sectors / 2))k" \
        || die "mke2fs failed"

    step "GRUB in the MBR (i386-pc, kernel $kver)"
    # No grub-install: it wants a block device. The core image has its configuration built in, so it needs no
    # /boot/grub on the disk; boot.img's default points at sector 1, where the core image goes, and
    # grub-mkimage fills in the core image's own length.
    cat >"$work/grub.cfg" <<EOF
set timeout=0
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
insmod part_msdos
insmod ext2
set root=(hd0,msdos1)
linux /boot/vmlinuz-$kver root=LABEL=guesticd-root ro console=ttyS0,115200
initrd /boot/initrd.img-$kver
boot
EOF
    grub-mkimage -O i386-pc -o "$work/core.img" -c "$work/grub.cfg" -p '(hd0,msdos1)/boot/grub' \
        biosdisk part_msdos ext2 linux normal serial terminal echo test boot
    core_sectors=$(( ($(stat -c %s "$work/core.img") + 511) / 512 ))
    [ "$core_sectors" -lt 2047 ] || die "GRUB's core image ($core_sectors sectors) does not fit before the partition"
    dd if=/usr/lib/grub/i386-pc/boot.img of="$img" bs=440 count=1 conv=notrunc status=none
    dd if="$work/core.img" of="$img" bs=512 seek=1 conv=notrunc status=none

    mkdir -p "${out%/*}"
    mv "$img" "$out"
    echo "$inputs" >"$out.inputs"
    step "done: $out ($(du -h --apparent-size "$out" | cut -f1) sparse, $(du -h "$out" | cut -f1) used)"
fi

step "pairing it with hostsim"
cat <<EOF
  Start hostsim as the guest's virtio-gpu backend, then QEMU (10 or newer: vhost-user-gpu without KVM):

    guesticd-hostsim serve --listen vhost-user-gpu:/run/guesticd/vgpu.sock

    qemu-system-x86_64 -machine pc,memory-backend=mem -accel kvm -cpu host -m 1024 -smp 2 -nographic \\
      -object memory-backend-memfd,id=mem,size=1024M,share=on \\
      -chardev socket,id=vgpu,path=/run/guesticd/vgpu.sock -device vhost-user-gpu-pci,chardev=vgpu \\
      -drive file=$out,format=raw,if=virtio

  (no KVM: -accel tcg -cpu max). Root logs in on the console without a password: run vulkaninfo --summary.
  -fw_cfg name=opt/org.guesticd.selftest,string=1 runs it at boot on the console and powers off.
EOF
