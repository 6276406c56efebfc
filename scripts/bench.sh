#!/usr/bin/env bash
# Benchmark of the layered runner on the medium fixture (hello, NFILES C files),
# measured in one run on this machine:
#   1. cold `nixlayer build` ÷ `nix-build` of the same package (target ≤ 1.10);
#   2. full rebuild after an installPhase edit (nix-build) ÷ resumed
#      `nixlayer build` of the same edit (target ≥ 10);
#   3. through the Nix hook (root), on gnuhello (NFILES files built the way
#      nixpkgs' Linux stdenv builds them: -g -O2 with -frandom-seed from $out,
#      stripped, man output): a postInstall edit vs nix-build of it, without
#      and with build-ids (separateDebugInfo: the hook reruns the compile);
#   4. nobody waits for learning (issue 13), on gnuhello with the background
#      work on: an edit right after the cold build and a fix after a failed
#      build (provisional result, then verified), the no-op rebuild vs
#      nix-build, the CPU of a cold build with its learning vs nix-build's,
#      and the hook's edit right after its cold build vs nix-build;
#   5. learning never slows anyone (issue 24): the hook's edit right after its
#      cold build (a full build that learns the map from the pair) vs
#      nix-build, the edit after it (resumed, registered, no wait between),
#      the CPU of a cold build with its learning, the CLI's edit right after
#      a cold build until verified and registered, a nix-build beside a
#      background learner vs alone;
#   6. the audit (issue 22): the CPU of one audit (a clean build of a resumed
#      result, in the background) and what it adds per resumed build at the
#      default rate (one in 20).
# BENCH_ONLY="SECTION…" runs only those sections: core registry hook nowait
# learning learning-hook yield audit lsp (e.g. BENCH_ONLY=learning for issue 24's figures;
# learning-hook for its hook figures alone).
# Every build gets fresh output paths (a unique salt), so nothing is reused by accident.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="/usr/local/go/bin:$PATH"
NFILES=${NFILES:-300}
unset CI # the audit at its default rate, as users have it (CI=true audits every resume)
go build -o bin/nixlayer ./cmd/nixlayer
nl=$PWD/bin/nixlayer
work=$(mktemp -d /tmp/nixlayer-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
cache=$work/cache
salt=$(date +%s%N)

secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>"$work/last.log" || { cat "$work/last.log"; exit 1; }; e=$(date +%s.%N); echo "$e - $s" | bc; }
pkg() { echo testdata -A hello --arg nfiles "$NFILES" --argstr salt "$1"; }
section() { [ -z "${BENCH_ONLY:-}" ] || [[ " $BENCH_ONLY " == *" $1 "* ]]; }

echo "benchmark: hello with $NFILES generated C files, $(nproc) cores, $(nix --version)"
export NIXLAYER_BACKGROUND_LEARN=0 # the learner is timed on its own below
if section core || section registry; then
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
fi

# Layers through an OCI registry (Debian's docker-registry on 127.0.0.1): the
# bench cache stands for CI (cold build + learned path map, pushed, signed);
# a laptop with an empty cache edits postInstall and pulls + resumes.
echo
if ! section registry; then
    :
elif command -v docker-registry >/dev/null; then
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

if ! section hook; then
    :
elif [ "$(id -u)" = 0 ]; then
    # The hook's cache; its background learner is replaced by a timed `nixlayer learn`.
    hookcache=$work/hookcache
    hook() { NIXLAYER_CACHE=$hookcache nix-build --no-out-link --option build-hook "$nl" "$@"; }
    gnu() { echo testdata -A gnuhello --arg nfiles "$NFILES" --argstr salt "$1"; }
    gedit=(--argstr postInstallExtra 'echo edited > $out/edited')
    dbg=(--arg separateDebugInfo true)
    t_gnix=$(secs nix-build --no-out-link $(gnu "gnix-$salt")) || exit 1
    t_ghook=$(secs hook $(gnu "ghook-$salt")) || exit 1
    t_glearn=$(secs "$nl" learn --cache "$hookcache" $(gnu "ghook-$salt")) || exit 1
    t_gnix_edit=$(secs nix-build --no-out-link $(gnu "gnix-$salt") "${gedit[@]}") || exit 1
    t_ghook_edit=$(secs hook $(gnu "ghook-$salt") "${gedit[@]}") || exit 1
    grep -q 'outputs exact' "$work/last.log" || { echo "the hook's gnuhello resume was not judged exact:"; cat "$work/last.log"; }
    t_gnix_dbg=$(secs nix-build --no-out-link $(gnu "gnix-$salt") "${dbg[@]}" "${gedit[@]}") || exit 1
    t_ghook_dbg_cold=$(secs hook $(gnu "ghook-$salt") "${dbg[@]}") || exit 1
    t_glearn_dbg=$(secs "$nl" learn --cache "$hookcache" $(gnu "ghook-$salt") "${dbg[@]}") || exit 1
    t_ghook_dbg=$(secs hook $(gnu "ghook-$salt") "${dbg[@]}" "${gedit[@]}") || exit 1
    grep -q 'rebuilding from buildPhase' "$work/last.log" || { echo "the hook did not fall back to the compile:"; cat "$work/last.log"; }

    echo
    echo "through the Nix hook: gnuhello ($NFILES files, -g -O2 with -frandom-seed, stripped, man output)"
    printf '%-46s %8.2f s\n' "nix-build (cold)" "$t_gnix"
    printf '%-46s %8.2f s\n' "nix-build with the hook (cold)" "$t_ghook"
    printf '%-46s %8.2f s\n' "background path-map learning (once per chain)" "$t_glearn"
    printf '%-46s %8.2f s\n' "nix-build after a postInstall edit (full)" "$t_gnix_edit"
    printf '%-46s %8.2f s\n' "hook after a postInstall edit (resumed)" "$t_ghook_edit"
    printf 'hook postInstall edit / nix-build = %.3f\n' "$(echo "$t_ghook_edit / $t_gnix_edit" | bc -l)"
    echo "with build-ids (separateDebugInfo): the resume is inexact, the hook reruns the compile, configure reused"
    printf '%-46s %8.2f s\n' "nix-build after a postInstall edit (full)" "$t_gnix_dbg"
    printf '%-46s %8.2f s   (cold %.2f s, learning %.2f s)\n' "hook after a postInstall edit (from the compile)" "$t_ghook_dbg" "$t_ghook_dbg_cold" "$t_glearn_dbg"
    printf 'hook postInstall edit / nix-build = %.3f\n' "$(echo "$t_ghook_dbg / $t_gnix_dbg" | bc -l)"
else
    echo
    echo "(the hook benchmark needs root: skipped)"
fi

# Issue 13: nobody waits for learning. The background work is on, as users
# have it; each figure is what the user waits for, including the wait for
# background work where the figure names it.
unset NIXLAYER_BACKGROUND_LEARN
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
gnu() { echo testdata -A gnuhello --arg nfiles "$NFILES" --argstr salt "$1"; }
# state CACHE STATE PKG...: the newest result of PKG is in STATE.
state() { local c=$1 s=$2; shift 2; "$nl" status --json --cache "$c" "$@" 2>/dev/null | grep -q "\"state\": \"$s\""; }
wait_verified() { local c=$1; shift; until state "$c" verified "$@" || state "$c" replaced "$@"; do sleep 0.2; done; }
idle() { until "$nl" status --json --cache "$1" | grep -q '"background": \[\]'; do sleep 0.5; done; }
# rerun EVENTS: the seconds the phases that ran took (their done events).
rerun() { grep '"kind":"done"' "$1" | sed 's/.*"elapsed":\([0-9]*\).*/\1/' | awk '{s+=$1} END {printf "%.2f", s/1e9}'; }
pcache=$work/pcache
post=(--argstr postInstallExtra 'echo edited > $out/edited')
if section nowait || section learning; then
"$nl" build -Q --cache "$pcache" --no-out-link $(gnu "p-$salt") >/dev/null 2>"$work/last.log" || { cat "$work/last.log"; exit 1; }
t0=$(now)
"$nl" build -Q --progress=json --cache "$pcache" --no-out-link $(gnu "p-$salt") "${post[@]}" >/dev/null 2>"$work/edit.json" || { cat "$work/edit.json"; exit 1; }
t_prov=$(since "$t0"); r_prov=$(rerun "$work/edit.json")
grep -q '"kind":"provisional"' "$work/edit.json" || echo "(the edit right after the cold build was not provisional)"
wait_verified "$pcache" $(gnu "p-$salt") "${post[@]}"
t_ver=$(since "$t0")
idle "$pcache"
fi
if section nowait; then
broken=(--argstr postInstallExtra 'echo broken >&2; exit 1')
fixed=(--argstr postInstallExtra 'echo fixed > $out/fixed')
"$nl" build -Q --cache "$pcache" --no-out-link $(gnu "f-$salt") "${broken[@]}" >/dev/null 2>&1 && { echo "the broken build succeeded"; exit 1; }
t0=$(now)
"$nl" build -Q --progress=json --cache "$pcache" --no-out-link $(gnu "f-$salt") "${fixed[@]}" >/dev/null 2>"$work/fix.json" || { cat "$work/fix.json"; exit 1; }
t_fprov=$(since "$t0"); r_fprov=$(rerun "$work/fix.json")
wait_verified "$pcache" $(gnu "f-$salt") "${fixed[@]}"
t_fver=$(since "$t0")
idle "$pcache"
# The same version again: its outputs are valid (best of 5, with ./result links).
best() { local b=999 t; for _ in 1 2 3 4 5; do t=$(secs "$@"); b=$(echo "if ($t < $b) $t else $b" | bc); done; echo "$b"; }
t_noop_nix=$(best nix-build -o "$work/r-nix" $(gnu "p-$salt") "${post[@]}")
t_noop_nl=$(best "$nl" build -Q --cache "$pcache" -o "$work/r-nl" $(gnu "p-$salt") "${post[@]}")
fi
# CPU time of a cold build and of the learning it leaves, against
# nix-build's: everything the command starts, detached background work and
# sandboxed builders included, counted by a cpuacct cgroup (else the
# command's waited-for children only).
cg=/sys/fs/cgroup/cpuacct/nixlayer-bench-$$
trap 'rm -rf "$work"; rmdir "$cg" 2>/dev/null' EXIT
cpu() {
    if mkdir -p "$cg" 2>/dev/null && echo 0 > "$cg/cpuacct.usage" 2>/dev/null; then
        ( echo "$BASHPID" > "$cg/cgroup.procs" && "$@" ) >/dev/null 2>"$work/last.log" || { cat "$work/last.log"; exit 1; }
        echo "$(cat "$cg/cpuacct.usage") / 1000000000" | bc -l
    else
        /usr/bin/time -f '%U %S' -o "$work/cpu" "$@" >/dev/null 2>"$work/last.log" || { cat "$work/last.log"; exit 1; }
        awk '{print $1 + $2}' "$work/cpu"
    fi
}
cold_then_learned() { "$nl" build -Q --cache "$pcache" --no-out-link $(gnu "cl-$salt") && idle "$pcache"; }
if section nowait || section learning; then
c_nix=$(cpu nix-build --no-out-link $(gnu "cn-$salt"))
c_cold=$(NIXLAYER_BACKGROUND_LEARN=0 cpu "$nl" build -Q --cache "$pcache" --no-out-link $(gnu "cl0-$salt"))
c_all=$(cpu cold_then_learned)
fi
if section nowait; then
# "learn": "concurrent": the twin runs beside the cold build; what it costs.
ccache=$work/ccache
mkdir -p "$ccache" && echo '{"learn": "concurrent"}' > "$ccache/config.json"
t_conc=$(secs "$nl" build -Q --cache "$ccache" --no-out-link $(gnu "cc-$salt")) || exit 1
c_conc=$(cpu "$nl" build -Q --cache "$ccache" --no-out-link $(gnu "cc2-$salt"))
t_cnix=$(secs nix-build --no-out-link $(gnu "ccn-$salt")) || exit 1
t_cedit=$(secs "$nl" build -Q --cache "$ccache" --no-out-link $(gnu "cc-$salt") "${post[@]}") || exit 1
grep -q 'outputs registered in the Nix store' "$work/last.log" || echo "(the edit after a concurrent cold build was not registered at once)"
idle "$ccache" # its edit's chain is learned in the background: not beside what follows
fi

if section nowait || section learning; then
echo
echo "nobody waits for learning: gnuhello ($NFILES files), CLI, background work on"
printf '%-52s %8.2f s   (rerun phases %.2f s; target <= rerun + 1 s)\n' "edit right after the cold build: provisional result" "$t_prov" "$r_prov"
printf '%-52s %8.2f s\n' "  ... verified (registered) result" "$t_ver"
printf 'CPU of a cold build with its background learning / nix-build = %.1f s / %.1f s = %.2f (the cold build alone %.1f s)\n' "$c_all" "$c_nix" "$(echo "$c_all / $c_nix" | bc -l)" "$c_cold"
fi
if section nowait; then
printf '%-52s %8.2f s   (rerun phases %.2f s; target <= rerun + 1 s)\n' "fix after a failed build: provisional result" "$t_fprov" "$r_fprov"
printf '%-52s %8.2f s\n' "  ... verified (registered) result" "$t_fver"
printf '%-52s %8.3f s vs nix-build %.3f s: %+.0f ms (target <= +20 ms)\n' "no-op rebuild (outputs valid)" "$t_noop_nl" "$t_noop_nix" "$(echo "($t_noop_nl - $t_noop_nix) * 1000" | bc -l)"
printf '%-52s %8.2f s vs nix-build %.2f s: %.2f; CPU %.1f s; the edit after it %.2f s, registered at once\n' "learn: concurrent: cold build with its twin" "$t_conc" "$t_cnix" "$(echo "$t_conc / $t_cnix" | bc -l)" "$c_conc" "$t_cedit"
fi

if [ "$(id -u)" = 0 ] && { section nowait || section learning || section learning-hook; }; then
    # The hook's first edit, the moment its cold build ends (the learner
    # just started): a full build, as Nix's, that learns the path map from
    # the pair it makes with the cold build when their output hashes differ
    # at every index (about one pair in three per output with Nix's
    # hashes), or else the reused phases once more with a synthetic path
    # (the map learned in front), then the edited ones; the edit after it,
    # at once (no wait for background work), resumes from that map.
    # BENCH_PAIRABLE=1 picks a salt of the first case; the bench says which
    # case ran.
    hcache=$work/hcache
    hookl() { NIXLAYER_CACHE=$hcache nix-build --no-out-link --option build-hook "$nl" "$@"; }
    post2=(--argstr postInstallExtra 'echo edited again > $out/edited')
    hsalt=h-$salt
    if [ "${BENCH_PAIRABLE:-}" = 1 ]; then
        outs() { nix-store -q --outputs "$(nix-instantiate "$@" 2>/dev/null)" | sed 's|.*/\([^-]*\)-\(.*\)|\2 \1|' | sort | cut -d' ' -f2; }
        differ() { paste <(outs $(gnu "$1")) <(outs $(gnu "$1") "${post[@]}") | while read -r a b; do
            for ((k = 0; k < 32; k++)); do [ "${a:k:1}" != "${b:k:1}" ] || return 1; done; done; }
        for i in $(seq 200); do differ "h$i-$salt" && { hsalt=h$i-$salt; break; }; done
    fi
    secs hookl $(gnu "$hsalt") >/dev/null || exit 1
    t_hfirst=$(secs hookl $(gnu "$hsalt") "${post[@]}") || exit 1
    if grep -q 'path map learned from this rebuild' "$work/last.log"; then pair="the map learned from the pair"
    elif grep -q 'once more with a synthetic path' "$work/last.log"; then pair="the map learned in front: the pair could not teach it"
    else pair="NO map learned"; fi
    t_hsecond=$(secs hookl $(gnu "$hsalt") "${post2[@]}") || exit 1
    grep -q 'outputs registered\|outputs exact' "$work/last.log" && grep -q 'reused: unpackPhase' "$work/last.log" && second="resumed, registered" || second="NOT resumed: $(grep -o 'ran: [^)]*' "$work/last.log")"
    idle "$hcache" # nix-build alone: not beside the background work the edits left
    t_hnix=$(secs nix-build --no-out-link $(gnu "hn-$salt") "${post[@]}") || exit 1
    printf '%-52s %8.2f s vs nix-build %.2f s: %.3f (target <= 1.05; %s)\n' "hook: edit right after the cold build" "$t_hfirst" "$t_hnix" "$(echo "$t_hfirst / $t_hnix" | bc -l)" "$pair"
    printf '%-52s %8.2f s: nix-build / it = %.1f (target >= 10; %s)\n' "hook: the edit after it, at once" "$t_hsecond" "$(echo "$t_hnix / $t_hsecond" | bc -l)" "$second"
fi
if section learning || section yield; then
    # A build the user waits for beside a background learner (issue 24):
    # the learner a cold `nixlayer build` starts pauses while another build
    # runs on its cache (target: that build slowed by at most 10 %). Idle
    # priority alone is measured too: a plain nix-build, which leaves no
    # mark, beside the learner. Valid only if the learner ran all along.
    ycache=$work/ycache
    learner() { "$nl" build -Q --cache "$ycache" --no-out-link $(gnu "$1") >/dev/null 2>"$work/last.log" || { cat "$work/last.log"; exit 1; }; }
    running() { "$nl" status --json --cache "$ycache" | grep -q '"background": \[\]' && echo "the learner ended first: NOT valid" || echo "the learner ran all along"; }
    learner "y-$salt"
    t_beside=$(NIXLAYER_BACKGROUND_LEARN=0 secs "$nl" build -Q --cache "$ycache" --no-out-link $(gnu "yb-$salt")) || exit 1
    beside=$(running)
    idle "$ycache"
    t_alone=$(NIXLAYER_BACKGROUND_LEARN=0 secs "$nl" build -Q --cache "$ycache" --no-out-link $(gnu "ya-$salt")) || exit 1
    learner "yn-$salt"
    t_nbeside=$(secs nix-build --no-out-link $(gnu "ynb-$salt")) || exit 1
    nbeside=$(running)
    idle "$ycache"
    t_nalone=$(secs nix-build --no-out-link $(gnu "yna-$salt")) || exit 1
    printf '%-52s %8.2f s vs alone %.2f s: %.3f (target <= 1.10; %s)\n' "nixlayer build beside a background learner" "$t_beside" "$t_alone" "$(echo "$t_beside / $t_alone" | bc -l)" "$beside"
    printf '%-52s %8.2f s vs alone %.2f s: %.3f (idle priority only; %s)\n' "plain nix-build beside a background learner" "$t_nbeside" "$t_nalone" "$(echo "$t_nbeside / $t_nalone" | bc -l)" "$nbeside"
fi
export NIXLAYER_BACKGROUND_LEARN=0

# Issue 22: the audit. A resumed result (all phases cached after its
# outputs left the store) is audited by the background work: one clean
# build from scratch, compared with it. Its CPU is measured against the
# resume's and nix-build's; at the default rate one resumed build in 20
# pays it.
bench_audit() {
    local acache=$work/acache asalt="audit-$salt"
    local aedit=(--argstr postInstallExtra 'echo audited > $out/audited')
    mkdir -p "$acache" && echo '{"audit": "never"}' >"$acache/config.json"
    NIXLAYER_BACKGROUND_LEARN=0 "$nl" build -Q --cache "$acache" --no-out-link $(pkg "$asalt") >/dev/null 2>"$work/last.log" || { cat "$work/last.log"; exit 1; }
    "$nl" learn --cache "$acache" $(pkg "$asalt") >/dev/null 2>&1 || exit 1
    NIXLAYER_BACKGROUND_LEARN=0 "$nl" build -Q --cache "$acache" --no-out-link $(pkg "$asalt") "${aedit[@]}" >/dev/null 2>"$work/last.log" || { cat "$work/last.log"; exit 1; }
    "$nl" learn --cache "$acache" $(pkg "$asalt") "${aedit[@]}" >/dev/null 2>&1 || exit 1 # the audit below learns nothing
    nix-store --delete $(nix-store -q --outputs "$(nix-instantiate $(pkg "$asalt") "${aedit[@]}" 2>/dev/null)") >/dev/null 2>&1 || { echo "could not delete the edit's outputs"; exit 1; }
    echo '{}' >"$acache/config.json" # the default rate
    local c_resume c_audit c_anix t_audit s
    for _ in $(seq 20); do # the counter reaches the one audited result
        c_resume=$(NIXLAYER_BACKGROUND_LEARN=0 cpu "$nl" build -Q --cache "$acache" --no-out-link $(pkg "$asalt") "${aedit[@]}")
        "$nl" status --json --cache "$acache" $(pkg "$asalt") "${aedit[@]}" | grep -q '"state": "due"' && break
        nix-store --delete $(nix-store -q --outputs "$(nix-instantiate $(pkg "$asalt") "${aedit[@]}" 2>/dev/null)") >/dev/null 2>&1 || exit 1
    done
    s=$(date +%s.%N)
    c_audit=$(cpu "$nl" learn --cache "$acache" $(pkg "$asalt") "${aedit[@]}")
    t_audit=$(echo "$(date +%s.%N) - $s" | bc)
    "$nl" status --json --cache "$acache" $(pkg "$asalt") "${aedit[@]}" | grep -q '"state": "passed"' || { echo "the audit did not pass:"; "$nl" status --cache "$acache"; }
    c_anix=$(cpu nix-build --no-out-link $(pkg "nix-audit-$salt"))
    echo
    echo "audit (issue 22): hello ($NFILES files), a resumed result audited in the background"
    printf '%-52s %8.1f s CPU (%.2f s wall; nix-build cold: %.1f s CPU)\n' "one audit (clean build + compare)" "$c_audit" "$t_audit" "$c_anix"
    printf '%-52s %8.1f s CPU\n' "the resumed build it audits (every phase cached)" "$c_resume"
    printf 'at the default rate (1 resumed result in %d): +%.2f s CPU per resumed build on average (%.1f%% of a cold nix-build)\n' 20 "$(echo "$c_audit / 20" | bc -l)" "$(echo "100 * $c_audit / 20 / $c_anix" | bc -l)"
}
if section audit; then
    bench_audit
fi

section lsp || exit 0
echo
echo "language server latency on a 3,000-line .nix file (targets: codeLens p99 <= 20 ms, didChange -> lenses <= 50 ms):"
NIXLAYER_BENCH=1 go test -count=1 -run '^TestLatency3000Lines$' -v ./lsp/ 2>&1 | grep -E 'codeLens|targets' | sed 's/^ *latency_test.go:[0-9]*: /  /'
