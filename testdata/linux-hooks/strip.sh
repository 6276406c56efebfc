# shellcheck shell=bash
# shellcheck disable=SC2154 # $prefix is set by the fixup phase for each output
# Fact (nixpkgs' strip hook): in fixup, unless dontStrip is set, every file
# under the output's lib, lib32, lib64, libexec, bin and sbin
# (stripDebugList) is stripped of its debug info with `strip -S -p`, and
# every file under stripAllList of all symbols with `strip -s -p`; files
# under lib/debug (the debug output) are left alone, and files strip does not
# understand (scripts, data) are skipped silently. The build-id note stays.
_doStrip() {
    [[ -z ${dontStrip:-} ]] || return 0
    _stripDirs "${stripDebugList[*]:-lib lib32 lib64 libexec bin sbin}" "${stripDebugFlags[*]:--S -p}"
    _stripDirs "${stripAllList[*]:-}" "${stripAllFlags[*]:--s -p}"
}

_stripDirs() {
    local dirs="$1" flags="$2" dir
    local -a paths=()
    for dir in $dirs; do
        [[ -e $prefix/$dir ]] && paths+=("$prefix/$dir")
    done
    ((${#paths[@]})) || return 0
    echo "stripping (strip $flags) in ${paths[*]}"
    # shellcheck disable=SC2086
    find "${paths[@]}" -type f ! -path "$prefix/lib/debug/*" -print0 | sort -z |
        xargs -r -0 -n1 strip $flags 2>/dev/null || true
}
fixupOutputHooks+=(_doStrip)
