package daemon

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/daemon/protocol"
	"github.com/nixlayer/nixlayer/ocichain"
)

// Export has the daemon write the exported layout, as a tar, into a pipe
// made here (its write end goes with the request, on a connection of its
// own); the archive lands beside the layout in req.Dir and is added to it
// with the caller's rights, so the daemon writes nowhere a user chooses.
func (c *Client) Export(ctx context.Context, req api.ExportRequest, out api.Output) (*api.ExportResult, error) {
	if err := os.MkdirAll(req.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	archive, err := os.CreateTemp(req.Dir, ".nixlayer-export-*.tar")
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	defer os.Remove(archive.Name())
	defer archive.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	sc, err := Dial(ctx, c.socket)
	if err != nil {
		w.Close()
		return nil, err
	}
	defer sc.Close()
	received := make(chan error, 1)
	go func() {
		_, err := io.Copy(archive, r)
		received <- err
	}()
	sc.fc.SendFiles(w)
	var res api.ExportResult
	err = sc.call(ctx, protocol.MethodExport, api.ExportRequest{DrvPath: req.DrvPath, At: req.At, Ref: req.Ref, SecretKey: req.SecretKey}, out, &res)
	// The daemon has closed its end; with ours closed too the copy ends.
	w.Close()
	if err != nil {
		r.Close()
		<-received
		return nil, err
	}
	if err := <-received; err != nil {
		return nil, fmt.Errorf("receiving the exported layout: %w", err)
	}
	if err := archive.Close(); err != nil {
		return nil, err
	}
	if res.ExportResult == nil {
		return nil, fmt.Errorf("the nixlayer daemon's answer to %s has no result", protocol.MethodExport)
	}
	if err := ocichain.CopyFromLayoutTar(ctx, archive.Name(), req.Dir, res.Ref); err != nil {
		return nil, err
	}
	res.Dir = req.Dir
	return &res, nil
}
