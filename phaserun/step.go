package phaserun

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

// Step is one sandboxed process of a build.
type Step struct {
	Root    string // sandbox root (build/, tmp/, store/)
	Etc     string // where the generated /etc files go
	Mode    string // probe, phase, whole or shell
	Phase   string
	Last    bool
	Restore string // shell state script for phase and shell modes
	Log     io.Writer
	// Interactive steps (shells) are attached to the user's terminal.
	Stdin       io.Reader
	Interactive bool
	Terminal    bool // stdin is the shell's own terminal (sandbox.Spec.Terminal)
	// Scratch: a learner's phase (the engine's learning), which tests may hold.
	Scratch bool
}

type StepResult struct {
	Exit   int
	Dumps  []byte // shell state captures (fd 4)
	Phases []byte // phase list from a probe (fd 5)
}

// RunStep runs one step in the sandbox and collects what it reports.
func (pr *Runner) RunStep(ctx context.Context, j *Job, s Step) (*StepResult, error) {
	var args []string
	if s.Mode == "whole" {
		args = append([]string{j.Drv.Builder}, j.Drv.Args...)
	} else {
		// $0 is the builder script, as when Nix runs `bash -e script`.
		script := j.Drv.Args[len(j.Drv.Args)-1]
		flags := j.ShellFlags
		if s.Mode == "shell" {
			flags = nil // an interactive shell does not stop at the first error
		}
		args = append([]string{j.Drv.Builder}, flags...)
		args = append(args, "-c", driverScript)
		args = append(args, driverArgs(script, s.Mode, s.Phase, s.Last)...)
	}
	args = append([]string{j.Drv.Builder, "-c", argv0Wrapper, filepath.Base(j.Drv.Builder)}, args...)
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
		Root:        s.Root,
		StoreDir:    nixstore.StoreDir(),
		Inputs:      j.Closure,
		Binds:       j.Binds,
		Env:         j.Env,
		Args:        args,
		Network:     j.Drv.IsFixedOutput(),
		Stdout:      s.Log,
		Stderr:      s.Log,
		Stdin:       s.Stdin,
		ExtraFiles:  []*os.File{restoreR, dumpW, phasesW},
		Interactive: s.Interactive,
		Terminal:    s.Terminal,
	}
	cmd, err := sandbox.Command(ctx, spec, s.Etc)
	if err != nil {
		return nil, err
	}
	pr.Log.Debug("sandbox", zap.String("mode", s.Mode), zap.String("phase", s.Phase), zap.Strings("args", cmd.Args))
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
	if s.Mode == "phase" {
		fault.Point(fault.InPhase)
	}
	if s.Scratch {
		fault.Hold(fault.InLearnPhase, ctx.Done())
	}
	var wg sync.WaitGroup
	res := &StepResult{}
	wg.Add(3)
	go func() { defer wg.Done(); io.WriteString(restoreW, s.Restore); restoreW.Close() }()
	var dumpErr, phasesErr error
	go func() { defer wg.Done(); res.Dumps, dumpErr = readReport(dumpR, "shell state captures"); dumpR.Close() }()
	go func() { defer wg.Done(); res.Phases, phasesErr = readReport(phasesR, "phase list"); phasesR.Close() }()
	if stopped != nil {
		// Out of the paused set once it exits, before it is reaped: its
		// process ID is then free for another process, never to be stopped.
		proc.WaitExit(cmd.Process.Pid)
		stopped()
	}
	err = cmd.Wait()
	wg.Wait()
	cleanErr := sandbox.CleanMountpoints(s.Root, j.Closure)
	if reportErr := errors.Join(dumpErr, phasesErr); reportErr != nil {
		return nil, errors.Join(reportErr, cleanErr)
	}
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		res.Exit = exitErr.ExitCode()
		if res.Exit < 0 {
			res.Exit = 128 + 9
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
func writeAttrsFiles(j *Job, root string) error {
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
	for _, f := range nixbuild.PassAsFiles(j.Drv) {
		if err := writeFileIn(buildDir, f.Name, f.Data, 0o644); err != nil {
			return fmt.Errorf("writing passAsFile attribute %s: %w", f.Attr, err)
		}
	}
	attrsJSON, attrsSh, err := nixbuild.AttrsFiles(j.Drv)
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
