package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/foreground"
	"github.com/nixlayer/nixlayer/internal/fault"
	"github.com/nixlayer/nixlayer/internal/proc"
	"github.com/nixlayer/nixlayer/internal/treefile"
	"github.com/nixlayer/nixlayer/nixbuild"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/sandbox"
)

// step is one sandboxed process of a build.
type step struct {
	root    string // sandbox root (build/, tmp/, store/)
	etc     string // where the generated /etc files go
	mode    string // probe, phase, whole or shell
	phase   string
	last    bool
	restore string // shell state script for phase and shell modes
	log     io.Writer
	// Interactive steps (shells) are attached to the user's terminal.
	stdin       io.Reader
	interactive bool
	terminal    bool // stdin is the shell's own terminal (sandbox.Spec.Terminal)
	// scratch: a learner's phase (learn.go), which may be held for tests.
	scratch bool
}

type stepResult struct {
	exit   int
	dumps  []byte // shell state captures (fd 4)
	phases []byte // phase list from a probe (fd 5)
}

// runStep runs one step in the sandbox and collects what it reports.
func (e *Engine) runStep(ctx context.Context, j *job, s step) (*stepResult, error) {
	var args []string
	if s.mode == "whole" {
		args = append([]string{j.drv.Builder}, j.drv.Args...)
	} else {
		// $0 is the builder script, as when Nix runs `bash -e script`.
		script := j.drv.Args[len(j.drv.Args)-1]
		flags := j.shellFlags
		if s.mode == "shell" {
			flags = nil // an interactive shell does not stop at the first error
		}
		args = append([]string{j.drv.Builder}, flags...)
		args = append(args, "-c", driverScript)
		args = append(args, driverArgs(script, s.mode, s.phase, s.last)...)
	}
	args = append([]string{j.drv.Builder, "-c", argv0Wrapper, filepath.Base(j.drv.Builder)}, args...)
	restoreR, restoreW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	dumpR, dumpW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	phasesR, phasesW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	spec := sandbox.Spec{
		Root:        s.root,
		StoreDir:    nixstore.StoreDir(),
		Inputs:      j.closure,
		Binds:       j.binds,
		Env:         j.env,
		Args:        args,
		Network:     j.drv.IsFixedOutput(),
		Stdout:      s.log,
		Stderr:      s.log,
		Stdin:       s.stdin,
		ExtraFiles:  []*os.File{restoreR, dumpW, phasesW},
		Interactive: s.interactive,
		Terminal:    s.terminal,
	}
	cmd, err := sandbox.Command(ctx, spec, s.etc)
	if err != nil {
		return nil, err
	}
	e.log.Debug("sandbox", zap.String("mode", s.mode), zap.String("phase", s.phase), zap.Strings("args", cmd.Args))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start sandbox: %w", err)
	}
	var stopped func()
	if bg := foreground.WorkOf(ctx); bg != nil {
		stopped = bg.Running(cmd.Process.Pid)
	}
	restoreR.Close()
	dumpW.Close()
	phasesW.Close()
	if s.mode == "phase" {
		fault.Point(fault.InPhase)
	}
	if s.scratch {
		fault.Hold(fault.InLearnPhase, ctx.Done())
	}
	var wg sync.WaitGroup
	res := &stepResult{}
	wg.Add(3)
	go func() { defer wg.Done(); io.WriteString(restoreW, s.restore); restoreW.Close() }()
	var dumpErr, phasesErr error
	go func() { defer wg.Done(); res.dumps, dumpErr = readReport(dumpR, "shell state captures"); dumpR.Close() }()
	go func() { defer wg.Done(); res.phases, phasesErr = readReport(phasesR, "phase list"); phasesR.Close() }()
	if stopped != nil {
		// Out of the paused set once it exits, before it is reaped: its
		// process ID is then free for another process, never to be stopped.
		proc.WaitExit(cmd.Process.Pid)
		stopped()
	}
	err = cmd.Wait()
	wg.Wait()
	cleanErr := sandbox.CleanMountpoints(s.root, j.closure)
	if reportErr := errors.Join(dumpErr, phasesErr); reportErr != nil {
		return nil, errors.Join(reportErr, cleanErr)
	}
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		res.exit = exitErr.ExitCode()
		if res.exit < 0 {
			res.exit = 128 + 9
		}
	case err != nil:
		return nil, fmt.Errorf("run sandbox: %w", err)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return res, cleanErr
}

// maxStepReport bounds what a step reports on its pipes (fd 4 and 5): the
// builder's bash inherits them, so phase code could otherwise grow root's
// memory without limit.
const maxStepReport = 64 << 20

// readReport reads one report pipe of a step, refusing more than
// maxStepReport bytes (the pipe is then closed: the writer gets EPIPE
// instead of blocking). Other read errors leave what was read, as before.
func readReport(r io.Reader, what string) ([]byte, error) {
	data, _ := io.ReadAll(io.LimitReader(r, maxStepReport+1))
	if len(data) > maxStepReport {
		return nil, fmt.Errorf("the build wrote more than %d MiB of %s to nixlayer's pipe; refused", maxStepReport>>20, what)
	}
	return data, nil
}

// writeAttrsFiles writes the passAsFile files and, for a structured-attrs
// derivation, .attrs.json and .attrs.sh into the build directory of the
// sandbox root root, as Nix does before it starts the builder. The build
// directory is the derivation's: its files are written through an os.Root
// and replaced, never followed (writeFileIn).
func writeAttrsFiles(j *job, root string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("prepare sandbox root: %w", err)
	}
	top, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("prepare sandbox root: %w", err)
	}
	defer top.Close()
	if err := top.MkdirAll("build", 0o755); err != nil {
		return fmt.Errorf("prepare build directory: %w", err)
	}
	buildDir, err := top.OpenRoot("build")
	if err != nil {
		return fmt.Errorf("prepare build directory: %w", err)
	}
	defer buildDir.Close()
	for _, f := range nixbuild.PassAsFiles(j.drv) {
		if err := writeFileIn(buildDir, f.Name, f.Data, 0o644); err != nil {
			return fmt.Errorf("writing passAsFile attribute %s: %w", f.Attr, err)
		}
	}
	attrsJSON, attrsSh, err := nixbuild.AttrsFiles(j.drv)
	if attrsJSON == nil || err != nil {
		return err
	}
	if err := writeFileIn(buildDir, ".attrs.json", attrsJSON, 0o644); err != nil {
		return err
	}
	return writeFileIn(buildDir, ".attrs.sh", attrsSh, 0o644)
}

// writeFileIn makes name in dir a regular file holding data. One that
// already does is left alone, so a layer does not copy it up for nothing.
// Anything else the build left there (a symlink, a FIFO, a directory, a
// hard link) is replaced, never written through: a new file is written
// beside it and renamed over it, all inside dir (an os.Root).
func writeFileIn(dir *os.Root, name string, data []byte, mode os.FileMode) error {
	if holdsExactly(dir, name, data) {
		return nil
	}
	if fi, err := dir.Lstat(name); err == nil && fi.IsDir() {
		if err := dir.RemoveAll(name); err != nil {
			return fmt.Errorf("replacing %s: %w", name, err)
		}
	}
	tmp := name + ".nixlayer-new"
	if err := dir.RemoveAll(tmp); err != nil {
		return fmt.Errorf("replacing %s: %w", name, err)
	}
	f, err := dir.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode)
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = dir.Rename(tmp, name)
	}
	if err != nil {
		dir.Remove(tmp)
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

// holdsExactly reports whether name in dir is a regular file (opened
// without following a symlink or blocking on a FIFO) holding data.
func holdsExactly(dir *os.Root, name string, data []byte) bool {
	f, fi, err := treefile.Open(dir, name)
	if err != nil {
		return false
	}
	defer f.Close()
	if fi.Size() != int64(len(data)) {
		return false
	}
	old, err := io.ReadAll(io.LimitReader(f, int64(len(data))+1))
	return err == nil && bytes.Equal(old, data)
}
