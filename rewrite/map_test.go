package rewrite

import (
	"encoding/json"
	"reflect"
	"testing"
)

// Maps are stored with their layers and read back by later versions: an
// unexplained file keeps its flat JSON form, fields in this order.
func TestUnexplainedJSON(t *testing.T) {
	u := Unexplained{
		Path: "build/prog", Why: "1 bytes differ",
		Strays: Strays{Offsets: []int64{7}, Bytes: 1, Sections: []string{".debug_str"}, IDCovers: true},
		Cause:  CausePath, Learned: &Reach{Rule: RuleSection, Output: "debug/prog.debug"},
	}
	const want = `{"path":"build/prog","why":"1 bytes differ","offsets":[7],"bytes":1,"sections":[".debug_str"],"idCovers":true,"cause":"path","learned":{"rule":"section-survives","output":"debug/prog.debug"}}`
	data, err := json.Marshal(u)
	if err != nil || string(data) != want {
		t.Fatalf("got %s (%v)\nwant %s", data, err, want)
	}
	var back Unexplained
	if err := json.Unmarshal(data, &back); err != nil || !reflect.DeepEqual(back, u) {
		t.Fatalf("read back %+v (%v), want %+v", back, err, u)
	}
}
