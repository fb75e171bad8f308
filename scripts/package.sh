#!/usr/bin/env bash
# Builds the two Debian packages into out/packages/:
#   guesticd          the guest: libguesticd.so, its loader manifest, /etc/guesticd.conf
#   guesticd-hostsim  the host: hostsim (self-contained: no .NET runtime package needed), its systemd unit,
#                     /etc/guesticd/hostsim.conf
# then runs lintian on them (when installed). Packaging files: packaging/. See README "Packages and guest image".
#
#   scripts/package.sh [--no-build | --reuse-icd] [--no-lintian]
#     --no-build    package what out/icd and out/packaging/hostsim already hold
#     --reuse-icd   take out/icd as scripts/build.sh left it; publish only the self-contained hostsim
#     --no-lintian  skip the lintian run
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
build=1 lint=1
for a in "$@"; do
    case "$a" in
        --no-build) build=0 ;;
        --reuse-icd) build=2 ;;
        --no-lintian) lint=0 ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "package.sh: unknown option $a" >&2; exit 2 ;;
    esac
done
for tool in dpkg-deb dpkg-shlibdeps gzip; do
    command -v "$tool" >/dev/null || { echo "package.sh: $tool not found: run scripts/setup.sh (dpkg-dev)" >&2; exit 1; }
done

work=$repo/out/packaging
dest=$repo/out/packages
arch=amd64
multiarch=x86_64-linux-gnu
# The version is the packaging changelog's (its first line); both packages share it.
version=$(sed -n '1s/^guesticd (\([^)]*\)).*/\1/p' packaging/changelog)
[ -n "$version" ] || { echo "package.sh: no version in packaging/changelog" >&2; exit 1; }

# Who the packages name as maintainer: DEBFULLNAME/DEBEMAIL as dch takes them, else git's user.
name=${DEBFULLNAME:-$(git config user.name 2>/dev/null || true)}
email=${DEBEMAIL:-$(git config user.email 2>/dev/null || true)}
maintainer="${name:-GuestIcd developers} <${email:-guesticd@localhost}>"

step() { echo "package.sh: $*"; }

if [ "$build" = 1 ]; then
    step "building the ICD (NativeAOT) into out/icd"
    dotnet publish src/GuestIcd.Icd -c Release -o out/icd --verbosity quiet -nologo
fi
if [ "$build" != 0 ]; then
    step "publishing hostsim self-contained into out/packaging/hostsim"
    rm -rf "$work/hostsim"
    dotnet publish hostsim/GuestIcd.HostSim -c Release -r linux-x64 --self-contained -o "$work/hostsim" \
        --verbosity quiet -nologo
fi
[ -f out/icd/libguesticd.so ] || { echo "package.sh: out/icd/libguesticd.so missing (drop --no-build)" >&2; exit 1; }
[ -x "$work/hostsim/guesticd-hostsim" ] || { echo "package.sh: $work/hostsim missing (drop --no-build)" >&2; exit 1; }

# dpkg-shlibdeps wants a debian/control to read; these stand-ins name both packages.
mkdir -p "$work/shlibdeps/debian"
printf 'Source: guesticd\n\nPackage: guesticd\nArchitecture: %s\n\nPackage: guesticd-hostsim\nArchitecture: %s\n' \
    "$arch" "$arch" >"$work/shlibdeps/debian/control"
shlibdeps() {  # ELF files... -> "libc6 (>= 2.34), ..." 
    local out
    out=$(cd "$work/shlibdeps" && dpkg-shlibdeps -O --warnings=0 "$@") || { echo "package.sh: dpkg-shlibdeps failed" >&2; exit 1; }
    sed -n 's/^shlibs:Depends=//p' <<<"$out"
}

docs() {  # package root name: copyright, changelog, README.Debian
    local root=$1 name=$2
    install -d "$root/usr/share/doc/$name"
    install -m 0644 packaging/copyright "$root/usr/share/doc/$name/copyright"
    sed "s|@MAINTAINER@|$maintainer|" packaging/changelog | gzip -9n >"$root/usr/share/doc/$name/changelog.Debian.gz"
    chmod 0644 "$root/usr/share/doc/$name/changelog.Debian.gz"
}

manpage() {  # root source section
    install -d "$1/usr/share/man/man$3"
    gzip -9n <"$2" >"$1/usr/share/man/man$3/$(basename "$2").gz"
    chmod 0644 "$1/usr/share/man/man$3/$(basename "$2").gz"
}

control() {  # root name depends description...
    local root=$1 name=$2 depends=$3; shift 3
    local size
    size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
    {
        echo "Package: $name"
        echo "Version: $version"
        echo "Architecture: $arch"
        echo "Maintainer: $maintainer"
        echo "Installed-Size: $size"
        echo "Depends: $depends"
        echo "Section: graphics"
        echo "Priority: optional"
        printf '%s\n' "$@"
    } >"$root/DEBIAN/control"
}

finish() {  # root name: md5sums, the .deb
    local root=$1 name=$2
    (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) \
        >"$root/DEBIAN/md5sums"
    chmod 0644 "$root/DEBIAN/md5sums"
    mkdir -p "$dest"
    dpkg-deb --root-owner-group -Zxz --build "$root" "$dest/${name}_${version}_${arch}.deb" >/dev/null
    step "built out/packages/${name}_${version}_${arch}.deb ($(du -h "$dest/${name}_${version}_${arch}.deb" | cut -f1))"
}

rm -rf "$work/guesticd" "$work/guesticd-hostsim"
mkdir -p "$dest"
rm -f "$dest"/guesticd_*.deb "$dest"/guesticd-hostsim_*.deb

# ---- guesticd ---------------------------------------------------------------------------------------------
r=$work/guesticd
lib=/usr/lib/$multiarch/guesticd/libguesticd.so
install -d "$r/DEBIAN" "$r/usr/lib/$multiarch/guesticd" "$r/usr/share/vulkan/icd.d" "$r/etc" \
    "$r/usr/share/lintian/overrides"
install -m 0644 out/icd/libguesticd.so "$r$lib"
sed "s|@LIBRARY_PATH@|$lib|" icd-manifests/guesticd_icd.x86_64.json.in >"$r/usr/share/vulkan/icd.d/guesticd_icd.x86_64.json"
chmod 0644 "$r/usr/share/vulkan/icd.d/guesticd_icd.x86_64.json"
install -m 0644 packaging/guesticd/guesticd.conf "$r/etc/guesticd.conf"
install -m 0644 packaging/guesticd/lintian-overrides "$r/usr/share/lintian/overrides/guesticd"
docs "$r" guesticd
sed "s|@MAINTAINER@|$maintainer|" packaging/guesticd/README.Debian >"$r/usr/share/doc/guesticd/README.Debian"
chmod 0644 "$r/usr/share/doc/guesticd/README.Debian"
manpage "$r" packaging/guesticd/guesticd.conf.5 5
echo /etc/guesticd.conf >"$r/DEBIAN/conffiles"
deps=$(shlibdeps "$r$lib")
control "$r" guesticd "${deps:+$deps, }libvulkan1" \
    "Description: Vulkan driver for virtual machines that runs on the host's GPU" \
    " GuestIcd is a paravirtual Vulkan driver: this package is its guest side, a" \
    " Vulkan ICD that the Khronos loader finds by itself. It sends the" \
    " application's Vulkan calls over virtio-gpu, virtio-serial, a unix socket," \
    " TCP or vsock to guesticd-hostsim, which runs them on the host's driver." \
    " ." \
    " /etc/guesticd.conf says how to reach the host."
finish "$r" guesticd

# ---- guesticd-hostsim --------------------------------------------------------------------------------------
r=$work/guesticd-hostsim
app=/usr/lib/guesticd-hostsim
install -d "$r/DEBIAN" "$r$app" "$r/usr/bin" "$r/lib/systemd/system" "$r/etc/guesticd" "$r/usr/share/lintian/overrides"
# The self-contained publish: the apphost, hostsim's assemblies, the .NET runtime and its native parts.
# Left out: debug symbols (hostsim's .pdb, the runtime's .dbg would double the package), the runtime's optional
# LTTng trace provider (needs liblttng-ust), debugger support (libmscordbi, libmscordaccore) and the
# standalone GCs (libclrgc*, only used when DOTNET_GCName asks for one): the runtime runs without them.
(cd "$work/hostsim" && find . -type f ! -name '*.pdb' ! -name '*.dbg' ! -name libcoreclrtraceptprovider.so \
    ! -name 'libmscord*.so' ! -name 'libclrgc*.so' -printf '%P\n') | while read -r f; do
    mode=0644
    case "$f" in guesticd-hostsim|createdump) mode=0755 ;; esac
    install -D -m "$mode" "$work/hostsim/$f" "$r$app/$f"
done
# Our own native library is built with symbols (the runtime's come stripped); policy wants them out.
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$r$app/libguesticd_spirv.so"
ln -s "../lib/guesticd-hostsim/guesticd-hostsim" "$r/usr/bin/guesticd-hostsim"
install -m 0644 packaging/guesticd-hostsim/guesticd-hostsim.service "$r/lib/systemd/system/guesticd-hostsim.service"
install -m 0644 packaging/guesticd-hostsim/hostsim.conf "$r/etc/guesticd/hostsim.conf"
install -m 0644 packaging/guesticd-hostsim/lintian-overrides "$r/usr/share/lintian/overrides/guesticd-hostsim"
docs "$r" guesticd-hostsim
manpage "$r" packaging/guesticd-hostsim/guesticd-hostsim.8 8
echo /etc/guesticd/hostsim.conf >"$r/DEBIAN/conffiles"
install -m 0755 packaging/guesticd-hostsim/postinst packaging/guesticd-hostsim/prerm packaging/guesticd-hostsim/postrm "$r/DEBIAN/"
mapfile -t elves < <(find "$r$app" -type f \( -name '*.so' -o -name guesticd-hostsim -o -name createdump \))
deps=$(shlibdeps "${elves[@]}")
# dlopened, so not seen by dpkg-shlibdeps: the Vulkan loader (and a driver for it), OpenSSL for TLS.
control "$r" guesticd-hostsim "${deps:+$deps, }libvulkan1, mesa-vulkan-drivers | vulkan-icd, libssl3, adduser" \
    "Description: GuestIcd host service: runs guests' Vulkan calls on this GPU" \
    " GuestIcd is a paravirtual Vulkan driver: this package is its host side." \
    " guesticd-hostsim receives the Vulkan command streams of guests (virtual" \
    " machines over virtio-gpu or virtio-serial, or remote machines over TCP or" \
    " vsock), checks every call and runs it on the host's Vulkan driver, one" \
    " worker process per guest session." \
    " ." \
    " The package runs it as the systemd service guesticd-hostsim, configured" \
    " by /etc/guesticd/hostsim.conf. It carries its own .NET runtime."
finish "$r" guesticd-hostsim

if [ "$lint" = 1 ]; then
    if command -v lintian >/dev/null; then
        step "lintian (remaining tags are overridden with a reason in packaging/*/lintian-overrides):"
        lintian "$dest"/guesticd_"$version"_$arch.deb \
            "$dest"/guesticd-hostsim_"$version"_$arch.deb | sed 's/^/  /' || true
        step "lintian done"
    else
        step "lintian not installed (scripts/setup.sh installs it): packages not checked"
    fi
fi
