// Package api is what the faces (CLI, language server) ask of nixlayer's
// engine, as one interface, Service. Local runs the engine in this process
// (root, who owns the shared cache); daemon.Client asks `nixlayer daemon`,
// which serves every other user with a Local of its own. So a face has one
// code path per kind of request, wherever the engine runs.
//
// Adding a request: a method on Service; its request and result types
// (JSON: they cross the daemon's socket); Local's implementation; one entry
// in the daemon's method table (daemon/methods.go) and one client method.
package api

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/nixlayer/nixlayer/buildindex"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/gc"
	"github.com/nixlayer/nixlayer/inspect"
	"github.com/nixlayer/nixlayer/layercache"
	"github.com/nixlayer/nixlayer/layertree"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/results"
	"github.com/nixlayer/nixlayer/runner"
	"github.com/nixlayer/nixlayer/verify"
)

// Service is everything a face asks of the engine. Requests name
// derivations by .drv path: the caller evaluates Nix expressions itself
// (with its own rights and files), the engine builds.
type Service interface {
	// Build builds layer by layer; exact results are registered in the
	// Nix store, others stay in the caller's results directory.
	Build(ctx context.Context, req BuildRequest, out Output) (*runner.Result, error)
	Plan(ctx context.Context, req PlanRequest, out Output) (*PlanResult, error)
	Learn(ctx context.Context, req LearnRequest, out Output) error
	Verify(ctx context.Context, req VerifyRequest, out Output) (*verify.Verification, error)
	// Status describes the engine: where it runs, its cache, whether it
	// can build here, what the caller may do.
	Status(ctx context.Context) (*Status, error)
	// Results are the states of results (provisional, verifying, verified,
	// replaced, unverified), which background work changes.
	Results(ctx context.Context, req ResultsRequest) (*ResultsResult, error)
	List(ctx context.Context, req ListRequest) (*ListResult, error)
	Log(ctx context.Context, req LogRequest) ([]inspect.PhaseLog, error)
	// Shell runs an interactive shell in a phase's state on term.
	Shell(ctx context.Context, req ShellRequest, term Terminal) (*runner.ShellResult, error)
	// GC and Import change what the shared cache holds: trusted users only.
	GC(ctx context.Context, req GCRequest, out Output) (*gc.Result, error)
	Import(ctx context.Context, req ImportRequest, out Output) ([]layercache.ImportResult, error)
	// LayerFiles, ReadLayerFile and LayerDiff look into a layer's tree (the
	// build directory and the outputs as a phase left them), read-only:
	// the engine mounts the layer, the caller needs no rights on the cache.
	LayerFiles(ctx context.Context, req LayerFilesRequest) (*layertree.Files, error)
	ReadLayerFile(ctx context.Context, req ReadLayerFileRequest) (*layertree.Data, error)
	LayerDiff(ctx context.Context, req LayerDiffRequest) (*layertree.Diff, error)
	// Export writes a package's chain into an OCI image layout of the
	// caller's (written with the caller's rights).
	Export(ctx context.Context, req ExportRequest, out Output) (*ExportResult, error)
	// Pull brings a package's missing phases from an OCI registry; users
	// Nix does not trust may pull only from the engine's layerCaches.
	Pull(ctx context.Context, req PullRequest, out Output) (*layercache.PullReport, error)
	// Push sends a package's chain to an OCI registry: trusted users only.
	Push(ctx context.Context, req PushRequest, out Output) (*PushResult, error)
	Close() error
}

// Output receives what a request reports while it runs; nil fields
// discard.
type Output struct {
	// Log is the builder's output and Nix's messages.
	Log io.Writer
	// Progress gets the engine's events (phase started, cached, done, …).
	Progress func(events.Event)
}

func (o Output) progress() func(events.Event) {
	if o.Progress == nil {
		return func(events.Event) {}
	}
	return o.Progress
}

// BuildRequest is one build of a derivation.
type BuildRequest struct {
	DrvPath string `json:"drvPath"`
	Strict  bool   `json:"strict,omitempty"`
	// From forces a restart at this phase; the result stays outside the store.
	From string `json:"from,omitempty"`
	// Exact rebuilds rather than keep an inexact resume.
	Exact bool `json:"exact,omitempty"`
	// NoLearn starts no background work after the build (learning the
	// chain's output-path map, verifying a provisional result), which the
	// runner's policy otherwise starts whenever it is owed.
	NoLearn bool `json:"noLearn,omitempty"`
	// ResultLink is the result link the caller makes (absolute): recorded
	// with the result, so that background verification repoints it into
	// the store.
	ResultLink string `json:"resultLink,omitempty"`
	// Registry switches apply to pulls from layerCaches and the push to
	// pushTo (trusted users only).
	Registry layercache.RegistryOptions `json:"registry,omitzero"`
}

// PlanRequest asks what a build would do.
type PlanRequest struct {
	DrvPath string `json:"drvPath"`
	Strict  bool   `json:"strict,omitempty"`
	From    string `json:"from,omitempty"`
}

// PlanResult is the runner's plan, the newest build Nix made itself of
// the derivation (pre-/post-build-hook records), the state of nixlayer's
// newest result of it, if any, and the phase history: the package's last
// layered builds and the derivation's failure.
type PlanResult struct {
	*planner.Plan
	BuiltByNix *buildindex.Build        `json:"builtByNixRecord,omitempty"`
	Result     *results.Record          `json:"resultRecord,omitempty"`
	History    *buildindex.PhaseHistory `json:"history,omitempty"`
}

// ResultsRequest asks for the states of results: of Drvs, or all.
type ResultsRequest struct {
	Drvs []string `json:"drvs,omitempty"`
}

// ResultsResult is the results' states (newest first) and the background
// work running on the cache.
type ResultsResult struct {
	Results    []*results.Record `json:"results"`
	Background []results.Job     `json:"background"`
}

// HistoryBuilds is how many of a package's last builds a plan carries.
const HistoryBuilds = 5

// LearnRequest learns a cached chain's output-path map now.
type LearnRequest struct {
	DrvPath  string                     `json:"drvPath"`
	Registry layercache.RegistryOptions `json:"registry,omitzero"`
}

// VerifyRequest compares the layered result with Nix's own build.
type VerifyRequest struct {
	DrvPath string `json:"drvPath"`
}

// Status describes the engine a face talks to.
type Status struct {
	// Engine is "local" (this process) or "daemon".
	Engine string `json:"engine"`
	// Socket is the daemon's socket (daemon only).
	Socket   string `json:"socket,omitempty"`
	CacheDir string `json:"cacheDir"`
	Driver   string `json:"driver"` // overlay or vfs
	Layers   int    `json:"layers"`
	// User is who the engine serves; Trusted users may also gc, import and
	// push (and pull from any registry).
	User    string `json:"user"`
	UID     int    `json:"uid"`
	Trusted bool   `json:"trusted"`
	// NotReady says why layered builds cannot run here ("" when they can).
	NotReady string `json:"notReady,omitempty"`
	// ResultsDir holds the caller's results that stay outside the store.
	ResultsDir string `json:"resultsDir"`
}

// ListRequest lists layers (of Package, or all) and with Builds the
// builds Nix ran itself.
type ListRequest struct {
	Package inspect.Package `json:"package"`
	Builds  bool            `json:"builds,omitempty"`
}

// ListResult answers List.
type ListResult struct {
	Layers []inspect.LayerRow `json:"layers"`
	Builds []buildindex.Build `json:"builds,omitempty"`
}

// LogRequest asks for stored build logs: of one phase (a phase name,
// "failed" or a layer id) or of the package's newest chain.
type LogRequest struct {
	Package inspect.Package `json:"package"`
	Phase   string          `json:"phase,omitempty"`
}

// ShellRequest opens a shell in the state after a phase.
type ShellRequest struct {
	DrvPath string `json:"drvPath"`
	At      string `json:"at"`
	Keep    bool   `json:"keep,omitempty"`
}

// Terminal is where a shell runs: the caller's terminal (or any files).
type Terminal struct {
	In, Out *os.File
	// Notice gets nixlayer's own messages.
	Notice io.Writer
}

// LayerFilesRequest describes a path of a layer's tree (as the builder saw
// it: /build/…, /nix/store/…) and lists it when it is a directory.
type LayerFilesRequest struct {
	Layer string `json:"layer"`
	Path  string `json:"path"`
}

// ReadLayerFileRequest reads Length bytes (0: up to layertree.MaxReadChunk)
// from Offset of a file of a layer's tree.
type ReadLayerFileRequest struct {
	Layer  string `json:"layer"`
	Path   string `json:"path"`
	Offset int64  `json:"offset,omitempty"`
	Length int64  `json:"length,omitempty"`
}

// LayerDiffRequest asks what a phase's layer changed against the phase
// before it.
type LayerDiffRequest struct {
	Layer string `json:"layer"`
}

// OrStd is t with this process's own stdin, stdout and stderr where t
// names none.
func (t Terminal) OrStd() Terminal {
	if t.In == nil {
		t.In = os.Stdin
	}
	if t.Out == nil {
		t.Out = os.Stdout
	}
	if t.Notice == nil {
		t.Notice = os.Stderr
	}
	return t
}

// GCRequest is gc's policy (gc.Options).
type GCRequest struct {
	KeepLast  int           `json:"keepLast,omitempty"`
	MaxSize   int64         `json:"maxSize,omitempty"`
	OlderThan time.Duration `json:"olderThan,omitempty"`
	DryRun    bool          `json:"dryRun,omitempty"`
}

// ImportRequest imports the layer chains of an OCI layout directory.
type ImportRequest struct {
	Dir string `json:"dir"`
	Ref string `json:"ref,omitempty"`
}

// ExportRequest exports the chain of a derivation, up to the layer after
// At (default: the newest cached phase), into the OCI layout Dir, tagged
// Ref (default: the derivation's name).
type ExportRequest struct {
	DrvPath string `json:"drvPath"`
	At      string `json:"at,omitempty"`
	Dir     string `json:"dir"`
	Ref     string `json:"ref,omitempty"`
	// SecretKey signs the chain (the key in Nix's secret-key format; the
	// caller reads its file); default: the engine's secretKeyFile.
	SecretKey string `json:"secretKey,omitempty"`
}

// Selection is the chain a push or an export took.
type Selection struct {
	Name  string `json:"name"`  // the derivation's
	Phase string `json:"phase"` // the chain's last phase
	// Note: the chain is not the current derivation's (an earlier build).
	Note string `json:"note,omitempty"`
}

// ExportResult answers Export.
type ExportResult struct {
	*layercache.ExportResult
	Selection Selection `json:"selection"`
}

// PullRequest pulls what the derivation misses from Ref
// (registry/repo[:tag]).
type PullRequest struct {
	DrvPath  string                     `json:"drvPath"`
	Ref      string                     `json:"ref"`
	Registry layercache.RegistryOptions `json:"registry,omitzero"`
}

// PushRequest pushes the chain of a derivation, up to the layer after At
// (default: the newest cached phase), to Ref (registry/repo[:tag]).
type PushRequest struct {
	DrvPath string `json:"drvPath"`
	At      string `json:"at,omitempty"`
	Ref     string `json:"ref"`
	// SecretKey: as ExportRequest's.
	SecretKey string                     `json:"secretKey,omitempty"`
	Registry  layercache.RegistryOptions `json:"registry,omitzero"`
}

// PushResult answers Push.
type PushResult struct {
	*layercache.PushReport
	Selection Selection `json:"selection"`
}
