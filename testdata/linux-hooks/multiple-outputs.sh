# shellcheck shell=bash
# Fact (nixpkgs' multiple-outputs hook, the part used here): documentation
# goes to its own output when the derivation has one. configure is told
# where man pages go (--mandir), and before fixup whatever still sits under
# share/man, share/info or share/doc of another output is moved there.

# The output that receives each kind of file: the named one if it exists.
__outputOr() {
    local want="$1" name
    for name in $(getAllOutputNames); do
        if [[ $name == "$want" ]]; then
            echo "$want"
            return
        fi
    done
    echo out
}
: "${outputMan:=$(__outputOr man)}"
: "${outputInfo:=$(__outputOr info)}"
: "${outputDoc:=$(__outputOr doc)}"

# moveToOutput PATTERN OUTPUT: move PATTERN (relative to each output, globs
# allowed) from every other output into OUTPUT's path.
moveToOutput() {
    local pattern="$1" dest="${!2}" output src srcPath
    for output in $(getAllOutputNames); do
        src="${!output}"
        [[ $src == "$dest" ]] && continue
        for srcPath in "$src"/$pattern; do
            [[ -e $srcPath || -L $srcPath ]] || continue
            echo "moving ${srcPath#"$src"/} from $output to $2"
            mkdir -p "$dest/$(dirname "${srcPath#"$src"/}")"
            if [[ -d $srcPath && -d $dest/${srcPath#"$src"/} ]]; then
                cp -a "$srcPath"/. "$dest/${srcPath#"$src"/}/"
                rm -rf "$srcPath"
            else
                mv "$srcPath" "$dest/${srcPath#"$src"/}"
            fi
            rmdir --ignore-fail-on-non-empty -p "$(dirname "$srcPath")" 2>/dev/null || true
        done
    done
}

_multioutConfig() {
    # Only with more than one output, unless the package opts out.
    if [[ $(getAllOutputNames) == out || -z ${setOutputFlags-1} ]]; then
        return
    fi
    _appendFlag configureFlags "--mandir=${!outputMan}/share/man"
}
preConfigureHooks+=(_multioutConfig)

_multioutDocs() {
    moveToOutput share/man "$outputMan"
    moveToOutput share/info "$outputInfo"
    moveToOutput share/doc "$outputDoc"
}
preFixupHooks+=(_multioutDocs)
