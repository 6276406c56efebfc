package rewrite

// Rule names what decided whether a file's unexplained bytes reach an
// output. A resume whose unexplained bytes reach no output is exact: its
// outputs are what a clean build with the new paths gives. The rules here
// say how bytes reach; runner adds those of its verdict on a whole build.
type Rule string

// The rules by which unexplained bytes reach an output.
const (
	// RuleInstalled: the file, or a piece of it holding the bytes, is in
	// an output (copied, or inside a gzip, bzip2, zip or ar container).
	RuleInstalled Rule = "installed-as-is"
	// RuleSection: an ELF section holding the bytes survives in an
	// installed ELF file (e.g. debug info that was not stripped).
	RuleSection Rule = "section-survives"
	// RuleBuildID: the file's build-id is computed over the bytes, and an
	// output file carries that id or is named after it.
	RuleBuildID Rule = "build-id"
	// RuleUnsure: nothing tells where the bytes go (no byte positions, an
	// output that cannot be looked into, bytes outside every ELF section):
	// counted as reaching.
	RuleUnsure Rule = "unsure"
)

// Strength orders the rules when several apply: the higher, the more
// direct the evidence that the bytes reach an output; 0 for a rule that
// is not one of these. A build-id comes first: it makes even the stripped
// main program wrong, which a copy of the debug info in a `debug` output
// does not say.
func (r Rule) Strength() int {
	switch r {
	case RuleBuildID:
		return 4
	case RuleInstalled:
		return 3
	case RuleSection:
		return 2
	case RuleUnsure:
		return 1
	}
	return 0
}

// Reach says whether, and how, one file's unexplained bytes reach the
// outputs.
type Reach struct {
	// Rule is one of the Rule… constants, "" when nothing reaches.
	Rule Rule `json:"rule,omitempty"`
	// Output is the output file that carries them: output name and path
	// inside it ("out/bin/hello").
	Output string `json:"output,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Copy: the output file is a copy of the whole file.
	Copy bool `json:"copy,omitempty"`
}
