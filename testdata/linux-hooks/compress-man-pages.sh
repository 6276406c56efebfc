# shellcheck shell=bash
# shellcheck disable=SC2154 # $prefix is set by the fixup phase for each output
# Fact (nixpkgs' compress-man-pages hook): in fixup, unless dontGzipMan is
# set, every man page under the output's share/man that is not compressed
# yet is gzipped (without name or time stamp, so the bytes are
# reproducible), and symlinks to man pages are pointed at the .gz files.
compressManPages() {
    local dir="$1" f target
    [[ -d $dir/share/man && ! -L $dir/share && ! -L $dir/share/man ]] || return 0
    echo "gzipping man pages under $dir/share/man/"
    find "$dir/share/man/" -type f ! -name '*.gz' ! -name '*.bz2' ! -name '*.xz' -print0 | sort -z |
        xargs -r -0 -n1 gzip -n -f
    find "$dir/share/man/" -type l ! -name '*.gz' ! -name '*.bz2' ! -name '*.xz' -print0 | sort -z |
        while IFS= read -r -d '' f; do
            target=$(readlink -f "$f")
            if [[ -f $target.gz ]]; then
                ln -sf "$target.gz" "$f.gz" && rm "$f"
            fi
        done
}
_compressManPagesAuto() {
    if [[ -z ${dontGzipMan:-} ]]; then compressManPages "$prefix"; fi
}
fixupOutputHooks+=(_compressManPagesAuto)
