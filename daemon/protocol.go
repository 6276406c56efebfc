// Package daemon is `nixlayer daemon`: a root service that owns the shared
// layer cache (the one the Nix hook uses) and serves api.Service to the
// other users of the machine over a Unix socket, the model being
// nix-daemon. Who may connect follows Nix's own allowed-users and
// trusted-users, checked against the peer's credentials. Client is the
// other end: the CLI and the language server of a user use it for every
// request.
//
// The protocol is JSON-RPC 2.0 (go.lsp.dev/jsonrpc2, Content-Length
// framing): one method per api.Service request, notifications carrying a
// request's output (log, progress events) and its cancellation, and the
// shell's terminal passed as a file descriptor (SCM_RIGHTS) with the
// shell request, and an export's pipe with the export request.
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"go.lsp.dev/jsonrpc2"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/layertree"
	"github.com/nixlayer/nixlayer/runner"
)

// DefaultSocket is where the daemon listens unless told otherwise
// ($NIXLAYER_DAEMON_SOCKET, --socket).
const DefaultSocket = "/run/nixlayer/daemon.sock"

// SocketPath is the socket clients use.
func SocketPath() string {
	if s := os.Getenv("NIXLAYER_DAEMON_SOCKET"); s != "" {
		return s
	}
	return DefaultSocket
}

// Method names; each takes a call{Token, Request} and answers with the
// api result type.
const (
	methodBuild   = "nixlayer/build"
	methodPlan    = "nixlayer/plan"
	methodLearn   = "nixlayer/learn"
	methodVerify  = "nixlayer/verify"
	methodStatus  = "nixlayer/status"
	methodList    = "nixlayer/list"
	methodResults = "nixlayer/results"
	methodLog     = "nixlayer/log"
	methodShell   = "nixlayer/shell"
	methodGC      = "nixlayer/gc"
	methodImport  = "nixlayer/import"
	methodExport  = "nixlayer/export"
	methodPull    = "nixlayer/pull"
	methodPush    = "nixlayer/push"

	methodLayerFiles    = "nixlayer/layerFiles"
	methodReadLayerFile = "nixlayer/readLayerFile"
	methodLayerDiff     = "nixlayer/layerDiff"

	// notifyOutput (daemon → client) carries a request's output.
	notifyOutput = "nixlayer/output"
	// notifyCancel (client → daemon) cancels a request.
	notifyCancel = "nixlayer/cancel"
)

// call is the params of every method: the request and a token naming it
// in output and cancel notifications.
type call struct {
	Token   string          `json:"token"`
	Request json.RawMessage `json:"request"`
}

// output is one piece of a request's output.
type output struct {
	Token string        `json:"token"`
	Log   string        `json:"log,omitempty"`
	Event *events.Event `json:"event,omitempty"`
}

type cancel struct {
	Token string `json:"token"`
}

// Error codes beyond JSON-RPC's own.
const (
	codePhaseFailed jsonrpc2.Code = -32001 // data: runner.PhaseError
	codeNotAllowed  jsonrpc2.Code = -32002 // not in allowed-users
	codeNotTrusted  jsonrpc2.Code = -32003 // not in trusted-users
	codeLayerGone   jsonrpc2.Code = -32004 // data: the layer id (layertree.GoneError)
	codeNotFound    jsonrpc2.Code = -32005 // a path of a layer's tree does not exist
	codeTooMany     jsonrpc2.Code = -32006 // a user's limit of requests running
	codeCancelled   jsonrpc2.Code = -32800 // as LSP's RequestCancelled
)

// wireError turns an engine error into a JSON-RPC error that keeps what a
// face needs to tell (a failed phase becomes a diagnostic in the editor).
func wireError(err error) error {
	var pe *runner.PhaseError
	var we *jsonrpc2.Error
	var gone *layertree.GoneError
	switch {
	case errors.As(err, &gone):
		data, _ := json.Marshal(gone.Layer)
		raw := json.RawMessage(data)
		return &jsonrpc2.Error{Code: codeLayerGone, Message: err.Error(), Data: &raw}
	case errors.Is(err, fs.ErrNotExist):
		return jsonrpc2.NewError(codeNotFound, err.Error())
	case errors.As(err, &we):
		return we
	case errors.As(err, &pe):
		data, _ := json.Marshal(pe)
		raw := json.RawMessage(data)
		return &jsonrpc2.Error{Code: codePhaseFailed, Message: err.Error(), Data: &raw}
	case errors.Is(err, api.ErrNotTrusted):
		return jsonrpc2.NewError(codeNotTrusted, err.Error())
	}
	return err
}

// clientError turns a JSON-RPC error back into what the engine would have
// returned in-process.
func clientError(err error) error {
	var we *jsonrpc2.Error
	if !errors.As(err, &we) {
		return err
	}
	switch we.Code {
	case codePhaseFailed:
		var pe runner.PhaseError
		if we.Data != nil && json.Unmarshal(*we.Data, &pe) == nil {
			// The hint names the user's own default, not the daemon's cache.
			pe.CacheDir = runner.DefaultCacheDir()
			return &pe
		}
	case codeLayerGone:
		var id string
		if we.Data != nil && json.Unmarshal(*we.Data, &id) == nil {
			return &layertree.GoneError{Layer: id}
		}
	case codeNotFound:
		return fmt.Errorf("%s: %w", strings.TrimSuffix(we.Message, ": "+fs.ErrNotExist.Error()), fs.ErrNotExist)
	case codeCancelled:
		return context.Canceled
	}
	return errors.New(we.Message)
}
