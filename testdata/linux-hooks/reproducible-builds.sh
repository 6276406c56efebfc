# shellcheck shell=bash
# Fact (nixpkgs' reproducible-builds hook): every compile gets
# -frandom-seed=<the first 10 characters of $out's base name>, i.e. of its
# hash. The seed keeps gcc's otherwise random choices stable across rebuilds
# of one derivation, and gcc records it, with its other switches, in the
# debug info (DW_AT_producer) of every object compiled with -g.
__seedFrom=${NIX_OUTPATH_USED_AS_RANDOM_SEED:-$out}
__seedFrom=${__seedFrom##*/}
export NIX_CFLAGS_COMPILE="${NIX_CFLAGS_COMPILE:-}${NIX_CFLAGS_COMPILE:+ }-frandom-seed=${__seedFrom:0:10}"
unset __seedFrom
