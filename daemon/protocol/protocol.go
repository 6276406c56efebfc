// Package protocol is what the two ends of the nixlayer daemon's socket
// share: JSON-RPC 2.0 (go.lsp.dev/jsonrpc2) framed by Content-Length and
// read within bounds (BoundedStream: 1 MiB to the daemon, internal/rpcframe),
// one method per api.Service request, notifications carrying a request's
// output (log, progress events) and its cancellation, the errors a face
// tells apart in both directions (WireError, ClientError), and a connection
// that carries file descriptors (FDConn, SCM_RIGHTS: a shell's terminal,
// an export's pipe) of which the daemon holds at most one. The daemon's
// server and its Client use it.
package protocol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"go.lsp.dev/jsonrpc2"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/layertree"
	"github.com/nixlayer/nixlayer/runner"
)

// Method names; each takes a Call{Token, Request} and answers with the
// api result type.
const (
	MethodBuild   = "nixlayer/build"
	MethodPlan    = "nixlayer/plan"
	MethodLearn   = "nixlayer/learn"
	MethodVerify  = "nixlayer/verify"
	MethodStatus  = "nixlayer/status"
	MethodList    = "nixlayer/list"
	MethodResults = "nixlayer/results"
	MethodLog     = "nixlayer/log"
	MethodShell   = "nixlayer/shell"
	MethodGC      = "nixlayer/gc"
	MethodImport  = "nixlayer/import"
	MethodExport  = "nixlayer/export"
	MethodPull    = "nixlayer/pull"
	MethodPush    = "nixlayer/push"

	MethodLayerFiles    = "nixlayer/layerFiles"
	MethodReadLayerFile = "nixlayer/readLayerFile"
	MethodLayerDiff     = "nixlayer/layerDiff"

	// NotifyOutput (daemon → client) carries a request's output.
	NotifyOutput = "nixlayer/output"
	// NotifyCancel (client → daemon) cancels a request.
	NotifyCancel = "nixlayer/cancel"
)

// Call is the params of every method: the request and a token naming it
// in output and cancel notifications.
type Call struct {
	Token   string          `json:"token"`
	Request json.RawMessage `json:"request"`
}

// Output is one piece of a request's output.
type Output struct {
	Token string        `json:"token"`
	Log   string        `json:"log,omitempty"`
	Event *events.Event `json:"event,omitempty"`
}

// Cancel is the params of NotifyCancel.
type Cancel struct {
	Token string `json:"token"`
}

// Error codes beyond JSON-RPC's own.
const (
	CodePhaseFailed jsonrpc2.Code = -32001 // data: runner.PhaseError
	CodeNotAllowed  jsonrpc2.Code = -32002 // not in allowed-users
	CodeNotTrusted  jsonrpc2.Code = -32003 // not in trusted-users
	CodeLayerGone   jsonrpc2.Code = -32004 // data: the layer id (layertree.GoneError)
	CodeNotFound    jsonrpc2.Code = -32005 // a path of a layer's tree does not exist
	CodeTooMany     jsonrpc2.Code = -32006 // a user's limit of requests running
	CodeCancelled   jsonrpc2.Code = -32800 // as LSP's RequestCancelled
)

// WireError turns an engine error into a JSON-RPC error that keeps what a
// face needs to tell (a failed phase becomes a diagnostic in the editor).
func WireError(err error) error {
	var pe *runner.PhaseError
	var we *jsonrpc2.Error
	var gone *layertree.GoneError
	switch {
	case errors.As(err, &gone):
		data, _ := json.Marshal(gone.Layer)
		raw := json.RawMessage(data)
		return &jsonrpc2.Error{Code: CodeLayerGone, Message: err.Error(), Data: &raw}
	case errors.Is(err, fs.ErrNotExist):
		return jsonrpc2.NewError(CodeNotFound, err.Error())
	case errors.As(err, &we):
		return we
	case errors.As(err, &pe):
		data, _ := json.Marshal(pe)
		raw := json.RawMessage(data)
		return &jsonrpc2.Error{Code: CodePhaseFailed, Message: err.Error(), Data: &raw}
	case errors.Is(err, api.ErrNotTrusted):
		return jsonrpc2.NewError(CodeNotTrusted, err.Error())
	}
	return err
}

// ClientError turns a JSON-RPC error back into what the engine would have
// returned in-process.
func ClientError(err error) error {
	var we *jsonrpc2.Error
	if !errors.As(err, &we) {
		return err
	}
	switch we.Code {
	case CodePhaseFailed:
		var pe runner.PhaseError
		if we.Data != nil && json.Unmarshal(*we.Data, &pe) == nil {
			// The hint names the user's own default, not the daemon's cache.
			pe.CacheDir = runner.DefaultCacheDir()
			return &pe
		}
	case CodeLayerGone:
		var id string
		if we.Data != nil && json.Unmarshal(*we.Data, &id) == nil {
			return &layertree.GoneError{Layer: id}
		}
	case CodeNotFound:
		return fmt.Errorf("%s: %w", strings.TrimSuffix(we.Message, ": "+fs.ErrNotExist.Error()), fs.ErrNotExist)
	case CodeCancelled:
		return context.Canceled
	}
	return errors.New(we.Message)
}
