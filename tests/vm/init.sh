#!/bin/busybox sh
# /init of the GuestIcd test VM. tests/vm/run-in-vm.sh copies this file, busybox-static and the kernel
# modules it needs into the initramfs; see tests/vm/README.md.
#
# It loads the virtio/9p/overlay modules, mounts the host's root filesystem (9p tag "hostroot",
# read-only) under a tmpfs overlay, mounts /proc /sys /dev /tmp /run and the writable share, then runs
# /ctl/cmd.sh (written by the harness; 9p tag "ctl") chrooted into that root with stdout and stderr
# going to /ctl/stdout and /ctl/stderr, writes its exit status to /ctl/status and reboots, which
# makes qemu (-no-reboot) exit.

/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/null >/dev/console 2>&1
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

log() { echo "guesticd-vm: $*"; }
halt_with() {
    log "$*"
    [ -d /ctl/. ] && [ -w /ctl/stderr ] && echo "run-in-vm (guest init): $*" >>/ctl/stderr
    sync
    reboot -f
    sleep 5
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
hostname guesticd-vm
ip link set lo up 2>/dev/null

# Modules in dependency order (modprobe --show-depends at preparation time; built-ins are left out).
while read -r m; do
    insmod "/lib/modules/$m.ko" || log "insmod $m failed"
done </lib/modules/modules.load

o=trans=virtio,version=9p2000.L,msize=512000
mkdir -p /ctl /lower /rw /newroot
mount -t 9p -o "$o,cache=none" ctl /ctl || halt_with "cannot mount the control folder (9p tag ctl)"
mount -t 9p -o "$o,ro,cache=loose" hostroot /lower || halt_with "cannot mount the host root (9p tag hostroot)"
mount -t tmpfs -o mode=0755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \
    || halt_with "cannot mount the overlay on the host root"

r=/newroot
mount -t proc proc $r/proc
mount -t sysfs sysfs $r/sys
mount -t devtmpfs devtmpfs $r/dev
mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $r/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $r/dev/shm
mount -t tmpfs -o mode=1777 tmpfs $r/tmp
mount -t tmpfs -o mode=0755 tmpfs $r/run

work=
[ -r /ctl/work ] && read -r work </ctl/work
if [ -n "$work" ]; then
    mkdir -p "$r$work"
    mount -t 9p -o "$o,ro" work "$r$work" || halt_with "cannot mount the working directory at $work (9p tag work)"
fi

# After the working directory: a share inside it (a test's folder under out/ of a clone in /tmp) must be
# mounted over the read-only working directory, not hidden under it.
read -r share </ctl/share
if [ -n "$share" ]; then
    mkdir -p "$r$share"
    mount -t 9p -o "$o,cache=none" share "$r$share" || halt_with "cannot mount the share at $share (9p tag share)"
fi

# No udev: give every virtio-serial port its usual /dev/virtio-ports/NAME link.
for p in /sys/class/virtio-ports/*; do
    [ -r "$p/name" ] || continue
    n=$(cat "$p/name")
    [ -n "$n" ] || continue
    mkdir -p $r/dev/virtio-ports
    ln -sf "../${p##*/}" "$r/dev/virtio-ports/$n"
done

read -r bash </ctl/bash
cp /ctl/cmd.sh $r/run/guesticd-vm-cmd.sh
log "running the command"
chroot $r "$bash" /run/guesticd-vm-cmd.sh </dev/null >>/ctl/stdout 2>>/ctl/stderr
echo $? >/ctl/status
sync
reboot -f
sleep 5
