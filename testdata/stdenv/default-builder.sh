# shellcheck shell=bash
# The default builder of the fixture stdenv (like nixpkgs' default-builder.sh).
# With __structuredAttrs the attributes arrive in .attrs.sh, not the environment.
# (Nix 2.8 sets NIX_ATTRS_SH_FILE to a host path that does not exist in the
# sandbox, hence the -e test and the fallback to ./.attrs.sh in /build.)
if [ -e "${NIX_ATTRS_SH_FILE:-}" ]; then
    source "$NIX_ATTRS_SH_FILE"; __attrsShSourced=1
elif [ -f .attrs.sh ]; then
    source .attrs.sh; __attrsShSourced=1
fi
source "$stdenv/setup"
genericBuild
