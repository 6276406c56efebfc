#!/usr/bin/env bash
# Benchmark of the layered runner on the medium fixture (hello, NFILES C files),
# measured in one run on this machine:
#   1. cold `nixlayer build` ÷ `nix-build` of the same package (target ≤ 1.10);
#   2. full rebuild after an installPhase edit (nix-build) ÷ resumed
#      `nixlayer build` of the same edit (target ≥ 10).
# Every build gets fresh output paths (a unique salt), so nothing is reused by accident.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="/usr/local/go/bin:$PATH"
NFILES=${NFILES:-300}
go build -o bin/nixlayer ./cmd/nixlayer
nl=$PWD/bin/nixlayer
work=$(mktemp -d /tmp/nixlayer-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
cache=$work/cache
salt=$(date +%s%N)

secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>"$work/last.log" || { cat "$work/last.log"; exit 1; }; e=$(date +%s.%N); echo "$e - $s" | bc; }
pkg() { echo testdata -A hello --arg nfiles "$NFILES" --argstr salt "$1"; }

echo "benchmark: hello with $NFILES generated C files, $(nproc) cores, $(nix --version)"
export NIXLAYER_BACKGROUND_LEARN=0 # the learner is timed on its own below
t_nix=$(secs nix-build --no-out-link $(pkg "nix-$salt")) || exit 1
t_cold=$(secs "$nl" build -Q --cache "$cache" --no-out-link $(pkg "nl-$salt")) || exit 1
# What `nixlayer build` starts in the background after a cold build.
t_learn=$(secs "$nl" learn --cache "$cache" $(pkg "nl-$salt")) || exit 1
edit=(--argstr installExtra 'echo edited > $out/edited')
t_full=$(secs nix-build --no-out-link $(pkg "nix-$salt") "${edit[@]}") || exit 1
t_resume=$(secs "$nl" build -Q --cache "$cache" --no-out-link $(pkg "nl-$salt") "${edit[@]}") || exit 1
edit2=(--argstr installExtra 'echo edited again > $out/edited')
t_resume2=$(secs "$nl" build -Q --cache "$cache" --no-out-link $(pkg "nl-$salt") "${edit2[@]}") || exit 1

printf '\n%-46s %8.2f s\n' "nix-build (cold)" "$t_nix"
printf '%-46s %8.2f s\n' "nixlayer build (cold)" "$t_cold"
printf '%-46s %8.2f s\n' "background path-map learning (once per chain)" "$t_learn"
printf '%-46s %8.2f s\n' "nix-build after installPhase edit (full)" "$t_full"
printf '%-46s %8.2f s\n' "nixlayer build after installPhase edit" "$t_resume"
printf '%-46s %8.2f s\n' "nixlayer build after a second edit" "$t_resume2"
printf '\ncold nixlayer / nix-build        = %.3f   (target <= 1.10)\n' "$(echo "$t_cold / $t_nix" | bc -l)"
printf 'full rebuild / resumed build     = %.1f    (target >= 10)\n' "$(echo "$t_full / $t_resume" | bc -l)"
printf 'full rebuild / second resume     = %.1f\n' "$(echo "$t_full / $t_resume2" | bc -l)"
grep -q 'output path: exact' "$work/last.log" && echo "resumed outputs: rewritten exactly, registered in the Nix store" || { echo "resumed outputs were NOT exact:"; cat "$work/last.log"; }

# Layers through an OCI registry (Debian's docker-registry on 127.0.0.1): the
# bench cache stands for CI (cold build + learned path map, pushed, signed);
# a laptop with an empty cache edits postInstall and pulls + resumes.
echo
if command -v docker-registry >/dev/null; then
    listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
    port=$((20000 + RANDOM % 40000)); while listening "$port"; do port=$((20000 + RANDOM % 40000)); done
    mkdir -p "$work/reg" "$work/laptop" && chmod 700 "$work/laptop"
    printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' "$work/reg/data" "$port" >"$work/reg/config.yml"
    docker-registry serve "$work/reg/config.yml" >"$work/reg/log" 2>&1 &
    regpid=$!
    trap 'kill $regpid 2>/dev/null; rm -rf "$work"' EXIT
    for _ in $(seq 100); do listening "$port" && break; sleep 0.1; done
    repo="127.0.0.1:$port/bench/layers"
    nix-store --generate-binary-cache-key bench-ci-1 "$work/sk" "$work/pk"
    printf '{"insecureRegistries":["127.0.0.1:%s"],"secretKeyFile":"%s"}' "$port" "$work/sk" >"$cache/config.json"
    printf '{"layerCaches":["%s"],"trustedLayerKeys":["%s"],"insecureRegistries":["127.0.0.1:%s"]}' "$repo" "$(cat "$work/pk")" "$port" >"$work/laptop/config.json"
    s=$(date +%s.%N); "$nl" push --json --cache "$cache" "$repo" -f $(pkg "nl-$salt") >"$work/push1.json" 2>"$work/last.log" || { cat "$work/last.log"; exit 1; }; e=$(date +%s.%N)
    t_push=$(echo "$e - $s" | bc)
    "$nl" push --json --cache "$cache" "$repo" -f $(pkg "nl-$salt") >"$work/push2.json" 2>"$work/last.log" || { cat "$work/last.log"; exit 1; }
    field() { grep -o "\"$1\": *[0-9]*" "$2" | head -n1 | grep -o '[0-9]*$'; }
    pedit=(--argstr postInstallExtra 'echo laptop > $out/laptop')
    t_pull=$(secs "$nl" build -Q --cache "$work/laptop" --no-out-link $(pkg "nl-$salt") "${pedit[@]}") || exit 1
    pulled=$(grep -o 'pulled [0-9]* layers ([^)]*)' "$work/last.log" || echo "nothing pulled")
    grep -q 'outputs registered' "$work/last.log" && exact="exact, registered" || exact="NOT registered"
    printf '%-46s %8.2f s   (%.1f MiB of compressed layers, %.1f MiB sent)\n' "first push of the chain (9 layers)" "$t_push" \
        "$(echo "$(field layerBytes "$work/push1.json") / 1048576" | bc -l)" "$(echo "$(field uploaded "$work/push1.json") / 1048576" | bc -l)"
    printf '%-46s %8s     %s bytes sent, %s blobs sent\n' "second push of the same chain" "" "$(field uploaded "$work/push2.json")" "$(field blobsSent "$work/push2.json")"
    printf '%-46s %8.2f s   (%s; %s)\n' "laptop: pull + resume after a postInstall edit" "$t_pull" "$pulled" "$exact"
    printf 'full local build / pull + resume  = %.1f   (nix-build after an edit: %.2f s; cold nixlayer: %.2f s)\n' "$(echo "$t_full / $t_pull" | bc -l)" "$t_full" "$t_cold"
    kill $regpid 2>/dev/null
else
    echo "registry benchmark skipped: docker-registry is not installed (scripts/install-deps.sh)"
fi

echo
echo "language server latency on a 3,000-line .nix file (targets: codeLens p99 <= 20 ms, didChange -> lenses <= 50 ms):"
NIXLAYER_BENCH=1 go test -count=1 -run '^TestLatency3000Lines$' -v ./lsp/ 2>&1 | grep -E 'codeLens|targets' | sed 's/^ *latency_test.go:[0-9]*: /  /'
