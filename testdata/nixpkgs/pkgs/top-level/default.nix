# The package set as nixpkgs makes it: every pkgs/by-name/XX/NAME/package.nix
# as NAME, and all-packages.nix, each package called with callPackage.
let
  fixture = import ./fixture.nix;
  byNameDir = ../by-name;
  dirs = dir: builtins.attrNames (builtins.readDir dir);
  byName = self: builtins.listToAttrs (builtins.concatMap
    (shard: map
      (name: { inherit name; value = self.callPackage (byNameDir + "/${shard}/${name}/package.nix") { }; })
      (dirs (byNameDir + "/${shard}")))
    (dirs byNameDir));
  fix = f: let x = f x; in x;
in
fix (self: {
  stdenv = { inherit (fixture) mkDerivation; };
  inherit (fixture) helloSrc;
  callPackage = fn: args:
    let f = if builtins.isFunction fn then fn else import fn;
    in f (builtins.intersectAttrs (builtins.functionArgs f) self // args);
} // byName self // import ./all-packages.nix self)
