#!/usr/bin/env bash
# Build every fixture package of testdata/default.nix with plain nix-build under the
# sandbox, check that each is bit-reproducible (nix-build --check) and that
# `failing` fails in installPhase. Usage: bash scripts/check-fixtures.sh [NFILES]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
nfiles=${1:-20}
for p in hello gnuhello multi cmd structured custom; do
    start=$(date +%s)
    out=$(nix-build --no-out-link testdata -A "$p" --arg nfiles "$nfiles" 2>/dev/null)
    nix-build --no-out-link --check testdata -A "$p" --arg nfiles "$nfiles" >/dev/null 2>&1 ||
        { echo "FAIL: $p is not reproducible (nix-build --check)" >&2; exit 1; }
    echo "ok: $p -> $out ($(( $(date +%s) - start )) s incl. --check)"
done
if log=$(nix-build --no-out-link testdata -A failing 2>&1); then
    echo "FAIL: failing built successfully" >&2; exit 1
fi
grep -q 'installPhase failed on purpose' <<<"$log" || { echo "FAIL: failing did not fail in installPhase" >&2; echo "$log" >&2; exit 1; }
echo "ok: failing fails in installPhase"
