package phaserun

import (
	"sync"

	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/sandbox"
)

// keyVersion changes whenever what a key covers changes in Go code, so old
// layers are not reused under a new meaning. What nixlayer runs in the
// sandbox is covered by Recipe without it.
// v3: the sound placement rule (phaserules.Place): only the stdenv's own
// consumption keys an attribute later than the first phase.
const keyVersion = "nixlayer-key-v3"

// argv0Wrapper starts the builder with its base name as argv[0], as Nix
// does (bash derives $BASH from it); bubblewrap cannot, so a bash exec -a
// does.
const argv0Wrapper = `exec -a "$0" "$@"`

// Recipe digests everything nixlayer itself puts into a build besides the
// derivation: the key version, the driver and the data it is given, the
// argv[0] wrapper and the sandbox's world. Keys and probes include it, so a
// nixlayer whose driver or sandbox differs never reuses the layers, shell
// states and probes another one made.
var Recipe = sync.OnceValue(func() string {
	parts := []string{keyVersion, driverScript, argv0Wrapper, sandbox.Fingerprint()}
	return planner.Digest(append(parts, driverData()...)...)
})
