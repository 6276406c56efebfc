{ fx, greeting }:
fx.mkDerivation {
  pname = "hello";
  version = "1";
  src = fx.helloSrc;
  configureFlags = "--nfiles=20 --funcs-per-file=4";
  enableParallelBuilding = true;
  inherit greeting;
  postInstall = ''
    mkdir -p "$out/share/hello"
    "$out/bin/hello" > "$out/share/hello/output.txt"
  '';
  preFixup = "echo fixing";
}
