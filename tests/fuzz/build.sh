#!/usr/bin/env bash
# Builds the fuzz harness into out/fuzz and instruments hostsim and the protocol assemblies for AFL
# (SharpFuzz rewrites them in place; the tool comes from .config/dotnet-tools.json).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out=${GUESTICD_OUT:-out}/fuzz
dotnet tool restore --verbosity quiet >/dev/null
dotnet publish tests/GuestIcd.Fuzz -c Release -o "$out" --verbosity quiet -nologo
for dll in guesticd-hostsim.dll GuestIcd.Protocol.dll; do
  # Instrumenting twice is refused; a fresh publish has put back the plain assembly when it changed.
  dotnet sharpfuzz "$out/$dll" 2>&1 | grep -v "already instrumented" || true
done
