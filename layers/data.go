package layers

// The big data a layer may hold beside its tree (SetData, Data): the one
// list of their names.
const (
	// DataState is the builder's shell state after the phase (shellstate).
	DataState = "state"
	// DataLog is the phase's build log.
	DataLog = "log"
	// DataPathMap is the path map of the chain that ends in the layer: which
	// bytes depend on the output paths (rewrite.Map).
	DataPathMap = "pathmap"
	// DataExactness is the verdict on the outputs of the build whose top
	// the layer is (verdict.Exactness), read by verify.
	DataExactness = "exactness"
	// DataOCIBlob is the registry blob the layer was pushed as or pulled
	// from, so a layer is uploaded once.
	DataOCIBlob = "oci-blob"
)

// ChainData are the data a layer carries when its chain is pushed or
// exported; the others are this cache's own records.
var ChainData = []string{DataState, DataLog, DataPathMap}
