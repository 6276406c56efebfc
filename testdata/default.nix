# Fixture packages for nixlayer's tests, built WITHOUT nixpkgs: the builder is
# Debian's static bash, the stdenv is ./stdenv (setup + default-builder.sh) and
# the tools (gcc, make, coreutils, tar, patch) come from the host through
# `extra-sandbox-paths = /usr /bin /lib /lib64 /etc/alternatives`.
#
#   nix-build testdata -A hello --arg nfiles 300 --argstr postInstallExtra 'echo hi'
#
# Every argument has a default; tests vary them with --arg / --argstr to edit one
# attribute of a package and see which phases must rerun.
{
  # hello: number of generated C files (configure --nfiles); 20 ≈ seconds, 300 ≈ tens of seconds.
  nfiles ? 40
  # hello: functions per generated file (configure --funcs-per-file): compile cost per file.
, funcsPerFile ? 24
  # hello: the version written into the source tree (changes $src and the program).
, srcVersion ? "1"
  # hello: extra words appended to configureFlags.
, configureExtraFlags ? ""
  # hello: extra words appended to makeFlags (build and install).
, makeExtraFlags ? ""
  # hello: extra words appended to buildFlags (build phase only).
, buildExtraFlags ? ""
  # hello: code run by preConfigure / preBuild (empty: no hook).
, preConfigureExtra ? ""
, preBuildExtra ? ""
  # hello: code appended to installPhase (runs after `make install`).
, installExtra ? ""
  # hello: the postInstall hook (any package that honours it: hello, multi, custom).
, postInstallExtra ? ""
  # hello: the postFixup hook.
, postFixupExtra ? ""
  # hello: doCheck (runs `make check`).
, doCheck ? false
  # hello: enableParallelBuilding.
, enableParallelBuilding ? true
  # failing: the message printed before installPhase fails.
, failMessage ? "installPhase failed on purpose"
  # custom: the text written by the custom stampPhase.
, stamp ? "stamp-1"
  # structured: a list attribute (an array under __structuredAttrs).
, structuredWords ? [ "alpha" "beta" "gamma" ]
  # gnuhello: nixpkgs' separateDebugInfo (GNU build-ids, a `debug` output).
, separateDebugInfo ? false
  # gnuhello: nixpkgs' dontStrip (the installed binary keeps its debug info).
, dontStrip ? false
  # checked, outputchecked: make the output refer to bash, which their checks forbid.
, violateChecks ? false
  # greet: attributes read by programs before postInstall's text names them
  # (make's imported environment, the configure script, a generator make
  # runs) and one only postInstall's bash text reads.
, greeting ? "Hello"
, motto ? "carpe diem"
, banner ? "greet-1"
, note ? "note-1"
  # free-form salt added to every package (forces new derivations without other changes).
, salt ? ""
  # The platform and the static bash: a flake (pure evaluation, no
  # currentSystem, no paths outside the store) passes them in (testdata/flake).
, system ? builtins.currentSystem
, bashStatic ? /bin/bash-static
}:

let
  lib = {
    optionalAttrs = cond: as: if cond then as else { };
  };

  # Debian's statically linked bash: the only store input besides the stdenv.
  bash = builtins.path { path = bashStatic; name = "bash"; };

  # The fixture stdenv as a store path: $stdenv/setup and $stdenv/default-builder.sh.
  stdenv = builtins.path { path = ./stdenv; name = "fixture-stdenv"; };

  # The same stdenv in the shape of the oldest nixpkgs setup.sh (no runPhase;
  # genericBuild inlines the phase loop): ./stdenv-old/setup over the fixture's.
  oldStdenv = derivation {
    name = "fixture-stdenv-old";
    inherit system;
    builder = "${bash}";
    args = [ "-c" ''
      /bin/mkdir -p $out
      /bin/cp ${stdenv}/setup $out/setup-base
      /bin/cp ${./stdenv-old/setup} $out/setup
      /bin/cp ${stdenv}/default-builder.sh $out/default-builder.sh
    '' ];
  };

  # Like nixpkgs' stdenv.mkDerivation, without the dependency machinery: every
  # attribute is passed through to `derivation`.
  mkDerivation = attrs:
    let
      name = attrs.name or "${attrs.pname}-${attrs.version}";
    in
    derivation ({
      inherit stdenv;
      builder = "${bash}";
      args = [ "-e" "${stdenv}/default-builder.sh" ];
      inherit system;
    }
    // lib.optionalAttrs (salt != "") { nixlayerSalt = salt; }
    // removeAttrs attrs [ "pname" "version" "name" ]
    // { inherit name; }
    // lib.optionalAttrs (attrs ? pname) { inherit (attrs) pname; }
    // lib.optionalAttrs (attrs ? version) { inherit (attrs) version; });

  optional = cond: x: if cond then x else { };

  # hello, greet: installExtra replaces the default installPhase with
  # `make install` followed by it.
  installEdited = optional (installExtra != "") {
    installPhase = ''
      runHook preInstall
      make install
      ${installExtra}
      runHook postInstall
    '';
  };

  # checked, outputchecked: the end of installPhase, which makes the output
  # refer to bash (their checks forbid it) when violateChecks.
  violation = if violateChecks then ''
    echo "${bash}" > $out/uses-bash
  '' else "";

  # The setup hooks a nixpkgs Linux stdenv loads (./linux-hooks: compiler
  # wrapper, random seed, strip, separate debug info, man pages, shebangs).
  linuxHooks = builtins.path { path = ./linux-hooks; name = "fixture-linux-hooks"; };

  # The shell that patch-shebangs points scripts at: bash in a bin directory.
  shells = derivation {
    name = "fixture-shells";
    inherit system;
    builder = "${bash}";
    args = [ "-c" "/bin/mkdir -p $out/bin && /bin/ln -s ${bash} $out/bin/bash" ];
  };

  # Like mkDerivation in a nixpkgs Linux stdenv: the setup hooks come in as
  # build inputs, and separateDebugInfo adds a `debug` output.
  mkLinuxDerivation = attrs:
    let debugOutput = attrs.separateDebugInfo or false;
    in mkDerivation (attrs // {
      nativeBuildInputs = [ linuxHooks shells ] ++ (attrs.nativeBuildInputs or [ ]);
    } // lib.optionalAttrs debugOutput {
      outputs = (attrs.outputs or [ "out" ]) ++ [ "debug" ];
    });

  # The ./embed program (a binary holding its own $out) built with
  # prefix=$out; attrs add to or replace these attributes.
  mkEmbed = pname: attrs: mkDerivation ({
    inherit pname;
    version = "1";
    src = ./embed;
    dontConfigure = true;
    preInstall = ''makeFlagsArray+=("prefix=$out")'';
    postInstall = postInstallExtra;
  } // attrs);
in
rec {
  inherit bash stdenv oldStdenv mkDerivation linuxHooks shells mkLinuxDerivation;

  # The source tree of hello, with VERSION = srcVersion (a one-step buildCommand
  # derivation, so changing srcVersion changes $src).
  helloSrc = mkDerivation {
    name = "hello-${srcVersion}";
    src = ./hello;
    inherit srcVersion;
    buildCommand = ''
      cp -r "$src" "$out"
      chmod -R u+w "$out"
      printf '%s\n' "$srcVersion" > "$out/VERSION"
    '';
  };

  # A C program with a real ./configure: nfiles generated C files, gcc -O2,
  # `make install` into $out/bin. The binary does not mention $out.
  hello = mkDerivation ({
    pname = "hello";
    version = srcVersion;
    src = helloSrc;
    configureFlags = "--nfiles=${toString nfiles} --funcs-per-file=${toString funcsPerFile}"
      + (if configureExtraFlags != "" then " ${configureExtraFlags}" else "");
    inherit doCheck enableParallelBuilding;
    postInstall = ''
      mkdir -p "$out/share/hello"
      "$out/bin/hello" > "$out/share/hello/output.txt"
    '' + postInstallExtra;
  }
  // optional (makeExtraFlags != "") { makeFlags = makeExtraFlags; }
  // optional (buildExtraFlags != "") { buildFlags = buildExtraFlags; }
  // optional (preConfigureExtra != "") { preConfigure = preConfigureExtra; }
  // optional (preBuildExtra != "") { preBuild = preBuildExtra; }
  // optional (postFixupExtra != "") { postFixup = postFixupExtra; }
  // installEdited);

  # hello as nixpkgs' Linux stdenv builds a GNU package (the medium fixture of
  # issue 12): autoconf's `-g -O2` and a config.log with gcc's random
  # temporary names, -frandom-seed from $out, debug info stripped in fixup,
  # the man page moved to `man` and gzipped, the helper script's shebang
  # patched. separateDebugInfo adds GNU build-ids and a `debug` output.
  gnuhello = mkLinuxDerivation ({
    pname = "gnuhello";
    version = srcVersion;
    src = helloSrc;
    outputs = [ "out" "man" ];
    configureFlags = "--autoconf-defaults --nfiles=${toString nfiles} --funcs-per-file=${toString funcsPerFile}"
      + (if configureExtraFlags != "" then " ${configureExtraFlags}" else "");
    installTargets = "install install-extra";
    inherit doCheck enableParallelBuilding;
    postInstall = postInstallExtra;
  }
  // optional separateDebugInfo { separateDebugInfo = true; }
  // optional dontStrip { dontStrip = true; }
  // optional (installExtra != "") {
    installPhase = ''
      runHook preInstall
      make install install-extra
      ${installExtra}
      runHook postInstall
    '';
  });

  # Issue 22 (sound keys): every attribute is exported to every phase, and
  # programs read them before the phase whose bash text names them: make
  # imports GREETING from the environment and compiles it in, ./configure
  # reads motto, the generator make runs reads banner. postInstall names
  # all of them, and note, which only its bash text reads. The binary does
  # not mention $out (dontAddPrefix: configure gets no --prefix).
  greet = mkDerivation ({
    pname = "greet";
    version = "1";
    src = ./greet;
    GREETING = greeting;
    inherit motto banner note;
    dontAddPrefix = true;
    configureFlags = "--greet" + (if configureExtraFlags != "" then " ${configureExtraFlags}" else "");
    postInstall = ''
      mkdir -p "$out/share/greet"
      echo "$GREETING" > "$out/share/greet/greeting"
      echo "$motto" > "$out/share/greet/motto"
      echo "$banner" > "$out/share/greet/banner"
      echo "$note" > "$out/share/greet/note"
      "$out/bin/greet" > "$out/share/greet/output"
    '' + postInstallExtra;
  }
  // optional (makeExtraFlags != "") { makeFlags = makeExtraFlags; }
  // installEdited);

  # Multiple outputs: out (a program), dev (a header + pkg-config-like file),
  # lib (a shared library). Each output path is also an environment variable.
  multi = mkDerivation {
    pname = "multi";
    version = "1.0";
    outputs = [ "out" "dev" "lib" ];
    src = ./multi;
    enableParallelBuilding = true;
    makeFlags = [ "CC=gcc" ];
    installPhase = ''
      runHook preInstall
      make install-bin bindir="$out/bin"
      make install-lib libdir="$lib/lib"
      make install-dev includedir="$dev/include"
      mkdir -p "$dev/nix-support"
      echo "$lib" > "$dev/nix-support/lib-output"
      runHook postInstall
    '';
    postInstall = postInstallExtra;
  };

  # A single-step buildCommand package (cannot be split into phases).
  cmd = mkDerivation {
    name = "cmd-1";
    message = "built by buildCommand";
    buildCommand = ''
      mkdir -p "$out/share"
      echo "$message" > "$out/share/message"
      printf '%s\n' one two three | sort -r > "$out/share/sorted"
    '';
  };

  # Configure and build succeed, installPhase fails.
  failing = mkDerivation {
    pname = "failing";
    version = "1";
    src = ./failing;
    inherit failMessage;
    installPhase = ''
      runHook preInstall
      echo "$failMessage" >&2
      exit 1
    '';
  };

  # __structuredAttrs: lists become bash arrays, attrsets associative arrays.
  structured = mkDerivation {
    pname = "structured";
    version = "1";
    __structuredAttrs = true;
    dontUnpack = true;
    words = structuredWords;
    settings = { colour = "blue"; size = "42"; };
    configureFlags = [ "--one" "two words" ];
    buildPhase = ''
      runHook preBuild
      printf '%s\n' "''${words[@]}" > words.txt
      for k in $(printf '%s\n' "''${!settings[@]}" | sort); do
        echo "$k=''${settings[$k]}"
      done > settings.txt
      printf '<%s>\n' "''${configureFlags[@]}" > flags.txt
      runHook postBuild
    '';
    installPhase = ''
      runHook preInstall
      mkdir -p "$out/share"
      cp words.txt settings.txt flags.txt "$out/share/"
      echo "''${#words[@]}" > "$out/share/count"
      runHook postInstall
    '';
  };

  # A custom phase inserted before installPhase (preInstallPhases).
  custom = mkDerivation {
    pname = "custom";
    version = "1";
    dontUnpack = true;
    inherit stamp;
    preInstallPhases = [ "stampPhase" ];
    stampPhase = ''
      echo "$stamp" > stamp.txt
    '';
    buildPhase = ''
      echo built > built.txt
    '';
    installPhase = ''
      runHook preInstall
      mkdir -p "$out"
      cp built.txt stamp.txt "$out/"
      runHook postInstall
    '';
    postInstall = postInstallExtra;
  };

  # Exact rewriting fixtures (issue 4), each the ./embed program (mkEmbed).
  # `embed` compiles $out into the binary as a string gcc splits into pieces,
  # linked with Debian gcc's default build-id; the edit tests change
  # postInstall.
  embed = mkEmbed "embed" {
    makeFlags = [ "prefix=$(out)" ];
    preBuild = ''makeFlagsArray+=("prefix=$out")'';
  };

  # Like embed, plus a gzip'd file holding $out: compressed bytes cannot be
  # rewritten in place, so a resume is inexact.
  gzipped = mkEmbed "gzipped" {
    preBuild = ''
      makeFlagsArray+=("prefix=$out")
      echo "installed in $out" > note.txt
      gzip -n -9 note.txt
    '';
    postInstall = ''
      cp note.txt.gz $out/share/embed/
    '' + postInstallExtra;
  };

  # A fixed build-id (--build-id=0x…) is no algorithm nixlayer can recompute.
  fixedid = mkEmbed "fixedid" {
    preBuild = ''makeFlagsArray+=("prefix=$out" "LDFLAGS=-Wl,--build-id=0x0123456789abcdef0123456789abcdef01234567")'';
  };

  # Records the builder's world (identity, environment, files, network) in
  # its output: equal outputs from nixlayer and nix-build mean the sandbox
  # matches Nix's.
  envprobe = mkDerivation {
    pname = "envprobe";
    version = "1";
    dontUnpack = true;
    buildPhase = ''
      {
        echo "id: $(id)"
        echo "hostname: $(cat /proc/sys/kernel/hostname)"
        echo "pwd: $(pwd) umask: $(umask)"
        echo "nofile: $(ulimit -n)"
        echo "root: $(ls / | tr '\n' ' ')"
        # bubblewrap always adds /dev/core (-> /proc/kcore, unreadable there):
        # the one known difference from Nix's sandbox, left out here.
        echo "dev: $(ls /dev | grep -vx core | tr '\n' ' ')"
        echo "store: $(ls /nix/store | sed 's/^[a-z0-9]*-//' | sort | tr '\n' ' ')"
        echo "net: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')"
        echo "tmp: $(ls -ld /tmp | cut -c1-10)"
        for f in /etc/passwd /etc/group /etc/hosts; do echo "== $f"; cat $f; done
        echo "== env"
        env -0 | sort -z | tr '\0' '\n' | grep -v -e '^_=' -e '^SHLVL=' -e '^OLDPWD='
        echo "== shell"
        echo "BASH=$BASH SHELL=''${SHELL:-unset} 0=$0"
      } > probe.txt
    '';
    installPhase = ''
      mkdir -p $out
      cp probe.txt $out/
    '';
  };

  # hello built with the oldest setup.sh generation.
  oldgen = mkDerivation {
    pname = "oldgen";
    version = "1";
    stdenv = oldStdenv;
    src = helloSrc;
    configureFlags = "--nfiles=${toString nfiles} --funcs-per-file=${toString funcsPerFile}";
    enableParallelBuilding = true;
    postInstall = postInstallExtra;
  };

  # passAsFile: Nix hands the attribute to the builder as a file ($payloadPath)
  # instead of an environment variable.
  passfile = mkDerivation {
    pname = "passfile";
    version = "1";
    dontUnpack = true;
    payload = "a large attribute\nwith several lines\n";
    passAsFile = [ "payload" ];
    installPhase = ''
      mkdir -p $out
      cp "$payloadPath" $out/payload
      echo "payload variable: ''${payload:-unset}, file: $(basename "$payloadPath")" > $out/how
    '';
  };

  # Like nixpkgs' runCommand: the buildCommand itself is passed as a file.
  runcmd = mkDerivation {
    name = "runcmd-1";
    passAsFile = [ "buildCommand" ];
    buildCommand = ''
      mkdir -p $out
      echo "built from $(basename "$buildCommandPath")" > $out/how
    '';
  };

  # An output check Nix enforces after the build: this output mentions bash,
  # which disallowedReferences forbids, so the build must fail.
  refcheck = mkDerivation {
    pname = "refcheck";
    version = "1";
    dontUnpack = true;
    disallowedReferences = [ bash ];
    installPhase = ''
      mkdir -p $out
      echo "${bash}" > $out/uses-bash
    '';
  };

  # passAsFile and a reference check together, both honoured by a layered
  # build (the hook layers it): the output must not refer to bash, and
  # does not unless violateChecks.
  checked = mkDerivation {
    pname = "checked";
    version = "1";
    dontUnpack = true;
    payload = "passed as a file\n";
    passAsFile = [ "payload" ];
    disallowedReferences = [ bash ];
    installPhase = ''
      mkdir -p $out
      cp "$payloadPath" $out/payload
    '' + violation;
  };

  # The same checks with structured attributes: outputChecks per output,
  # with a size limit.
  outputchecked = mkDerivation {
    pname = "outputchecked";
    version = "1";
    __structuredAttrs = true;
    dontUnpack = true;
    outputChecks.out = {
      disallowedReferences = [ bash ];
      maxSize = 65536;
    };
    installPhase = ''
      mkdir -p $out
      echo checked > $out/checked
    '' + violation;
  };

  # A phase whose code exits the builder: Nix skips the remaining phases
  # (postFixup never runs), so nixlayer must too.
  earlyexit = mkDerivation {
    pname = "earlyexit";
    version = "1";
    dontUnpack = true;
    installPhase = ''
      mkdir -p $out
      echo installed > $out/installed
      exit 0
    '';
    postFixup = ''
      echo "fixup ran" > $out/fixup
    '';
  };
}
