# shellcheck shell=bash
# shellcheck disable=SC2154 # $prefix is set by the fixup phase for each output
# Fact (nixpkgs' patch-shebangs hook): in fixup, unless dontPatchShebangs is
# set, the interpreter of every executable script in the output
# (`#!/bin/bash`, `#!/usr/bin/env bash`) is replaced by the program of that
# name found on PATH in the Nix store, keeping the script's arguments and
# modification time. Interpreters already in the store are left alone, and so
# is a script whose interpreter no build input provides.

# The program NAME in a store directory on PATH ("" when there is none).
_storeProgram() {
    local name="$1" dir
    local -a dirs
    IFS=: read -ra dirs <<<"$PATH"
    for dir in "${dirs[@]}"; do
        if [[ $dir == "${NIX_STORE:-/nix/store}"/* && -x $dir/$name ]]; then
            echo "$dir/$name"
            return
        fi
    done
}

patchShebangs() {
    local f line interp arg0 rest name args newPath stamp
    while IFS= read -r -d '' f; do
        [[ $(head -c 2 "$f") == '#!' ]] || continue
        IFS= read -r line <"$f" || [[ -n $line ]]
        read -r interp arg0 rest <<<"${line:2}"
        [[ $interp == "${NIX_STORE:-/nix/store}"/* ]] && continue
        name="${interp##*/}" args="${arg0:+ $arg0}${rest:+ $rest}"
        if [[ $name == env && -n $arg0 ]]; then
            name="$arg0" args="${rest:+ $rest}"
        fi
        newPath=$(_storeProgram "$name")
        [[ -n $newPath ]] || continue
        echo "$f: interpreter changed from \"$line\" to \"#!$newPath$args\""
        stamp=$(stat -c %y "$f")
        { printf '#!%s%s\n' "$newPath" "$args"; tail -n +2 "$f"; } >"$f.patched"
        cat "$f.patched" >"$f"
        rm "$f.patched"
        touch --date "$stamp" "$f"
    done < <(find "$@" -type f -perm -0100 -print0 | sort -z)
}

patchShebangsAuto() {
    if [[ -z ${dontPatchShebangs:-} && -e $prefix ]]; then
        patchShebangs "$prefix"
    fi
}
fixupOutputHooks+=(patchShebangsAuto)
