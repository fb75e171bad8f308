#!/usr/bin/env bash
# Builds the two things a guest and a host run: out/icd/libguesticd.so (+ its loader manifest) and out/hostsim.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dotnet publish src/GuestIcd.Icd -c Release -o out/icd --verbosity quiet -nologo
dotnet publish hostsim/GuestIcd.HostSim -c Release -o out/hostsim --verbosity quiet -nologo
sed "s|@LIBRARY_PATH@|$PWD/out/icd/libguesticd.so|" icd-manifests/guesticd_icd.x86_64.json.in > out/icd/guesticd_icd.x86_64.json
echo "built out/icd/libguesticd.so, out/icd/guesticd_icd.x86_64.json, out/hostsim/guesticd-hostsim"
