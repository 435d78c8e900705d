package jsondoc_test

import (
	"fmt"
	"strings"
	"testing"

	"iotdash/devices"
	"iotdash/internal/jsondoc"
)

type rule struct {
	Name  string  `json:"name"`
	Above float64 `json:"above"`
}

func TestDecodeSaysWhatIsWrong(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{``, "the rule is empty"},
		{`{"name":"hot",`, "the rule is not JSON of a rule: "},
		{`{"name":"hot","colour":"red"}`, `unknown field "colour"`},
		{`{"above":"high"}`, "above must be float64"},
		{`{"name":"hot"} {}`, "the rule's JSON has something after its end"},
		{`{"name":"` + strings.Repeat("x", 100) + `"}`, "a rule's JSON is at most 64 bytes"},
	} {
		var r rule
		err := jsondoc.Decode(strings.NewReader(tc.in), 64, &r, "a rule")
		if devices.ErrorKind(err) != devices.EInvalid || !strings.Contains(devices.ErrorMessage(err), tc.want) {
			t.Errorf("Decode(%.30q) = %v, want EInvalid saying %q", tc.in, err, tc.want)
		}
	}
}

func ExampleDecode() {
	var r rule
	err := jsondoc.Decode(strings.NewReader(`{"name":"hot","above":30}`), 1<<10, &r, "a rule")
	fmt.Println(r, err)
	err = jsondoc.Decode(strings.NewReader(`{"name":"hot","below":5}`), 1<<10, &r, "a rule")
	fmt.Println(devices.ErrorMessage(err))
	// Output:
	// {hot 30} <nil>
	// the rule is not JSON of a rule: unknown field "below"
}
