package results

import "time"

// AuditState is where a result's audit stands.
type AuditState string

const (
	// AuditDue: the result was chosen for an audit the background work
	// has not finished yet.
	AuditDue AuditState = "due"
	// AuditPassed: a clean build equals the layered result.
	AuditPassed AuditState = "passed"
	// AuditFailed: a clean build differs: the layered result rested on
	// stale layers, which are dropped; the clean build replaced it.
	AuditFailed AuditState = "failed"
	// AuditError: the clean build could not be made or compared (Why).
	AuditError AuditState = "error"
)

// Audit is what the audit of one resumed result found.
type Audit struct {
	State AuditState `json:"state"`
	Why   string     `json:"why,omitempty"`
	// Files are the output files in which the layered result differs from
	// the clean build (the engine bounds how many).
	Files []Difference `json:"files,omitempty"`
	// Phases are the phases whose layer differs from the clean build's.
	Phases []string `json:"phases,omitempty"`
	// Attrs are the attributes that differ between the derivation that
	// built the first stale layer and the audited one.
	Attrs []string `json:"attrs,omitempty"`
	// Dropped are the layers made stale (the first stale one and every
	// layer built on it).
	Dropped []string      `json:"dropped,omitempty"`
	Took    time.Duration `json:"took,omitempty"`
	At      time.Time     `json:"at,omitempty"`
}

// Due reports whether the background work still owes the audit.
func (a *Audit) Due() bool { return a != nil && a.State == AuditDue }

// Difference is one file that differs between a layered result and Nix's
// own build.
type Difference struct {
	Output string `json:"output"`
	Path   string `json:"path"` // relative to the output
	Why    string `json:"why"`
}
