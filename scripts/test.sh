#!/usr/bin/env bash
# Every test: unit, property, layout, and integration tests against the real loader, lavapipe and hostsim.
# Ends with one line "N passed, N failed, N skipped" and exits non-zero when anything failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh || exit 1
bash scripts/build.sh || { echo "0 passed, 1 failed"; exit 1; }
# hostsim for a Windows host (README "Hyper-V"): must keep building; WineHostTests runs it under Wine.
dotnet publish hostsim/GuestIcd.HostSim -c Release -r win-x64 -o out/hostsim-win --verbosity quiet -nologo \
  || { echo "0 passed, 1 failed (the win-x64 hostsim does not build)"; exit 1; }
mkdir -p out/logs
# Before the timed run: the packages (PackageTests) and the guest image (GuestImageTests; cached, see README).
bash scripts/package.sh --reuse-icd >out/logs/package.log 2>&1 || { cat out/logs/package.log; echo "0 passed, 1 failed"; exit 1; }
bash scripts/guest-image.sh >out/logs/guest-image.log 2>&1 || echo "test.sh: scripts/guest-image.sh failed (out/logs/guest-image.log); GuestImageTests will say why"
dotnet test GuestIcd.sln -c Release --nologo 2>&1 | tee out/logs/test.log
status=${PIPESTATUS[0]}
# Bounded fuzz runs (tests/fuzz/README.md): each prints one "Failed: N, Passed: N, Skipped: N" line,
# counted below like a test. A crash or hang fails it: the decoder alone, and hostsim's Session on the real
# driver behind the valid-usage gate.
bash tests/fuzz/run.sh --seconds 60 --target decode 2>&1 | tee -a out/logs/test.log
bash tests/fuzz/run.sh --seconds 60 --target session 2>&1 | tee -a out/logs/test.log
passed=0; failed=0; skipped=0; runs=0
while read -r f p s; do
  failed=$((failed + f)); passed=$((passed + p)); skipped=$((skipped + s)); runs=$((runs + 1))
done < <(sed -nE 's/.*Failed: +([0-9]+), Passed: +([0-9]+), Skipped: +([0-9]+).*/\1 \2 \3/p' out/logs/test.log)
# Test projects are the ones that reference the test SDK (tests/ also holds client programs).
projects=$(grep -l "Microsoft.NET.Test.Sdk" tests/*/*.csproj | wc -l)
if [ "$runs" -lt "$projects" ]; then
  echo "only $runs of $projects test projects reported results"
  failed=$((failed + projects - runs))
fi
[ "$status" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
