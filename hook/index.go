package hook

import "github.com/nixlayer/nixlayer/buildindex"

// The build index (builds Nix ran itself, recorded by pre-/post-build-hook,
// and builds the hook made) lives in package buildindex, which the CLI and
// the language server read too. These are the names the hook uses.

// Record is one line of the index.
type Record = buildindex.Record

const indexDir = buildindex.Dir

// IndexPath is the index file of a cache directory.
func IndexPath(cacheDir string) string { return buildindex.Path(cacheDir) }

// RecordStart notes that a build of drvPath began (pre-build-hook).
func RecordStart(cacheDir, drvPath, by string) error {
	return buildindex.RecordStart(cacheDir, drvPath, by)
}

// RecordEnd notes that a build of drvPath ended; see buildindex.RecordEnd.
func RecordEnd(cacheDir, drvPath, by, event string, outPaths []string, msg string) error {
	return buildindex.RecordEnd(cacheDir, drvPath, by, event, outPaths, msg)
}

// Builds reads the index's records, oldest first.
func Builds(cacheDir string) ([]Record, error) { return buildindex.Records(cacheDir) }

// LastBuild returns the newest end (or failure) record of drvPath, if any.
func LastBuild(cacheDir, drvPath string) (*Record, error) {
	return buildindex.LastRecord(cacheDir, drvPath)
}

func drvName(drvPath string) string { return buildindex.DrvName(drvPath) }
