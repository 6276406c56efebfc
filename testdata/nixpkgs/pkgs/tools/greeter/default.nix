{ stdenv, greeting ? "hello" }:
stdenv.mkDerivation {
  pname = "greeter";
  version = "1";
  dontUnpack = true;
  inherit greeting;
  installPhase = ''
    mkdir -p $out/share
    echo "$greeting" > $out/share/greeting
  '';
}
