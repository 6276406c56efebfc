package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/nixlayer/nixlayer/cmd/nixlayer/internal/render"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/hook"
	"github.com/nixlayer/nixlayer/internal/e2etest"
	"github.com/nixlayer/nixlayer/internal/fault"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/nixstore/storetree"
)

var nixlayerBin string

func TestMain(m *testing.M) { e2etest.Main(m, &nixlayerBin) }

// TestScripts runs the CLI's end-to-end scenarios, testdata/script/*.txtar:
// the real nixlayer binary (on PATH) against real Nix, each script in its
// own directory with its own cache ($NIXLAYER_CACHE). The commands the
// scripts use besides testscript's own are scriptCmds; their doc comments
// are the reference.
func TestScripts(t *testing.T) {
	e2etest.Require(t)
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		Setup:               setupScript,
		Cmds:                scriptCmds,
		RequireExplicitExec: true,
	})
}

// faultsHit is the kill points a script reached (see kill-at).
type faultsHit struct{}

// setupScript gives a script nixlayer on PATH, the environment the hook
// and CLI would see (the test's own, with HOME and TMPDIR as usual), a
// cache, the fixtures as ./testdata and a fresh salt in ./salt.nix (import
// it as the fixtures' salt argument for output paths no other run built).
func setupScript(env *testscript.Env) error {
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "WORK", "PATH", "TMPDIR":
		default:
			env.Vars = append(env.Vars, kv)
		}
	}
	salt := e2etest.Salt()
	env.Setenv("PATH", filepath.Dir(nixlayerBin)+":"+os.Getenv("PATH"))
	env.Setenv("NIXLAYER_CACHE", filepath.Join(env.WorkDir, "cache"))
	env.Setenv("NIXLAYER_BIN", nixlayerBin)
	env.Setenv("TESTDATA", e2etest.Testdata())
	env.Setenv("SALT", salt)
	env.Setenv("STORE", nixstore.StoreDir())
	env.Values[faultsHit{}] = map[string]bool{}
	env.Values[scriptRegistry{}] = &scriptRegistry{}
	env.Values[scriptDaemon{}] = &scriptDaemon{}
	if err := os.Symlink(e2etest.Testdata(), filepath.Join(env.WorkDir, "testdata")); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(env.WorkDir, "salt.nix"), []byte(strconv.Quote(salt)+"\n"), 0o644)
}

var scriptCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// Builds, their results and the cache (this file).
	"nix-check":      cmdNixCheck,
	"forget":         cmdForget,
	"same-as-nix":    cmdSameAsNix,
	"nar-equal":      cmdNAREqual,
	"out":            cmdOut,
	"in-store":       cmdInStore,
	"event":          cmdEvent,
	"ran":            cmdRan,
	"ran-from":       cmdRanFrom,
	"state":          cmdState,
	"json":           cmdJSON,
	"layers":         cmdLayers,
	"kill-at":        cmdKillAt,
	"all-faults-hit": cmdAllFaultsHit,
	"signal-when":    cmdSignalWhen,
	"paused":         cmdPaused,
	"let-go":         cmdLetGo,
	"wait-settled":   cmdWaitSettled,
	"edit":           cmdEdit,
	"expand":         cmdExpand,
	"lines":          cmdLines,
	"hook-wrappers":  cmdHookWrappers,
	"localtime":      cmdLocalTime,
	"count-files":    cmdCountFiles,
	"nixlayer-with":  cmdNixlayerWith,
	"wait-gone":      cmdWaitGone,
	"mount-tmpfs":    cmdMountTmpfs,
	"pairable-salt":  cmdPairableSalt,
	"wait-file":      cmdWaitFile,
	// A real registry (script_registry_test.go).
	"registry":    cmdRegistry,
	"key":         cmdKey,
	"hang-server": cmdHangServer,
	"free-addr":   cmdFreeAddr,
	// The daemon and its users (script_daemon_test.go).
	"daemon":     cmdStartDaemon,
	"as":         cmdAs,
	"tmux-wait":  cmdTmuxWait,
	"owned-by":   cmdOwnedBy,
	"has-prefix": cmdHasPrefix,
	"raw":        cmdRaw,
}

// nixArgs turns nixlayer's package arguments (-f FILE, -A, --arg…) into
// nix-build's (FILE positional).
func nixArgs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == "-f" || args[i] == "--file" {
			i++
			out = append(out, args[i])
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// scriptCommand is a command run in the script's directory with its
// environment, found on its PATH.
func scriptCommand(ts *testscript.TestScript, name string, args ...string) *exec.Cmd {
	if !strings.Contains(name, "/") {
		for _, dir := range filepath.SplitList(ts.Getenv("PATH")) {
			if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && fi.Mode()&0o111 != 0 {
				name = filepath.Join(dir, name)
				break
			}
		}
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = ts.MkAbs(".")
	cmd.Env = scriptEnv(ts)
	return cmd
}

func runIn(ts *testscript.TestScript, name string, args ...string) (string, error) {
	cmd := scriptCommand(ts, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// scriptEnv is the script's environment for a process a command starts.
func scriptEnv(ts *testscript.TestScript) []string {
	env := os.Environ()
	for _, k := range []string{"PATH", "HOME", "NIXLAYER_CACHE", "NIXLAYER_BACKGROUND_LEARN", "NIXLAYER_STORAGE_DRIVER", "DOCKER_CONFIG", "TMPDIR"} {
		env = append(env, k+"="+ts.Getenv(k))
	}
	return env
}

// nix-check PKGARGS: Nix builds the package itself and compares with the
// registered output (nix-build --check fails on any difference).
func cmdNixCheck(ts *testscript.TestScript, neg bool, args []string) {
	_, err := runIn(ts, "nix-build", append([]string{"--no-out-link", "--check", "--option", "build-hook", ""}, nixArgs(args)...)...)
	if neg {
		if err == nil {
			ts.Fatalf("nix-build --check succeeded")
		}
		return
	}
	ts.Check(err)
}

// forget PATH...: deletes registered outputs from the store (and the
// ./result links rooting them), so that building their derivation again
// builds instead of giving them back as nix-build would. (Run with the
// test's own environment: Nix counts a path in a process's environment as
// a root.)
func cmdForget(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: forget PATH...")
	}
	links, _ := filepath.Glob(ts.MkAbs("result*"))
	for _, l := range links {
		ts.Check(os.Remove(l))
	}
	cmd := exec.Command("nix-store", append([]string{"--delete"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		ts.Fatalf("nix-store --delete: %v\n%s", err, out)
	}
}

// same-as-nix PATH PKGARGS: a layered output equals Nix's build of the
// package: registered in the store, Nix rebuilds it with --check; kept in
// the cache, it is compared by NAR hash with nix-build's output.
func cmdSameAsNix(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: same-as-nix PATH PKGARGS")
	}
	out := args[0]
	if isStorePath(out) {
		cmdNixCheck(ts, false, args[1:])
		return
	}
	built, err := runIn(ts, "nix-build", append([]string{"--no-out-link"}, nixArgs(args[1:])...)...)
	ts.Check(err)
	want := e2etest.Lines(built)[0]
	if got, exp := narHashOf(ts, out), narHashOf(ts, want); got != exp {
		ts.Fatalf("layered output %s has NAR hash %s, nix-build's %s has %s", out, got, want, exp)
	}
}

// nar-equal A B: two trees have the same NAR hash.
func cmdNAREqual(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: nar-equal A B")
	}
	a, b := narHashOf(ts, ts.MkAbs(args[0])), narHashOf(ts, ts.MkAbs(args[1]))
	if (a == b) == neg {
		ts.Fatalf("NAR hashes: %s %s, %s %s", args[0], a, args[1], b)
	}
}

func narHashOf(ts *testscript.TestScript, path string) string {
	sum, _, err := storetree.NARHash(path)
	ts.Check(err)
	return nixstore.FormatHash(sum)
}

func isStorePath(p string) bool { return strings.HasPrefix(p, nixstore.StoreDir()+"/") }

// out VAR [SUFFIX]: sets VAR to the first line of the last command's
// stdout (ending in SUFFIX, if given): the output path a build printed.
func cmdOut(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: out VAR [SUFFIX]")
	}
	for _, l := range e2etest.Lines(ts.ReadFile("stdout")) {
		if len(args) == 1 || strings.HasSuffix(l, args[1]) {
			ts.Setenv(args[0], l)
			return
		}
	}
	ts.Fatalf("no output line in stdout")
}

// in-store [PATH...]: the paths (without arguments: every line of the
// last command's stdout) are in the Nix store (with !: none is).
func cmdInStore(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 {
		args = e2etest.Lines(ts.ReadFile("stdout"))
	}
	if len(args) == 0 {
		ts.Fatalf("in-store: no paths")
	}
	for _, p := range args {
		if isStorePath(p) == neg {
			ts.Fatalf("%s: in the store %v, want %v", p, !neg, neg)
		}
	}
}

// scriptEvents decodes the progress events (--progress=json lines) in the
// last command's stderr.
func scriptEvents(ts *testscript.TestScript) []map[string]any {
	var evs []map[string]any
	for _, l := range strings.Split(ts.ReadFile("stderr"), "\n") {
		var ev map[string]any
		if strings.HasPrefix(l, "{") && json.Unmarshal([]byte(l), &ev) == nil && ev["kind"] != nil {
			evs = append(evs, ev)
		}
	}
	return evs
}

// event KIND [FIELD=VALUE | FIELD~=SUBSTRING]...: the last command's
// stderr holds a progress event of that kind with those fields (with !:
// none). For a verdict, every event's message must also be short.
func cmdEvent(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 {
		ts.Fatalf("usage: event KIND [FIELD=VALUE|FIELD~=SUB]...")
	}
	evs := scriptEvents(ts)
	if args[0] == string(events.EventVerdict) {
		for _, ev := range evs {
			if m, _ := ev["message"].(string); len(m) > 600 && ev["kind"] != string(events.EventFailed) {
				ts.Fatalf("a %s event of %d characters: reasons must stay short:\n%s", ev["kind"], len(m), m)
			}
		}
	}
	match := func(ev map[string]any) bool {
		if ev["kind"] != args[0] {
			return false
		}
		for _, cond := range args[1:] {
			if k, sub, ok := strings.Cut(cond, "~="); ok {
				if !strings.Contains(fmt.Sprint(ev[k]), sub) {
					return false
				}
			} else if k, v, ok := strings.Cut(cond, "="); ok {
				got := ""
				if ev[k] != nil {
					got = fmt.Sprint(ev[k])
				}
				if got != v {
					return false
				}
			} else {
				ts.Fatalf("bad condition %q", cond)
			}
		}
		return true
	}
	found := slices.ContainsFunc(evs, match)
	if found == neg {
		ts.Fatalf("event %s: found %v, want %v", strings.Join(args, " "), found, !neg)
	}
}

// phasesRun lists the phases the last command's events say it ran.
func phasesRun(ts *testscript.TestScript) []string {
	var ran []string
	for _, ev := range scriptEvents(ts) {
		if ev["kind"] == string(events.EventStart) {
			ran = append(ran, ev["phase"].(string))
		}
	}
	return ran
}

// ran PHASE...: the build ran exactly these phases (none without
// arguments).
func cmdRan(ts *testscript.TestScript, neg bool, args []string) {
	ran := phasesRun(ts)
	if slices.Equal(ran, args) == neg {
		ts.Fatalf("ran %v, want %v", ran, args)
	}
}

// ran-from PHASE: the first phase the build ran.
func cmdRanFrom(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: ran-from PHASE")
	}
	if ran := phasesRun(ts); len(ran) == 0 || ran[0] != args[0] {
		ts.Fatalf("ran %v, want from %s", ran, args[0])
	}
}

// state STATE: the result state the build's events announced (verified
// when none says provisional or unverified).
func cmdState(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: state STATE")
	}
	state := string(events.StateVerified)
	evs := scriptEvents(ts)
	for _, k := range []events.EventKind{events.EventProvisional, events.EventUnverified} {
		if i := slices.IndexFunc(evs, func(ev map[string]any) bool { return ev["kind"] == string(k) }); i >= 0 {
			state, _ = evs[i]["state"].(string)
			break
		}
	}
	if state != args[0] {
		ts.Fatalf("result state %s, want %s", state, args[0])
	}
}

var jqVar = regexp.MustCompile(`\$([A-Za-z_][A-Za-z0-9_]*)`)

// json [-set VAR] [-in FILE] FILTER: jq's FILTER over the last command's
// stdout (or FILE) must give true; with -set, VAR is set to its raw
// result. $NAME in the filter is the script's variable NAME.
func cmdJSON(ts *testscript.TestScript, neg bool, args []string) {
	set, input := "", ts.ReadFile("stdout")
	for len(args) > 1 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-set":
			set = args[1]
		case "-in":
			input = ts.ReadFile(args[1])
		default:
			ts.Fatalf("json: unknown flag %s", args[0])
		}
		args = args[2:]
	}
	if len(args) != 1 {
		ts.Fatalf("usage: json [-set VAR] [-in FILE] FILTER")
	}
	jqArgs := []string{"-r"}
	for _, m := range jqVar.FindAllStringSubmatch(args[0], -1) {
		if !slices.Contains(jqArgs, m[1]) {
			jqArgs = append(jqArgs, "--arg", m[1], ts.Getenv(m[1]))
		}
	}
	cmd := exec.Command("jq", append(jqArgs, args[0])...)
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.CombinedOutput()
	if err != nil {
		ts.Fatalf("jq %s: %v\n%s", args[0], err, out)
	}
	got := strings.TrimSpace(string(out))
	if set != "" {
		ts.Setenv(set, got)
		return
	}
	if (got == "true") == neg {
		ts.Fatalf("json %s gives %s", args[0], got)
	}
}

// layers [-cache DIR] STATUS [PHASE] COUNT: the cache holds COUNT layers
// with that status (of that phase), read directly, without the repairs
// nixlayer makes when it opens the cache.
func cmdLayers(ts *testscript.TestScript, neg bool, args []string) {
	cache := ts.Getenv("NIXLAYER_CACHE")
	if len(args) > 2 && args[0] == "-cache" {
		cache, args = ts.MkAbs(args[1]), args[2:]
	}
	if neg || len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: layers [-cache DIR] STATUS [PHASE] COUNT")
	}
	want, err := strconv.Atoi(args[len(args)-1])
	ts.Check(err)
	st, err := layers.Open(cache)
	ts.Check(err)
	all, err := st.List()
	st.Close()
	ts.Check(err)
	n := 0
	for _, l := range all {
		if string(l.Meta.Status) == args[0] && (len(args) == 2 || l.Meta.Phase == args[1]) {
			n++
			ts.Logf("%s layer %s (%s %s)", l.Meta.Status, l.ID, l.Meta.Phase, l.Meta.Note)
		}
	}
	if n != want {
		ts.Fatalf("%d %s layers %v, want %d", n, args[0], args[1:len(args)-1], want)
	}
}

// kill-at POINT nixlayer ARGS...: runs nixlayer with the fault point POINT
// armed (NIXLAYER_FAULT), which must kill it with SIGKILL there.
func cmdKillAt(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: kill-at POINT COMMAND ARGS...")
	}
	cmd := scriptCommand(ts, args[1], args[2:]...)
	cmd.Env = append(cmd.Env, "NIXLAYER_FAULT="+args[0])
	out, err := cmd.CombinedOutput()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if err == nil || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		ts.Fatalf("fault %s was not hit (err %v):\n%s", args[0], err, out)
	}
	ts.Value(faultsHit{}).(map[string]bool)[args[0]] = true
}

// all-faults-hit [pull]: the script's kill-at reached every kill point of
// a local build (of a pull).
func cmdAllFaultsHit(ts *testscript.TestScript, neg bool, args []string) {
	points := fault.Points
	if len(args) == 1 && args[0] == "pull" {
		points = fault.PullPoints
	}
	hit := ts.Value(faultsHit{}).(map[string]bool)
	for _, p := range points {
		if !hit[p] {
			ts.Fatalf("kill point %s was not tested", p)
		}
	}
}

// signal-when SIGNAL REGEXP COMMAND ARGS...: runs the command (which may
// be `as USER …`), sends it SIGNAL (KILL or INT) after a line of its
// stderr matches (half a second after, for INT), and expects it to fail.
// Its stderr is the command's stderr.
func cmdSignalWhen(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 {
		ts.Fatalf("usage: signal-when SIGNAL REGEXP COMMAND ARGS...")
	}
	sig := map[string]syscall.Signal{"KILL": syscall.SIGKILL, "INT": syscall.SIGINT}[args[0]]
	if sig == 0 {
		ts.Fatalf("unknown signal %s", args[0])
	}
	re := regexp.MustCompile(args[1])
	var cmd *exec.Cmd
	if args[2] == "as" {
		cmd = userCommand(ts, args[3:])
	} else {
		cmd = scriptCommand(ts, args[2], args[3:]...)
	}
	stderr, err := cmd.StderrPipe()
	ts.Check(err)
	ts.Check(cmd.Start())
	var seen strings.Builder
	sc := bufio.NewScanner(stderr)
	timer := time.AfterFunc(3*time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	matched := false
	for !matched && sc.Scan() {
		seen.WriteString(sc.Text() + "\n")
		matched = re.MatchString(sc.Text())
	}
	if !matched {
		cmd.Wait()
		ts.Fatalf("no line matched %s:\n%s", args[1], seen.String())
	}
	if sig == syscall.SIGINT {
		time.Sleep(500 * time.Millisecond)
	}
	cmd.Process.Signal(sig)
	for sc.Scan() {
		seen.WriteString(sc.Text() + "\n")
	}
	if err := cmd.Wait(); err == nil {
		ts.Fatalf("the command succeeded after SIG%s", args[0])
	}
	fmt.Fprint(ts.Stderr(), seen.String())
}

// paused DIR/ENTRY [TIMEOUT]: waits (default 10m) until a process started
// with NIXLAYER_PAUSE listing ENTRY (a pause point, or point:detail, as
// internal/fault says) and NIXLAYER_PAUSE_DIR=DIR reached that point,
// where it holds until let-go. Scripts force the order of concurrent
// builds with it, never with sleeps.
func cmdPaused(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: paused DIR/ENTRY [TIMEOUT]")
	}
	limit := 10 * time.Minute
	if len(args) == 2 {
		d, err := time.ParseDuration(args[1])
		ts.Check(err)
		limit = d
	}
	reached := ts.MkAbs(args[0] + ".reached")
	for deadline := time.Now().Add(limit); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(reached); err == nil {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("no process paused at %s within %s", args[0], limit)
		}
	}
}

// let-go DIR/ENTRY: a process paused at ENTRY (see paused) goes on; one
// that reaches it later passes without holding.
func cmdLetGo(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: let-go DIR/ENTRY")
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[0]+".go"), nil, 0o644))
}

// wait-settled [TIMEOUT]: waits (default 5m) until `nixlayer status --json`
// lists no pending result and no background work; its stdout is that
// status.
func cmdWaitSettled(ts *testscript.TestScript, neg bool, args []string) {
	limit := 5 * time.Minute
	if len(args) == 1 {
		d, err := time.ParseDuration(args[0])
		ts.Check(err)
		limit = d
	}
	deadline := time.Now().Add(limit)
	for {
		out, err := runIn(ts, nixlayerBin, "status", "--json")
		ts.Check(err)
		var st render.StatusReport
		ts.Check(json.Unmarshal([]byte(out), &st))
		pending := len(st.Background) > 0
		for _, r := range st.Results {
			pending = pending || r.State.Pending()
		}
		if !pending {
			fmt.Fprint(ts.Stdout(), out)
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(ts.Getenv("NIXLAYER_CACHE"), "learn.log"))
			ts.Fatalf("background work not done after %s:\n%s\nlearn.log:\n%s", limit, out, log)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// edit FILE OLD NEW: replaces the one occurrence of OLD in FILE, as a user
// editing the package would.
func cmdEdit(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: edit FILE OLD NEW")
	}
	file := ts.MkAbs(args[0])
	data := ts.ReadFile(args[0])
	if n := strings.Count(data, args[1]); n != 1 {
		ts.Fatalf("%s holds %q %d times, want once", args[0], args[1], n)
	}
	ts.Check(os.WriteFile(file, []byte(strings.Replace(data, args[1], args[2], 1)), 0o644))
}

// expand SRC DST: copies SRC to DST (making its directory) with the
// script's $VARIABLES expanded.
func cmdExpand(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: expand SRC DST")
	}
	data := os.Expand(ts.ReadFile(args[0]), ts.Getenv)
	dst := ts.MkAbs(args[1])
	ts.Check(os.MkdirAll(filepath.Dir(dst), 0o755))
	ts.Check(os.WriteFile(dst, []byte(data), 0o644))
}

// lines [stdout|stderr] [-match REGEXP] N: the last command's output has N
// non-empty lines (matching REGEXP).
func cmdLines(ts *testscript.TestScript, neg bool, args []string) {
	stream := "stdout"
	if len(args) > 0 && (args[0] == "stdout" || args[0] == "stderr") {
		stream, args = args[0], args[1:]
	}
	var re *regexp.Regexp
	if len(args) == 3 && args[0] == "-match" {
		re, args = regexp.MustCompile(args[1]), args[2:]
	}
	if len(args) != 1 {
		ts.Fatalf("usage: lines [stdout|stderr] [-match REGEXP] N")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	n := 0
	for _, l := range e2etest.Lines(ts.ReadFile(stream)) {
		if re == nil || re.MatchString(l) {
			n++
		}
	}
	if (n == want) == neg {
		ts.Fatalf("%s has %d lines, want %d", stream, n, want)
	}
}

// hook-wrappers DIR: writes the pre-/post-build-hook wrappers that record
// Nix's own builds (as `nixlayer setup` would) into DIR.
func cmdHookWrappers(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: hook-wrappers DIR")
	}
	dir := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(dir, 0o755))
	ts.Check(hook.Setup{Binary: nixlayerBin, HooksDir: dir, WithRecord: true}.WriteWrappers())
}

// localtime VAR TIME: VAR is the RFC 3339 TIME as nixlayer prints times
// (local, to the second).
func cmdLocalTime(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: localtime VAR TIME")
	}
	tm, err := time.Parse(time.RFC3339Nano, args[1])
	ts.Check(err)
	ts.Setenv(args[0], tm.Local().Format("2006-01-02 15:04:05"))
}

// count-files GLOB N: N files match GLOB.
func cmdCountFiles(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: count-files GLOB N")
	}
	m, err := filepath.Glob(ts.MkAbs(args[0]))
	ts.Check(err)
	if strconv.Itoa(len(m)) != args[1] {
		ts.Fatalf("%d files match %s, want %s", len(m), args[0], args[1])
	}
}

// nixlayer-with BIN FILE LINE: compiles nixlayer into BIN with LINE added
// at the end of the repository file FILE, as a later version of nixlayer.
func cmdNixlayerWith(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: nixlayer-with BIN FILE LINE")
	}
	src, err := os.ReadFile(filepath.Join(e2etest.RepoRoot(), args[1]))
	ts.Check(err)
	dir := ts.MkAbs(filepath.Dir(args[0]))
	ts.Check(os.MkdirAll(dir, 0o755))
	bin, err := e2etest.BuildBinaryWith(dir, map[string]string{args[1]: string(src) + "\n" + args[2] + "\n"})
	ts.Check(err)
	ts.Check(os.Rename(bin, ts.MkAbs(args[0])))
}

// wait-gone TIMEOUT ARGV...: within TIMEOUT no process runs that command
// line (arguments as given).
func cmdWaitGone(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: wait-gone TIMEOUT ARGV...")
	}
	limit, err := time.ParseDuration(args[0])
	ts.Check(err)
	want := strings.Join(args[1:], "\x00")
	for deadline := time.Now().Add(limit); ; time.Sleep(200 * time.Millisecond) {
		running := false
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			if _, err := strconv.Atoi(e.Name()); err != nil {
				continue
			}
			b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			running = running || err == nil && strings.Contains(string(b), want)
		}
		if !running {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s still runs after %s", strings.Join(args[1:], " "), limit)
		}
	}
}

// mount-tmpfs DIR [OPTIONS]: mounts a tmpfs (OPTIONS: ro, size=…,
// remount) on DIR, unmounted at the script's end.
func cmdMountTmpfs(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: mount-tmpfs DIR [ro|size=N|remount,size=N]")
	}
	dir := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(dir, 0o755))
	var flags uintptr
	var opts []string
	if len(args) == 2 {
		for _, o := range strings.Split(args[1], ",") {
			switch o {
			case "ro":
				flags |= syscall.MS_RDONLY
			case "remount":
				flags |= syscall.MS_REMOUNT
			default:
				opts = append(opts, o)
			}
		}
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", flags, strings.Join(opts, ",")); err != nil {
		ts.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	if flags&syscall.MS_REMOUNT == 0 {
		ts.Defer(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	}
}
