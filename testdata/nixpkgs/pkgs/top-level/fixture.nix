# The project's fixture set (testdata/default.nix): its stdenv and hello's
# source. Tests copy the tree and replace this file (a salt, an absolute path).
import ../../../default.nix { }
