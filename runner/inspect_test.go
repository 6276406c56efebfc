package runner_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixlayer/nixlayer/cacheconfig"
	"github.com/nixlayer/nixlayer/gc"
	"github.com/nixlayer/nixlayer/inspect"
	"github.com/nixlayer/nixlayer/internal/e2etest"
	"github.com/nixlayer/nixlayer/layercache"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/layertree"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/runner"
)

// cli runs nixlayer against one cache.
type cli struct {
	t     *testing.T
	cache string
	dir   string
}

func newCLI(t *testing.T) *cli {
	e2etest.Require(t)
	return &cli{t: t, cache: t.TempDir(), dir: t.TempDir()}
}

func (c *cli) run(args ...string) e2etest.Result {
	c.t.Helper()
	return e2etest.Run(c.dir, nil, nixlayerBin, append([]string{args[0], "--cache", c.cache}, args[1:]...)...)
}

func (c *cli) must(args ...string) string {
	c.t.Helper()
	r := c.run(args...)
	if r.Err != nil {
		c.t.Fatalf("nixlayer %s: %v\n%s%s", strings.Join(args, " "), r.Err, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

func (c *cli) mustJSON(v any, args ...string) {
	c.t.Helper()
	out := c.must(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("nixlayer %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// pkg is a testdata package on the command line.
func pkg(attr, salt string, args ...string) []string {
	return append([]string{"-f", e2etest.Testdata(), "-A", attr, "--argstr", "salt", salt}, args...)
}

func smallHello(salt string) []string {
	return pkg("hello", salt, "--arg", "nfiles", "20", "--arg", "funcsPerFile", "4")
}

func (c *cli) build(p []string) string {
	c.t.Helper()
	return strings.TrimSpace(c.must(append([]string{"build", "-Q", "--no-out-link"}, p...)...))
}

func (c *cli) layerCount() int {
	c.t.Helper()
	var rows []inspect.LayerRow
	c.mustJSON(&rows, "ls")
	return len(rows)
}

// tmux is a real terminal: a private tmux server running one command.
type tmux struct {
	t      *testing.T
	socket string
}

func startTmux(t *testing.T, argv ...string) *tmux {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is not installed")
	}
	s := &tmux{t: t, socket: "nixlayer-test-" + e2etest.Salt()}
	var q []string
	for _, a := range argv {
		q = append(q, "'"+strings.ReplaceAll(a, "'", `'\''`)+"'")
	}
	cmd := strings.Join(q, " ") + `; echo "__EXIT__$?"; sleep 600`
	if out, err := exec.Command("tmux", "-L", s.socket, "-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "250", "-y", "50", cmd).CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("tmux", "-L", s.socket, "kill-server").Run() })
	return s
}

func (s *tmux) screen() string {
	out, _ := exec.Command("tmux", "-L", s.socket, "capture-pane", "-p", "-J", "-S", "-", "-t", "t").Output()
	return string(out)
}

// waitFor polls the terminal until re matches and returns the match.
func (s *tmux) waitFor(re string, timeout time.Duration) []string {
	s.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		scr := s.screen()
		if m := rx.FindStringSubmatch(scr); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("terminal never showed %q; screen:\n%s", re, scr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var marks int

// do types a command line and returns what it printed: the text between
// the line and a marker only the output can contain.
func (s *tmux) do(line string) string {
	s.t.Helper()
	marks++
	mark := fmt.Sprintf("M%dK", marks)
	cmd := line + "; printf '<%s>\\n' " + mark
	exec.Command("tmux", "-L", s.socket, "send-keys", "-t", "t", "-l", cmd).Run()
	exec.Command("tmux", "-L", s.socket, "send-keys", "-t", "t", "Enter").Run()
	m := s.waitFor(`(?s)`+regexp.QuoteMeta(cmd)+`\n(.*?)<`+mark+`>`, 30*time.Second)
	return m[1]
}

// TestShellAtBuild: `nixlayer shell --at build` in a real terminal shows
// the builder's state after buildPhase, and its changes are thrown away.
func TestShellAtBuild(t *testing.T) {
	c := newCLI(t)
	p := smallHello(e2etest.Salt())
	out := c.build(p)
	before := c.layerCount()

	sh := startTmux(t, append([]string{nixlayerBin, "shell", "--cache", c.cache, "--at", "build"}, p...)...)
	sh.waitFor(`\[nixlayer buildPhase\] /build/\S*\$`, 60*time.Second)
	if got := sh.do(`echo "OUT=$out"`); !strings.Contains(got, "OUT="+out) {
		t.Errorf("echo $out printed %q, want %s", got, out)
	}
	if got := sh.do(`declare -f installPhase`); !strings.Contains(got, "installPhase ()") || !strings.Contains(got, "runHook postInstall") {
		t.Errorf("declare -f installPhase printed %q", got)
	}
	if got := sh.do(`declare -F runPhase`); !strings.Contains(got, "runPhase") {
		t.Errorf("runPhase is not defined: %q", got)
	}
	pwd := strings.TrimSpace(sh.do(`pwd`))
	if !strings.HasPrefix(pwd, "/build/") {
		t.Errorf("pwd = %q, want the source directory under /build (unpackPhase's cd)", pwd)
	}
	ls := sh.do(`ls`)
	for _, f := range []string{"Makefile", "hello", "main.o"} {
		if !regexp.MustCompile(`(?m)(^|\s)` + regexp.QuoteMeta(f) + `(\s|$)`).MatchString(ls) {
			t.Errorf("ls does not show %s (built by buildPhase):\n%s", f, ls)
		}
	}
	if got := sh.do(`make >/dev/null; echo "rc=$?"`); !strings.Contains(got, "rc=0") {
		t.Errorf("make in the shell: %q", got)
	}
	if got := sh.do(`touch made-in-shell && ls made-in-shell`); !strings.Contains(got, "made-in-shell") {
		t.Fatalf("cannot create a file in the shell: %q", got)
	}
	exec.Command("tmux", "-L", sh.socket, "send-keys", "-t", "t", "exit", "Enter").Run()
	if m := sh.waitFor(`__EXIT__(\d+)`, 30*time.Second); m[1] != "0" {
		t.Fatalf("nixlayer shell exited with %s:\n%s", m[1], sh.screen())
	}

	// The file is gone: the build layer is untouched, no layer is left.
	if n := c.layerCount(); n != before {
		t.Errorf("%d layers after the shell, %d before: the throwaway layer stayed", n, before)
	}
	mnt := filepath.Join(c.dir, "build-layer")
	c.must(append([]string{"mount"}, append(p, "buildPhase", mnt)...)...)
	defer c.run("umount", mnt)
	if _, err := os.Stat(filepath.Join(mnt, pwd, "Makefile")); err != nil {
		t.Errorf("the mounted build layer has no %s/Makefile: %v", pwd, err)
	}
	if _, err := os.Stat(filepath.Join(mnt, pwd, "made-in-shell")); err == nil {
		t.Errorf("the file made in the shell is in the build layer")
	}

	// --keep keeps the changes as a layer that is never a cache hit.
	keep := startTmux(t, append([]string{nixlayerBin, "shell", "--cache", c.cache, "--at", "build", "--keep"}, p...)...)
	keep.waitFor(`\[nixlayer buildPhase\] /build/\S*\$`, 60*time.Second)
	keep.do(`echo kept > kept-file`)
	exec.Command("tmux", "-L", keep.socket, "send-keys", "-t", "t", "exit", "Enter").Run()
	keep.waitFor(`__EXIT__0`, 30*time.Second)
	var rows []inspect.LayerRow
	c.mustJSON(&rows, "ls")
	var kept *inspect.LayerRow
	for i := range rows {
		if rows[i].Status == "kept" {
			kept = &rows[i]
		}
	}
	if kept == nil {
		t.Fatalf("no kept layer after shell --keep: %+v", rows)
	}
	km := filepath.Join(c.dir, "kept")
	c.must(append([]string{"mount"}, append(p, kept.ID[:12], km)...)...)
	defer c.run("umount", km)
	if b, err := os.ReadFile(filepath.Join(km, pwd, "kept-file")); err != nil || string(b) != "kept\n" {
		t.Errorf("kept layer lacks the shell's file: %q %v", b, err)
	}
	var plan planner.Plan
	c.mustJSON(&plan, append([]string{"plan"}, p...)...)
	for _, ph := range plan.Phases {
		if ph.Layer != nil && ph.Layer.ID == kept.ID {
			t.Errorf("the kept shell layer is used as the cached %s", ph.Name)
		}
	}
}

// TestShellAtFailed: the failed build names the command, and that command
// opens the failed installPhase's state.
func TestShellAtFailed(t *testing.T) {
	c := newCLI(t)
	r := c.run(append([]string{"build", "-Q", "--no-out-link"}, pkg("failing", e2etest.Salt())...)...)
	if r.Err == nil {
		t.Fatal("the failing package built")
	}
	m := regexp.MustCompile(`nixlayer (shell --cache \S+ --at failed \S+\.drv)`).FindStringSubmatch(r.Stderr)
	if m == nil {
		t.Fatalf("the error does not tell the user about nixlayer shell --at failed:\n%s", r.Stderr)
	}
	sh := startTmux(t, append([]string{nixlayerBin}, strings.Fields(m[1])...)...)
	sh.waitFor(`\[nixlayer failed installPhase\] /build/failing\$`, 60*time.Second)
	if got := sh.do(`ls`); !strings.Contains(got, "ok.c") || !regexp.MustCompile(`(?m)(^|\s)ok(\s|$)`).MatchString(got) {
		t.Errorf("ls in the failed state does not show the built program ok:\n%s", got)
	}
	// The package's own installPhase is a variable runPhase evaluates.
	if got := sh.do(`echo "$installPhase"`); !strings.Contains(got, "exit 1") {
		t.Errorf("echo $installPhase: %q", got)
	}
	if got := sh.do(`echo "msg=$failMessage"`); !strings.Contains(got, "msg=installPhase failed on purpose") {
		t.Errorf("the derivation's environment is missing: %q", got)
	}
	exec.Command("tmux", "-L", sh.socket, "send-keys", "-t", "t", "exit", "Enter").Run()
	sh.waitFor(`__EXIT__0`, 30*time.Second)
}

// TestMountDiff: diff -r of two mounted phases shows exactly what the
// later phase changed (its own layer diff).
func TestMountDiff(t *testing.T) {
	c := newCLI(t)
	p := smallHello(e2etest.Salt())
	c.build(p)
	a, b := filepath.Join(c.dir, "configure"), filepath.Join(c.dir, "build")
	var ra, rb layertree.MountRecord
	c.mustJSON(&ra, append([]string{"mount"}, append(p, "configure", a)...)...)
	defer c.run("umount", a)
	c.mustJSON(&rb, append([]string{"mount"}, append(p, "buildPhase", b)...)...)
	defer c.run("umount", b)
	if err := os.WriteFile(filepath.Join(a, "x"), nil, 0o644); err == nil {
		t.Error("the mount is writable")
	}

	// What diff -r reports.
	out, err := exec.Command("diff", "-rq", "--no-dereference", a, b).Output()
	if err == nil {
		t.Fatal("diff -r finds no difference between configure and build")
	}
	reported := map[string]bool{}
	for _, line := range e2etest.Lines(string(out)) {
		switch {
		case strings.HasPrefix(line, "Only in "):
			dir, name, _ := strings.Cut(strings.TrimPrefix(line, "Only in "), ": ")
			full := filepath.Join(dir, name)
			filepath.Walk(full, func(p string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() {
					reported[rel(a, b, p)] = true
				}
				return nil
			})
		case strings.HasPrefix(line, "Files "):
			f := strings.Fields(line)
			reported[rel(a, b, f[1])] = true
		default:
			t.Fatalf("unexpected diff line %q", line)
		}
	}
	// What the build layer holds.
	st, err := layers.Open(c.cache)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := st.Diff(rb.Layer)
	if err != nil {
		t.Fatal(err)
	}
	inLayer := map[string]bool{}
	if err := layers.EachTarEntry(rc, func(h *tar.Header, _ io.Reader) error {
		if h.Typeflag != tar.TypeDir {
			inLayer[filepath.Clean(strings.TrimPrefix(h.Name, "./"))] = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	st.Close()
	for f := range reported {
		if !inLayer[f] {
			t.Errorf("diff -r reports %s, which buildPhase did not change", f)
		}
	}
	for f := range inLayer {
		if reported[f] {
			continue
		}
		// Copied up without a content change (e.g. touched): same bytes.
		x, errA := os.ReadFile(filepath.Join(a, f))
		y, errB := os.ReadFile(filepath.Join(b, f))
		if errA != nil || errB != nil || !bytes.Equal(x, y) {
			t.Errorf("buildPhase changed %s, but diff -r does not report it", f)
		}
	}
	if !reported[filepath.Join("build", "hello-1", "hello")] && len(reported) < 2 {
		t.Errorf("diff -r misses the program buildPhase made: %v", keys(reported))
	}
	t.Logf("diff -r: %d files changed by buildPhase, layer holds %d entries", len(reported), len(inLayer))

	// umount by phase name releases the layer.
	c.must(append([]string{"umount"}, append(p, "configure")...)...)
	if _, err := os.Stat(filepath.Join(a, "build")); err == nil {
		t.Error("still mounted after umount")
	}
}

func rel(a, b, p string) string {
	if r, err := filepath.Rel(a, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	r, _ := filepath.Rel(b, p)
	return r
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func du(t *testing.T, dir string) int64 {
	t.Helper()
	// layers.json (the store's index) is rewritten, not freed.
	out, err := exec.Command("du", "-s", "--block-size=1", "--exclude=layers.json", dir).Output()
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestGC: gc keeps the newest chain of each package, never a mounted
// layer, and frees what du sees freed.
func TestGC(t *testing.T) {
	c := newCLI(t)
	old := pkg("custom", e2etest.Salt())
	c.build(old)
	var oldRows []inspect.LayerRow
	c.mustJSON(&oldRows, "ls")
	c.run(append([]string{"build", "-Q", "--no-out-link"}, pkg("failing", e2etest.Salt())...)...)
	time.Sleep(10 * time.Millisecond)
	newer := pkg("custom", e2etest.Salt())
	c.build(newer)
	var all []inspect.LayerRow
	c.mustJSON(&all, "ls")

	// A mount of the old chain's top pins it and the layers under it.
	mnt := filepath.Join(c.dir, "old")
	c.must(append([]string{"mount"}, append(old, "install", mnt)...)...)
	var res gc.Result
	c.mustJSON(&res, "gc")
	if len(res.Removed) == 0 || len(res.InUse) == 0 {
		t.Errorf("with the old chain mounted: removed %d, in use %d; want both > 0", len(res.Removed), len(res.InUse))
	}
	if _, err := os.Stat(filepath.Join(mnt, "build", "built.txt")); err != nil {
		t.Errorf("gc broke a mounted layer: %v", err)
	}
	c.must("umount", mnt)

	storage := filepath.Join(c.cache, "storage")
	before := du(t, storage)
	c.mustJSON(&res, "gc", "--keep-last", "1")
	after := du(t, storage)
	t.Logf("gc freed %d bytes (du: %d) in %d layers", res.Freed, before-after, len(res.Removed))
	if res.Freed != before-after {
		t.Errorf("gc reports %d bytes freed, du saw %d", res.Freed, before-after)
	}
	if res.Freed <= 0 {
		t.Error("gc freed nothing")
	}
	var left []inspect.LayerRow
	c.mustJSON(&left, "ls")
	kept := map[string]bool{}
	for _, r := range left {
		kept[r.ID] = true
	}
	// Everything of the newest custom chain and of failing stays; layers
	// only the old custom chain used are gone.
	newest := map[string]bool{}
	for _, r := range all {
		if r.Package == "failing-1" || !containsID(oldRows, r.ID) {
			newest[r.ID] = true
		}
	}
	for _, r := range all {
		switch {
		case newest[r.ID] && !kept[r.ID]:
			t.Errorf("gc removed %s %s of the newest chain", r.Package, r.Phase)
		case !newest[r.ID] && kept[r.ID] && !sharedWithNewest(all, r.ID, newest):
			t.Errorf("gc kept %s %s of the old chain", r.Package, r.Phase)
		}
	}
	// The newest chain is still a cache hit.
	var plan planner.Plan
	c.mustJSON(&plan, append([]string{"plan"}, newer...)...)
	for _, ph := range plan.Phases {
		if ph.Status != planner.StatusCached {
			t.Errorf("after gc %s is %s", ph.Name, ph.Status)
		}
	}
}

func containsID(rows []inspect.LayerRow, id string) bool {
	for _, r := range rows {
		if r.ID == id {
			return true
		}
	}
	return false
}

// sharedWithNewest: an old layer the newest chain builds on.
func sharedWithNewest(rows []inspect.LayerRow, id string, newest map[string]bool) bool {
	for _, r := range rows {
		if newest[r.ID] && r.Parent == id {
			return true
		}
	}
	return false
}

// TestExportImport: skopeo reads an exported chain (zstd layers, records
// in the config). Imported unsigned into a clean cache, it makes the next
// build resume after the exported phase with a result marked not verified
// (kept out of the store); signed by a trusted key, the resumed result is
// registered.
func TestExportImport(t *testing.T) {
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Skip("skopeo is not installed")
	}
	c := newCLI(t)
	p := pkg("custom", e2etest.Salt())
	out := c.build(p)
	oci := filepath.Join(c.dir, "oci")
	var ex layercache.ExportResult
	c.mustJSON(&ex, append([]string{"export"}, append(p, "--at", "build", oci)...)...)

	sk, err := exec.Command("skopeo", "inspect", "oci:"+oci+":"+ex.Ref).Output()
	if err != nil {
		t.Fatalf("skopeo inspect: %v", err)
	}
	var img struct {
		Layers []string
		Labels map[string]string
	}
	if err := json.Unmarshal(sk, &img); err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) != len(ex.Layers) || img.Labels["io.nixlayer.package"] != "custom-1" {
		t.Errorf("skopeo sees %d layers, labels %v; exported %d", len(img.Layers), img.Labels, len(ex.Layers))
	}

	resume := func(cache *cli, inStore bool) {
		t.Helper()
		var plan planner.Plan
		cache.mustJSON(&plan, append([]string{"plan"}, p...)...)
		var cached, run []string
		for _, ph := range plan.Phases {
			if ph.Status == planner.StatusCached {
				cached = append(cached, ph.Name)
			} else {
				run = append(run, ph.Name)
			}
		}
		if len(cached) == 0 || cached[len(cached)-1] != "buildPhase" || len(run) == 0 {
			t.Fatalf("after import: cached %v, run %v; want cached up to buildPhase", cached, run)
		}
		var res runner.Result
		cache.mustJSON(&res, append([]string{"build", "-Q", "--no-out-link"}, p...)...)
		if strings.Join(res.Reused, " ") != strings.Join(cached, " ") || strings.Join(res.Ran, " ") != strings.Join(run, " ") {
			t.Errorf("build after import reused %v and ran %v", res.Reused, res.Ran)
		}
		if res.InStore != inStore || res.Verified != inStore || (inStore && res.Outputs["out"] != out) {
			t.Errorf("build after import: %s in store %v, verified %v; want in store %v (%s)", res.Outputs["out"], res.InStore, res.Verified, inStore, out)
		}
		if b, err := os.ReadFile(filepath.Join(res.Outputs["out"], "built.txt")); err != nil || string(b) != "built\n" {
			t.Errorf("built.txt from the imported build layer: %q %v", b, err)
		}
	}

	// The build above registered the outputs: forget them, or the builds
	// below would give them back as nix-build does, without the layers.
	if b, err := exec.Command("nix-store", "--delete", out).CombinedOutput(); err != nil {
		t.Fatalf("nix-store --delete %s: %v\n%s", out, err, b)
	}

	// Unsigned: imported (root may), marked not verified.
	clean := &cli{t: t, cache: t.TempDir(), dir: c.dir}
	var imp []layercache.ImportResult
	clean.mustJSON(&imp, "import", oci)
	if len(imp) != 1 || imp[0].Created != len(ex.Layers) || imp[0].Verified || !strings.Contains(imp[0].Untrusted, "not signed") {
		t.Fatalf("unsigned import: %+v", imp)
	}
	resume(clean, false)

	// Signed with a key in Nix's format and trusted by the importing cache.
	dir := t.TempDir()
	secret, public := filepath.Join(dir, "sk"), filepath.Join(dir, "pk")
	if b, err := exec.Command("nix-store", "--generate-binary-cache-key", "export-test-1", secret, public).CombinedOutput(); err != nil {
		t.Fatalf("nix-store --generate-binary-cache-key: %v\n%s", err, b)
	}
	pk, _ := os.ReadFile(public)
	c.mustJSON(&ex, append([]string{"export"}, append(p, "--at", "build", "--tag", "signed", "--sign-key", secret, oci)...)...)
	if ex.SignedBy != "export-test-1" {
		t.Fatalf("export --sign-key: signed by %q", ex.SignedBy)
	}
	trusted := &cli{t: t, cache: t.TempDir(), dir: c.dir}
	cfg, _ := json.Marshal(cacheconfig.Config{Config: layercache.Config{TrustedLayerKeys: []string{strings.TrimSpace(string(pk))}}})
	os.WriteFile(filepath.Join(trusted.cache, "config.json"), cfg, 0o600)
	trusted.mustJSON(&imp, "import", oci, "--tag", "signed")
	if len(imp) != 1 || !imp[0].Verified || imp[0].SignedBy != "export-test-1" {
		t.Fatalf("signed import: %+v", imp)
	}
	resume(trusted, true)
}
