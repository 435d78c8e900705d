package push

import (
	"fmt"
	"testing"

	"iotdash/devices"
)

// A conflated client reads from the hub's table the newest reading of each
// series changed since its cursor: once each, whether it is a few changes
// behind, cut short by its limit, or so far behind that the ring wrapped.
func TestLatestTableSince(t *testing.T) {
	all := func(string) bool { return true }
	for _, changes := range []int{3, 1000, 3 * ringSize} {
		t.Run(fmt.Sprint(changes, " changes"), func(t *testing.T) {
			tab := newLatestTable()
			tab.put([]devices.Reading{reading("dev-0", 1)})
			cursor := tab.now()
			for i := range changes {
				tab.put([]devices.Reading{reading(fmt.Sprintf("dev-%d", i%10), int64(100+i))})
			}
			tab.put([]devices.Reading{reading("dev-1", 50)}) // older than dev-1's newest: ignored
			newest := map[string]int64{}
			var got []devices.Reading
			for more := true; more; {
				var part []devices.Reading
				part, cursor, more = tab.since(cursor, all, 4, nil)
				got = append(got, part...)
			}
			for _, r := range got {
				if _, twice := newest[r.Device]; twice {
					t.Fatalf("%s came twice: %v", r.Device, got)
				}
				newest[r.Device] = r.Time
			}
			for i := range min(changes, 10) {
				d := fmt.Sprintf("dev-%d", i)
				want := int64(100 + changes - 1 - (changes-1-i)%10)
				if newest[d] != want {
					t.Errorf("%s: got %d, want its newest %d", d, newest[d], want)
				}
			}
			if rest, _, _ := tab.since(cursor, all, 4, nil); len(rest) != 0 {
				t.Errorf("after everything was taken: %v", rest)
			}
		})
	}
}

// The table holds at most max series: past it, it starts again with the new
// one, and a client whose cursor is from before that gets every series of
// the new table once, then only what changes.
func TestLatestTableIsBounded(t *testing.T) {
	all := func(string) bool { return true }
	tab := newLatestTable()
	tab.max = 3
	cursor := tab.now()
	for i := range 5 {
		tab.put([]devices.Reading{reading(fmt.Sprintf("dev-%d", i), 100)})
	}
	if len(tab.slots) > tab.max || len(tab.index) > tab.max {
		t.Fatalf("the table holds %d series, more than its bound %d", len(tab.slots), tab.max)
	}
	got, cursor, _ := tab.since(cursor, all, 100, nil)
	var ids []string
	for _, r := range got {
		ids = append(ids, r.Device)
	}
	if fmt.Sprint(ids) != "[dev-3 dev-4]" {
		t.Errorf("after the table started again: %v, want the series since, dev-3 and dev-4", ids)
	}
	tab.put([]devices.Reading{reading("dev-4", 101)})
	if got, _, _ := tab.since(cursor, all, 100, nil); len(got) != 1 || got[0].Time != 101 {
		t.Errorf("then: %v, want only dev-4's new reading", got)
	}
}
