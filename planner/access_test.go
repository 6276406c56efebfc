package planner

import (
	"testing"
	"time"

	"github.com/nixlayer/nixlayer/access"
	"github.com/nixlayer/nixlayer/layers"
)

// --from reuses the newest chain that reached the phase before it, but
// never another user's private one: bob's forced build starts from the
// shared chain, not from alice's layers.
func TestFromSkipsOthersPrivateChain(t *testing.T) {
	alice, bob := 1001, 1002
	c := &layerTable{}
	c.build(helloInputs(func(in *Inputs) { in.Attrs["configureFlags"] = "--old" }), 6, false)
	shared := c.all[2].ID // configurePhase of the shared chain
	c.build(helloInputs(func(in *Inputs) { in.Attrs["configureFlags"] = "--alice" }), 6, false)
	for _, l := range c.all[6:] {
		l.Meta.Status, l.Meta.PrivateTo = layers.StatusDerived, &alice
		l.Created = l.Created.Add(time.Hour)
	}
	plan := func(v *access.Viewer) *Plan {
		p, _, err := Make(helloInputs(nil), access.Visible(c, access.Of(v, c.all)), Options{From: "build", Viewer: v})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if got := plan(&access.Viewer{UID: bob}).Phases[2].Layer.ID; got != shared {
		t.Errorf("bob's --from reuses layer %s, want the shared %s", got, shared)
	}
	if got := plan(&access.Viewer{UID: alice}).Phases[2].Layer.ID; got != c.all[8].ID {
		t.Errorf("alice's --from reuses layer %s, want her own %s", got, c.all[8].ID)
	}
}

// A kept shell layer is never reused: not by a key (even one its metadata
// claimed), not by --from, not even by the user who kept it.
func TestKeptShellNeverReused(t *testing.T) {
	alice := 1001
	c := &layerTable{}
	c.build(helloInputs(nil), 6, false)
	p, _, err := Make(helloInputs(nil), c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A shell kept over configurePhase, newer than the chain, claiming
	// buildPhase's key.
	shell := &layers.Layer{ID: "kept", Parent: c.all[2].ID, Created: time.Unix(100, 0), Meta: layers.Meta{
		Kind: layers.KindShell, Status: layers.StatusDerived, Key: p.Phases[3].Key, Phase: "buildPhase", Package: "hello", PrivateTo: &alice,
	}}
	c.all = append(c.all, shell)
	v := &access.Viewer{UID: alice}
	for _, po := range []Options{{Viewer: v}, {From: "install", Viewer: v}} {
		p, _, err := Make(helloInputs(nil), access.Visible(c, access.Of(v, c.all)), po)
		if err != nil {
			t.Fatal(err)
		}
		for _, ph := range p.Phases {
			if ph.Layer != nil && ph.Layer.ID == "kept" {
				t.Errorf("%+v: %s reuses the kept shell", po, ph.Name)
			}
		}
	}
}
