#!/usr/bin/env bash
# The nixlayer demo on a fresh Debian machine (as root): install what is
# needed, build nixlayer, build a C package layer by layer, edit its
# postInstall, and watch the rebuild resume from installPhase.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="/usr/local/go/bin:$PATH"
repo=$PWD
NFILES=${NFILES:-150}

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

bash scripts/install-deps.sh
say "building nixlayer"
go build -o bin/nixlayer ./cmd/nixlayer
nixlayer=$repo/bin/nixlayer

work=$(mktemp -d /tmp/nixlayer-demo.XXXXXX)
cache=$work/cache
cd "$work"
# A package file of the user's own, on top of the fixture stdenv (no nixpkgs here).
write_pkg() {
	cat > hello.nix <<NIX
let fx = import $repo/testdata { nfiles = $NFILES; salt = "$(basename "$work")"; };
in fx.mkDerivation {
  pname = "hello";
  version = "1";
  src = fx.helloSrc;
  configureFlags = "--nfiles=$NFILES";
  enableParallelBuilding = true;
  postInstall = ''
    mkdir -p \$out/share/hello
    \$out/bin/hello > \$out/share/hello/output.txt
    $1
  '';
}
NIX
}
write_pkg ""

say "1. cold layered build (every phase runs, each snapshotted as a layer)"
time "$nixlayer" build --cache "$cache" -Q --no-learn hello.nix

say "1b. learn which bytes depend on \$out (normally runs in the background after a cold build)"
time "$nixlayer" learn --cache "$cache" hello.nix

say "2. edit postInstall in hello.nix"
write_pkg 'echo "built with nixlayer" > $out/share/hello/note'
grep -n 'note' hello.nix

say "3. what would run, and why"
"$nixlayer" plan --cache "$cache" hello.nix

say "4. resumed build: only installPhase and later run; the output is rewritten exactly and registered"
time "$nixlayer" build --cache "$cache" -Q hello.nix
echo; cat result/share/hello/note
say "done: workspace $work"
