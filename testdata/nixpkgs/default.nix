# A miniature nixpkgs checkout for the language server's tests (no real
# nixpkgs here): its layout (pkgs/top-level/all-packages.nix, by-name
# packages in pkgs/by-name/XX/NAME/package.nix, callPackage'd files
# elsewhere) over the project's fixture stdenv (pkgs/top-level/fixture.nix)
# behind stdenv.mkDerivation. `nix-build testdata/nixpkgs -A hello`.
{ ... }:
import ./pkgs/top-level
