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
}

// Standard is the generic builder's default phase list, in order.
var Standard = []StandardPhase{
	{Name: "unpackPhase", Switch: "dontUnpack", ListBefore: "prePhases", EntersSourceRoot: true},
	{Name: "patchPhase", Switch: "dontPatch"},
	{Name: "configurePhase", Switch: "dontConfigure", ListBefore: "preConfigurePhases"},
	{Name: "buildPhase", Switch: "dontBuild", ListBefore: "preBuildPhases"},
	{Name: "checkPhase", Switch: "doCheck", OptIn: true},
	{Name: "installPhase", Switch: "dontInstall", ListBefore: "preInstallPhases"},
	{Name: "fixupPhase", Switch: "dontFixup", ListBefore: "preFixupPhases"},
	{Name: "installCheckPhase", Switch: "doInstallCheck", OptIn: true},
	{Name: "distPhase", Switch: "doDist", OptIn: true, ListBefore: "preDistPhases"},
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
