#!/usr/bin/env bash
# Installs out/packages/guesticd*.deb with dpkg into a throw-away copy of this machine (an overlay over /
# in a private mount namespace, chrooted: every write vanishes when the script ends), starts the installed
# hostsim the way its systemd unit would (the unit's ExecStart, User, Group, SupplementaryGroups,
# Environment, UMask, RuntimeDirectory, CacheDirectory, read from the installed unit file), then runs
# vulkaninfo and the compute client with an empty environment: the loader finds the installed ICD through
# /usr/share/vulkan/icd.d and the ICD its transport through /etc/guesticd.conf. Finally purges both.
#
#   tests/packages/install-test.sh          (as root; tests/GuestIcd.Tests/PackageTests.cs runs it)
#
# Prints "== NAME" section lines with each step's output; exits 0 when every step worked, 77 when it cannot
# run here (not root, no overlayfs, no packages), 1 otherwise.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

skip() { echo "install-test: $* (skipping)" >&2; exit 77; }
fail() { echo "install-test: FAILED: $*" >&2; exit 1; }
section() { echo "== $*"; }

if [ "${1:-}" != --inside ]; then
    [ "$(id -u)" = 0 ] || skip "needs root (dpkg -i into a chroot, mounts)"
    command -v unshare >/dev/null || skip "unshare not found (util-linux)"
    ls "$repo"/out/packages/guesticd_*_amd64.deb "$repo"/out/packages/guesticd-hostsim_*_amd64.deb >/dev/null 2>&1 \
        || skip "no packages in out/packages: run scripts/package.sh"
    work=$(mktemp -d /var/tmp/guesticd-install-test.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    # Built here with the repository's sources, then copied into the chroot.
    mkdir -p "$work/bin"
    glslc -o "$work/bin/multiply.spv" "$repo/native-shim/shaders/multiply.comp"
    cc -std=c11 -O1 -Wall -Werror -o "$work/bin/compute" "$repo/native-shim/clients/compute.c" -lvulkan
    rc=0
    unshare --mount --propagation private -- bash "$0" --inside "$work" || rc=$?
    exit $rc
fi

work=$2
root=$work/root
mkdir -p "$work/upper" "$work/ovwork" "$root"
mount -t overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/ovwork" guesticd-install-test "$root" \
    || skip "cannot mount an overlay over / (overlayfs)"
mount --rbind /dev "$root/dev"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
mkdir -p "$root/opt/guesticd-test"
cp "$work/bin/"* "$repo"/out/packages/guesticd_*_amd64.deb "$repo"/out/packages/guesticd-hostsim_*_amd64.deb "$root/opt/guesticd-test/"
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

# A machine that had them before (a developer's) gets them removed first, inside the copy only.
in_root dpkg --purge guesticd guesticd-hostsim >/dev/null 2>&1 || true
[ ! -e "$root/usr/share/vulkan/icd.d/guesticd_icd.x86_64.json" ] || fail "a guesticd manifest is there before installing"

section "dpkg -i"
in_root sh -c 'DEBIAN_FRONTEND=noninteractive dpkg -i /opt/guesticd-test/guesticd_*.deb /opt/guesticd-test/guesticd-hostsim_*.deb' 2>&1 \
    || fail "dpkg -i failed"
in_root dpkg-query -W -f='${Package} ${Version} ${Status}\n' guesticd guesticd-hostsim

unit=$root/lib/systemd/system/guesticd-hostsim.service
[ -f "$unit" ] || fail "the unit file is not installed"
section "systemd-analyze verify"
if command -v systemd-analyze >/dev/null; then
    in_root systemd-analyze verify --man=no /lib/systemd/system/guesticd-hostsim.service 2>&1 || fail "systemd-analyze verify refused the unit"
    echo "unit verified"
fi

# The unit's settings, as systemd would apply them (one value per key; Environment= may repeat).
key() { sed -n "s/^$1=//p" "$unit" | tail -n1; }
exec_start=$(key ExecStart)
user=$(key User) group=$(key Group) groups=$(key SupplementaryGroups) umask_=$(key UMask)
runtime_dir=$(key RuntimeDirectory) runtime_mode=$(key RuntimeDirectoryMode) cache_dir=$(key CacheDirectory)
mapfile -t unit_env < <(sed -n 's/^Environment=//p' "$unit")
[ -n "$exec_start" ] && [ -n "$user" ] || fail "the unit has no ExecStart or User"
section "unit"
echo "ExecStart=$exec_start"
echo "User=$user Group=$group SupplementaryGroups=$groups UMask=$umask_"
in_root id "$user" || fail "the package did not create the user $user"

# What systemd does before ExecStart: the runtime and cache directories, owned by the service's user.
in_root install -d -m "${runtime_mode:-0755}" -o "$user" -g "$group" "/run/$runtime_dir"
[ -z "$cache_dir" ] || in_root install -d -m 0700 -o "$user" -g "$group" "/var/cache/$cache_dir"
# The ICD side's configuration, as an administrator would write it: the service's unix socket.
listen=$(in_root sed -n 's/^ *"listen": *\["\([^"]*\)".*/\1/p' /etc/guesticd/hostsim.conf)
[ -n "$listen" ] || fail "no listen entry in /etc/guesticd/hostsim.conf"
sed -i "s|^transport = .*|transport = $listen|" "$root/etc/guesticd.conf"
section "configured"
echo "hostsim.conf listen: $listen"
grep '^transport' "$root/etc/guesticd.conf"

section "hostsim"
sgroups=${groups// /,}
# shellcheck disable=SC2086  # ExecStart is a command line: split as systemd does (no quotes in ours)
# JOURNAL_STREAM: what systemd sets when the unit's output goes to the journal (its default).
chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "${unit_env[@]}" JOURNAL_STREAM=8:4242 \
    setpriv --reuid="$user" --regid="$group" ${sgroups:+--groups="$sgroups"} --no-new-privs \
    sh -c "umask ${umask_:-0022}; exec $exec_start" >"$work/hostsim.log" 2>&1 &
hpid=$!
cleanup_inside() {
    kill "$hpid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$hpid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$hpid" 2>/dev/null || true
}
trap cleanup_inside EXIT
for _ in $(seq 600); do
    grep -q "listening on" "$work/hostsim.log" && break
    kill -0 "$hpid" 2>/dev/null || { cat "$work/hostsim.log"; fail "hostsim exited before listening"; }
    sleep 0.1
done
grep -q "listening on" "$work/hostsim.log" || { cat "$work/hostsim.log"; fail "hostsim never listened"; }
echo "hostsim runs as: $(in_root ps -o user= -p "$hpid")"
in_root ls -l "${listen#unix:}"

section "vulkaninfo"
in_root env HOME=/root vulkaninfo --summary 2>&1 || fail "vulkaninfo failed"

section "compute"
in_root env HOME=/root /opt/guesticd-test/compute /opt/guesticd-test/multiply.spv 100000 2>&1 || fail "the compute client failed"

section "hostsim log"
sleep 0.5
cat "$work/hostsim.log"
cleanup_inside
trap - EXIT

section "dpkg --purge"
in_root dpkg --purge guesticd guesticd-hostsim 2>&1 || fail "dpkg --purge failed"
[ ! -e "$root/usr/share/vulkan/icd.d/guesticd_icd.x86_64.json" ] || fail "the manifest is still there after purging"
[ ! -e "$root/etc/guesticd.conf" ] || fail "/etc/guesticd.conf is still there after purging"
echo "purged"
section "ok"
