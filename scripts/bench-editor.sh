#!/usr/bin/env bash
# Benchmark of the editor side of live lenses: CPU time of VS Code's
# extension host (and the browser's renderer, and `nixlayer lsp`) during a
# cold build of the medium fixture (testdata's gnuhello, NFILES=300 C files) in code-server,
# with lenses refreshed every second and refreshed only as phases end.
# Target: the live lenses cost under 1 % of one core in the extension host.
# Installs what it needs like `npm test` (scripts/test-vscode.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
NIXLAYER_BENCH=1 exec bash scripts/test-vscode.sh --test-name-pattern="editor host CPU"
