package limit

import "testing"

// TestConcurrent: places are refused past the client's bound, then past
// the total, and a released place can be taken again.
func TestConcurrent(t *testing.T) {
	c := &Concurrent{Max: 3, MaxPerClient: 2}
	for i, step := range []struct {
		client string
		want   Refusal
	}{
		{"a", None}, {"a", None}, {"a", PerClient}, {"b", None}, {"c", Total},
	} {
		if got := c.Acquire(step.client); got != step.want {
			t.Fatalf("step %d: Acquire(%q) = %v, want %v", i, step.client, got, step.want)
		}
	}
	c.Release("a")
	if got := c.Acquire("c"); got != None {
		t.Errorf("after a release: Acquire(c) = %v, want None", got)
	}
}
