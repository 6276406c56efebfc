# shellcheck shell=bash
# shellcheck disable=SC2154 # $prefix is set by the fixup phase for each output
# Fact (nixpkgs' separateDebugInfo = true): the linker wrapper adds
# --build-id=sha1 (NIX_SET_BUILD_ID=1), compiles and links keep compressed
# debug info, and fixup copies the debug info of every ELF file that has a
# build-id into the `debug` output, under lib/debug/.build-id/<id[0:2]>/<id[2:]>.debug
# (with a <name>.debug symlink), before strip.sh strips it from the file.
export NIX_SET_BUILD_ID=1
export NIX_LDFLAGS="${NIX_LDFLAGS:-}${NIX_LDFLAGS:+ }--compress-debug-sections=zlib"
export NIX_CFLAGS_COMPILE="${NIX_CFLAGS_COMPILE:-}${NIX_CFLAGS_COMPILE:+ }-ggdb -Wa,--compress-debug-sections"

_separateDebugInfo() {
    [[ -e $prefix ]] || return 0
    local debugOut="${debug:-$out}"
    [[ $prefix == "$debugOut" ]] && return 0
    mkdir -p "$debugOut"
    local idDir="$debugOut/lib/debug/.build-id" file id
    while IFS= read -r -d '' file; do
        [[ $(head -c 4 "$file") == $'\177ELF' ]] || continue
        id=$(readelf -n "$file" 2>/dev/null | sed -n 's/^ *Build ID: \([0-9a-f]*\)$/\1/p')
        if [[ ${#id} != 40 ]]; then
            echo "no build-id in $file: its debug info stays in place"
            continue
        fi
        echo "moving the debug info of $file to $idDir/${id:0:2}/${id:2}.debug"
        mkdir -p "$idDir/${id:0:2}"
        objcopy --only-keep-debug "$file" "$idDir/${id:0:2}/${id:2}.debug"
        ln -sfn ".build-id/${id:0:2}/${id:2}.debug" "$idDir/../$(basename "$file").debug"
    done < <(find "$prefix" -type f -print0 | sort -z)
}
fixupOutputHooks+=(_separateDebugInfo)
