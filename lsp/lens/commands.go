package lens

import (
	"maps"
	"slices"

	"go.lsp.dev/jsonrpc2"
	"go.lsp.dev/protocol"

	"github.com/nixlayer/nixlayer/buildindex"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/layertree"
	"github.com/nixlayer/nixlayer/lsp/target"
	"github.com/nixlayer/nixlayer/runner"
)

// The JSON of nixlayer's own commands, requests and notifications (what
// an editor sends and is answered), and the pure functions that make their
// answers.

// Command names the server executes (workspace/executeCommand).
const (
	CmdBuild       = "nixlayer.build"
	CmdRebuildFrom = "nixlayer.rebuildFrom"
	CmdOpenShell   = "nixlayer.openShell"
	CmdShowLog     = "nixlayer.showLog"
	// CmdBrowse names the layer holding a phase's tree (to read with the
	// layer requests below); CmdDiff lists what it changed.
	CmdBrowse = "nixlayer.browse"
	CmdDiff   = "nixlayer.diff"
	// CmdCancel cancels the running build of the document.
	CmdCancel = "nixlayer.cancel"
	// CmdChooseTarget picks the target of the document among the several
	// that match it (CommandArgs.Target; without one the server asks).
	CmdChooseTarget = "nixlayer.chooseTarget"
)

// Commands lists every command, for the server capabilities.
var Commands = []string{CmdBuild, CmdRebuildFrom, CmdOpenShell, CmdShowLog, CmdBrowse, CmdDiff, CmdCancel, CmdChooseTarget}

// CommandArgs is the single argument object of every command.
type CommandArgs struct {
	URI   protocol.DocumentURI `json:"uri"`
	Phase string               `json:"phase,omitempty"`
	// Name picks one derivation call of the buffer by pname or name when
	// it has several (default: the first one that was evaluated).
	Name string `json:"name,omitempty"`
	// Target is the target.Choice.Name nixlayer.chooseTarget picks.
	Target string `json:"target,omitempty"`
}

// BuildResult answers nixlayer.build and nixlayer.rebuildFrom.
type BuildResult struct {
	OK  bool   `json:"ok"`
	Drv string `json:"drv"`
	// Built is empty when the build failed.
	Built
	Seconds float64 `json:"seconds"`
	// FailedPhase and Error describe a build that failed in a phase.
	FailedPhase string `json:"failedPhase,omitempty"`
	Exit        int    `json:"exit,omitempty"`
	Error       string `json:"error,omitempty"`
}

// Built is what a BuildResult tells of a successful build: the phases, the
// outputs and the state of its runner.Result.
type Built struct {
	Ran      []string          `json:"ran"`
	Reused   []string          `json:"reused"`
	Outputs  map[string]string `json:"outputs,omitempty"`
	InStore  bool              `json:"inStore"`
	Verified bool              `json:"verified"`
	// State is the result's state (runner.ResultState): a provisional
	// result is verified or replaced in the background; the server sends
	// nixlayer/resultState and refreshes the lenses when it changes.
	State events.ResultState `json:"state,omitempty"`
}

// BuiltOf is what a BuildResult tells of a successful build.
func BuiltOf(res *runner.Result) Built {
	return Built{Ran: res.Ran, Reused: res.Reused, Outputs: res.Outputs, InStore: res.InStore, Verified: res.Verified, State: res.State}
}

// ShellResult answers nixlayer.openShell: the command for the client to
// run in a terminal.
type ShellResult struct {
	Command string   `json:"command"`
	Argv    []string `json:"argv"`
	Cwd     string   `json:"cwd"`
	Note    string   `json:"note,omitempty"`
}

// LogResult answers nixlayer.showLog.
type LogResult struct {
	Phase string `json:"phase"`
	Layer string `json:"layer"`
	Log   string `json:"log"`
}

// Requests of nixlayer's own that read a layer's tree — the build
// directory and the outputs as a phase left them — for an editor's file
// explorer. Paths are the builder's (/build/…, /nix/store/…). The engine
// reads the layer (root's, or the daemon's for users): the editor needs no
// mount and no rights on the cache. nixlayer.browse and nixlayer.diff name
// the layer of a phase of a document.
const (
	// MethodLayerFiles: params api.LayerFilesRequest, result
	// layertree.Files (the path's metadata, a directory's entries).
	MethodLayerFiles = "nixlayer/layerFiles"
	// MethodReadLayerFile: params api.ReadLayerFileRequest, result
	// layertree.Data (base64 data, at most 4 MiB; read on from
	// offset+length until eof).
	MethodReadLayerFile = "nixlayer/readLayerFile"
	// MethodLayerDiff: params api.LayerDiffRequest, result
	// layertree.Diff (what the phase added, changed, removed against the
	// phase before it).
	MethodLayerDiff = "nixlayer/layerDiff"
)

// Error codes of the layer requests.
const (
	// CodeLayerGone: the layer is no longer in the cache (gc removed it).
	CodeLayerGone jsonrpc2.Code = -32004
	// CodeFileNotFound: the path is not in the layer's tree.
	CodeFileNotFound jsonrpc2.Code = -32005
)

// BrowseResult answers nixlayer.browse: the layer holding the tree a phase
// left, for the layer requests.
type BrowseResult struct {
	Layer   string `json:"layer"`
	Phase   string `json:"phase"`
	Package string `json:"package"` // the derivation's name
	Drv     string `json:"drv"`
	// State is "cached" (the current plan's layer), "failed" (the failed
	// state of the last build) or "earlier" (a layer of an earlier build
	// whose inputs differ).
	State string `json:"state"`
	// Label names the tree for people: "hello-1 · installPhase (failed)".
	Label string `json:"label"`
	// Roots are the directories worth opening: /build and the outputs the
	// phase's tree holds.
	Roots []string `json:"roots"`
	Note  string   `json:"note,omitempty"`
}

// DiffResult answers nixlayer.diff.
type DiffResult struct {
	layertree.Diff
	Label string `json:"label"`
}

// LayerOf picks the layer whose tree shows what phase left: the failed
// state when the derivation's last build failed there, else the plan's
// cached layer, else the newest layer an earlier build of the package
// made of the phase. nil when there is none.
func LayerOf(pkg *target.Package, phase string) *BrowseResult {
	res := &BrowseResult{Phase: phase, Package: pkg.Name, Drv: pkg.DrvPath, Roots: []string{"/build"}}
	for _, name := range slices.Sorted(maps.Keys(pkg.Plan.Outputs)) {
		res.Roots = append(res.Roots, pkg.Plan.Outputs[name])
	}
	if f := pkg.Failure; f != nil && f.Phase == phase && f.Layer != "" {
		res.Layer, res.State = f.Layer, "failed"
	}
	for _, ph := range pkg.Plan.Phases {
		if res.Layer == "" && ph.Name == phase && ph.Layer != nil {
			res.Layer, res.State = ph.Layer.ID, "cached"
		}
	}
	for i := len(pkg.History) - 1; i >= 0 && res.Layer == ""; i-- {
		if r := pkg.History[i]; r.Phase == phase && r.Layer != "" && r.Status != buildindex.RunInterrupted {
			res.Layer, res.State = r.Layer, "earlier"
			res.Note = "the current derivation has no layer after " + phase + "; this one is from an earlier build (" + r.Drv + ") whose inputs differ"
		}
	}
	if res.Layer == "" {
		return nil
	}
	res.Label = pkg.Name + " · " + phase
	if res.State != "cached" {
		res.Label += " (" + res.State + ")"
	}
	return res
}

// ResultStateMethod is the notification the server sends when the state
// of a result shown in an open document changes (background work settled
// a provisional result): its params are the events.Event announcing the
// new state (Kind provisional, verifying, verified, replaced or
// unverified; State, Drv and Message set).
const ResultStateMethod = "nixlayer/resultState"

// Outcome is how a build reported by $/progress ended, sent as "outcome" in
// the end value so that clients need not read the message.
type Outcome string

const (
	OutcomeSucceeded Outcome = "succeeded"
	OutcomeFailed    Outcome = "failed"    // a phase failed, or the evaluation did
	OutcomeCancelled Outcome = "cancelled" // by the client
	OutcomeError     Outcome = "error"     // nixlayer could not build (not the package's fault)
)

// ProgressReport is the $/progress report of a build's event.
func ProgressReport(e events.Event) map[string]any {
	v := map[string]any{"kind": "report", "message": e.Short(), "cancellable": true, "event": e}
	if e.Total > 0 {
		switch e.Kind {
		case events.EventPlan:
			v["percentage"] = 0
		case events.EventStart:
			v["percentage"] = (e.Index - 1) * 100 / e.Total
		case events.EventCached, events.EventDone, events.EventFailed:
			v["percentage"] = e.Index * 100 / e.Total
		}
	}
	switch e.Kind {
	case events.EventRewrite, events.EventVerdict, events.EventDeliver, events.EventFinished:
		v["percentage"] = 100
	}
	if e.Phase != "" {
		v["phase"] = e.Phase // an extension clients may ignore
	}
	return v
}
