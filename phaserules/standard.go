package phaserules

// StandardPhase is a phase of the stdenv's generic builder. This table is
// the one place nixlayer knows them: the runner's driver gets it as data
// (for the oldest setup.sh, whose genericBuild inlines the phase loop), the
// placement rules read it, and the language server offers its names.
type StandardPhase struct {
	Name string
	// Switch is the variable that skips the phase when set (dontBuild), or
	// with OptIn the one that must be set for it to run (doCheck).
	Switch string
	OptIn  bool
	// ListBefore names the variable listing extra phases that run just
	// before this one (preConfigurePhases), "" for none.
	ListBefore string
	// EntersSourceRoot: after this phase the loop changes into $sourceRoot.
	EntersSourceRoot bool
	// Controls are the attributes nixpkgs' function of the phase reads:
	// only a guess for the language server before a build's stdenv was
	// probed (New without Reads). Keys place attributes by the reads of
	// the build's own setup.sh and setup hooks (PhaseReads).
	Controls string
}

// Standard is the generic builder's default phase list, in order.
var Standard = []StandardPhase{
	{Name: "unpackPhase", Switch: "dontUnpack", ListBefore: "prePhases", EntersSourceRoot: true,
		Controls: "src srcs sourceRoot setSourceRoot unpackCmd dontMakeSourcesWritable"},
	{Name: "patchPhase", Switch: "dontPatch", Controls: "patches patchFlags"},
	{Name: "configurePhase", Switch: "dontConfigure", ListBefore: "preConfigurePhases",
		Controls: `configureScript configureFlags configureFlagsArray configurePlatforms prefix prefixKey
			dontAddPrefix dontAddDisableDepTrack dontDisableStatic dontFixLibtool cmakeFlags mesonFlags`},
	{Name: "buildPhase", Switch: "dontBuild", ListBefore: "preBuildPhases",
		Controls: "makeFlags makeFlagsArray buildFlags buildFlagsArray makefile enableParallelBuilding"},
	{Name: "checkPhase", Switch: "doCheck", OptIn: true, Controls: "checkFlags checkFlagsArray checkTarget enableParallelChecking"},
	{Name: "installPhase", Switch: "dontInstall", ListBefore: "preInstallPhases",
		Controls: "installFlags installFlagsArray installTargets enableParallelInstalling"},
	{Name: "fixupPhase", Switch: "dontFixup", ListBefore: "preFixupPhases",
		Controls: `dontStrip dontStripHost dontStripTarget stripAllList stripDebugList stripDebugFlags
			stripAllFlags dontPatchELF dontPatchShebangs dontMoveSbin dontMoveLib64 dontGzipMan
			dontPruneLibtoolFiles forceShare`},
	{Name: "installCheckPhase", Switch: "doInstallCheck", OptIn: true, Controls: "installCheckTarget installCheckFlags installCheckFlagsArray"},
	{Name: "distPhase", Switch: "doDist", OptIn: true, ListBefore: "preDistPhases", Controls: "distFlags distFlagsArray distTarget tarballs dontCopyDist"},
}

// ListAfter names the variable listing extra phases that run after the
// standard ones.
const ListAfter = "postPhases"

// StandardNames are the names of the standard phases, in order.
func StandardNames() []string {
	names := make([]string, len(Standard))
	for i, p := range Standard {
		names[i] = p.Name
	}
	return names
}

func isStandard(phase string) bool {
	for _, p := range Standard {
		if p.Name == phase {
			return true
		}
	}
	return false
}
