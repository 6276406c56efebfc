package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nixlayer/nixlayer/internal/e2etest"
	"github.com/nixlayer/nixlayer/runner"
)

// Issues 15 and 17 together: through nixlayer daemon the layer caches are
// the daemon's (its cache's config.json). An unprivileged user's build
// pulls from them and resumes exactly; the user may pull by hand from those
// caches but not from another registry, and may not push, import, or turn
// off signature checks or TLS; an export lands in the user's directory,
// written with the user's rights, and root imports it as a trusted chain.
func TestDaemonLayerCaches(t *testing.T) {
	tm := newTeam(t, false)
	d := e2etest.StartDaemon(t, nixlayerBin)
	writeConfig(t, d.Cache, runner.Config{LayerCaches: []string{tm.repo}, TrustedLayerKeys: []string{tm.pk}, InsecureRegistries: []string{tm.reg.Addr}, RegistryTimeout: "3s"})
	me := e2etest.TestUser
	account := e2etest.LookupAccount(t, me)
	work := d.WorkDir(t, me)
	salt := e2etest.Salt()
	pkg := func(extra ...string) []string {
		return append([]string{"-f", d.Testdata, "-A", "hello", "--arg", "nfiles", "20", "--arg", "funcsPerFile", "4", "--argstr", "salt", salt}, extra...)
	}
	user := func(args ...string) e2etest.Result {
		t.Helper()
		return d.RunAs(t, me, work, d.Bin, args...)
	}
	refused := func(what string, r e2etest.Result, want ...string) {
		t.Helper()
		if r.Err == nil {
			t.Fatalf("%s by an untrusted user succeeded:\n%s", what, r.Stderr)
		}
		t.Logf("%s: %s", what, r.Stderr)
		for _, w := range append(want, "trusted-users") {
			if !strings.Contains(r.Stderr, w) {
				t.Fatalf("%s by an untrusted user: the error lacks %q:\n%s", what, w, r.Stderr)
			}
		}
	}

	// CI builds and learns, pushing both.
	if r := tm.ci.nixlayer(append([]string{"build", "-Q", "--no-out-link"}, pkg()...)...); r.Err != nil || !strings.Contains(r.Stderr, "pushed unpackPhase…distPhase to "+tm.repo) {
		t.Fatalf("CI's build did not push: %v\n%s", r.Err, r.Stderr)
	}
	if r := tm.ci.nixlayer(append([]string{"learn"}, pkg()...)...); r.Err != nil || !strings.Contains(r.Stderr, "pushed") {
		t.Fatalf("CI's learn did not push: %v\n%s", r.Err, r.Stderr)
	}

	// The user's build of an edit pulls from the daemon's layer cache.
	edited := pkg("--argstr", "postInstallExtra", "echo laptop > $out/laptop")
	r := user(append([]string{"build", "-Q", "--no-out-link", "--json"}, edited...)...)
	if r.Err != nil {
		t.Fatalf("the user's build: %v\n%s\ndaemon:\n%s", r.Err, r.Stderr, d.Log())
	}
	var res runner.Result
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
		t.Fatalf("build --json: %v\n%s", err, r.Stdout)
	}
	if got := strings.Join(res.Reused, " "); got != "unpackPhase patchPhase configurePhase buildPhase checkPhase" || !strings.Contains(r.Stderr, "pulled 5 layers") {
		t.Fatalf("the user's build reused %q, want unpack…check pulled from %s:\n%s", got, tm.repo, r.Stderr)
	}
	if !res.InStore || !res.Verified || res.Rewrite == nil || !res.Rewrite.Exact {
		t.Fatalf("the resume is not exact and registered: inStore %v verified %v rewrite %+v", res.InStore, res.Verified, res.Rewrite)
	}
	if b, err := os.ReadFile(filepath.Join(res.Outputs["out"], "laptop")); err != nil || string(b) != "laptop\n" {
		t.Fatalf("the edit is not in the output: %q %v", b, err)
	}
	check := exec.Command("nix-build", append([]string{"--no-out-link", "--check", "--option", "build-hook", ""}, edited[1:]...)...)
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("nix-build --check of the user's result: %v\n%s", err, out)
	}

	// A pull by hand from the daemon's layer cache: the unedited package's
	// installPhase…distPhase.
	if r := user(append([]string{"pull", tm.repo}, pkg()...)...); r.Err != nil || !strings.Contains(r.Stderr, "pulled") {
		t.Fatalf("the user's pull from the daemon's layer cache: %v\n%s", r.Err, r.Stderr)
	}
	if r := user(append([]string{"plan"}, pkg()...)...); r.Err != nil || strings.Contains(r.Stdout, "▶") {
		t.Fatalf("after the pull the package should be cached whole: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}

	// What needs trust.
	refused("a pull from another repository", user(append([]string{"pull", tm.reg.Repo("elsewhere/layers")}, pkg()...)...), "layerCaches", tm.repo)
	refused("--no-check-sigs", user(append([]string{"build", "-Q", "--no-out-link", "--no-check-sigs"}, pkg()...)...), "--no-check-sigs")
	refused("--insecure", user(append([]string{"pull", "--insecure", tm.repo}, pkg()...)...), "--insecure")
	refused("a push", user(append([]string{"push", tm.reg.Repo("mine/layers")}, pkg()...)...), "nixlayer push")

	// Export into the user's own layout, twice (the layout keeps both), with
	// the user's key, which only the user can read.
	keyDir := filepath.Join(work, "keys")
	os.Mkdir(keyDir, 0o700)
	sk, pkFile := filepath.Join(keyDir, "sk"), filepath.Join(keyDir, "pk")
	if out, err := exec.Command("nix-store", "--generate-binary-cache-key", "user-"+salt, sk, pkFile).CombinedOutput(); err != nil {
		t.Fatalf("nix-store --generate-binary-cache-key: %v\n%s", err, out)
	}
	exec.Command("chown", "-R", me, keyDir).Run()
	oci := filepath.Join(work, "oci")
	var ex runner.ExportResult
	for _, args := range [][]string{{"--at", "build", "--tag", "early"}, {"--sign-key", sk}} {
		r := user(append(append([]string{"export", "--json"}, args...), append(pkg(), oci)...)...)
		if r.Err != nil || json.Unmarshal([]byte(r.Stdout), &ex) != nil {
			t.Fatalf("export %v by the user: %v\n%s%s\ndaemon:\n%s", args, r.Err, r.Stdout, r.Stderr, d.Log())
		}
	}
	if ex.Dir != oci || ex.SignedBy != "user-"+salt {
		t.Fatalf("the signed export: %+v", ex)
	}
	filepath.Walk(oci, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Sys().(*syscall.Stat_t).Uid != uint32(account.UID) {
			t.Errorf("%s is not the user's", p)
		}
		return nil
	})
	for _, tag := range []string{"early", ex.Ref} {
		if out, err := exec.Command("skopeo", "inspect", "oci:"+oci+":"+tag).CombinedOutput(); err != nil {
			t.Fatalf("skopeo inspect of the user's export %s: %v\n%s", tag, err, out)
		}
	}
	refused("an import", user("import", oci), "nixlayer import")

	// Root imports the signed export into a cache trusting the user's key.
	pk, _ := os.ReadFile(pkFile)
	root := &env{t: t, dir: work, cache: t.TempDir()}
	writeConfig(t, root.cache, runner.Config{TrustedLayerKeys: []string{strings.TrimSpace(string(pk))}})
	var imp []runner.ImportResult
	ir := root.nixlayer("import", "--json", oci, "--tag", ex.Ref)
	if ir.Err != nil || json.Unmarshal([]byte(ir.Stdout), &imp) != nil || len(imp) != 1 || !imp[0].Verified || imp[0].Layers != len(ex.Layers) {
		t.Fatalf("root's import of the user's export: %v %+v\n%s", ir.Err, imp, ir.Stderr)
	}
}
