#!/usr/bin/env bash
# Installs what building and running GuestIcd needs on Debian 12, idempotently: apt packages only when
# one is missing, then the NuGet restore. Sourced by demo.sh and test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(
  libvulkan1 libvulkan-dev          # the Khronos loader (the guest's and hostsim's) and vk.xml for the generator
  mesa-vulkan-drivers               # lavapipe: the host driver when no GPU is lent
  vulkan-tools                      # vulkaninfo: the real application of the demo and the tests
  vulkan-validationlayers glslc     # used by the client tests
  clang gcc zlib1g-dev              # NativeAOT links libguesticd.so with clang; gcc builds native-shim
  qemu-system-x86 busybox-static cpio kmod  # tests/vm/run-in-vm.sh: the guest VM, its initramfs, module deps
  afl++ gdb                         # tests/fuzz: the coverage-guided fuzzer, and crash-site triage
  spirv-tools                       # libSPIRV-Tools.a: hostsim's gate validates shader code (native-shim/spirv)
  xvfb x11-apps x11-utils imagemagick  # presentation tests and demo: an X server without a display, xwd/xwininfo, PNGs
  mesa-utils libgl-dev              # glxinfo/glxgears and the GL test client (OpenGL through Zink)
  libx11-dev libx11-xcb-dev libxcb1-dev libxcb-shm0  # the X11 C clients; libxcb-shm for MIT-SHM presentation
  weston libwayland-dev libwayland-bin wayland-protocols  # Wayland tests: headless Weston, the client's headers, wayland-scanner, xdg-shell.xml
  dpkg-dev lintian                  # scripts/package.sh: dpkg-deb, dpkg-shlibdeps, and the packages' check
  debootstrap e2fsprogs fdisk grub-pc-bin  # scripts/guest-image.sh: the guest's root, its ext4, MBR, GRUB (not installed to any disk here)
  valgrind                          # tests/bench/callgrind.sh: instructions per recorded command
  libdrm-dev                        # virtgpu_drm.h: the virtio-gpu transport's UAPI layout check (Transport.Tests)
)
names=$(printf '%s\n' "${packages[@]}" | sed 's/#.*//' | tr -s ' ' '\n' | grep -v '^$')
missing=()
for p in $names; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${missing[@]}"
fi
# Wine for tests/GuestIcd.Tests/WineHostTests.cs: the win-x64 hostsim under wine64, its Vulkan through
# winevulkan onto lavapipe. Without recommends (102 MB of packages; about 15 s to install on a CI machine).
if ! dpkg-query -W -f='${Status}' wine64 2>/dev/null | grep -q "ok installed"; then
  echo "setup: installing wine64"
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends wine64
fi
# QEMU 10 from bookworm-backports: Debian 12's 7.2 refuses vhost-user-gpu without KVM, which this kind of
# machine lacks (tests/vm: hostsim as the guest's virtio-gpu backend, serve --listen vhost-user-gpu:SOCK).
if grep -q '^VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null \
   && ! dpkg --compare-versions "$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || echo 0)" ge 1:10; then
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "setup: adding the bookworm-backports apt source (for QEMU 10)"
    printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm-backports' 'Components: main' \
      'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' | $sudo_cmd tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
  fi
  echo "setup: installing qemu-system-x86 from bookworm-backports"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q -t bookworm-backports qemu-system-x86
fi
if ! command -v dotnet >/dev/null; then
  echo "setup: the .NET 10 SDK is required (dotnet on PATH); Debian 12 does not package it" >&2
  exit 1
fi
dotnet restore GuestIcd.sln --verbosity quiet
# SharpFuzz.CommandLine (instruments the fuzz harness's assemblies): a local tool, .config/dotnet-tools.json.
dotnet tool restore --verbosity quiet >/dev/null
# An independent Vulkan client (Silk.NET) that the tests build on their own: not part of the solution.
dotnet restore tests/GuestIcd.SilkClient --verbosity quiet
