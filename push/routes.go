package push

import (
	"slices"
	"sync"
)

// routes says which clients Publish and PublishStatus visit for a device:
// those subscribed to every device, and those subscribed to it. Without it
// every Publish visited every client, and a device page, which wants one
// device of hundreds, paid for every batch of the others' readings.
//
// Lists are replaced, never changed in place, so a Publish that holds one
// reads it without a copy.
type routes struct {
	mu       sync.RWMutex
	wide     []*client
	byDevice map[string][]*client
	of       map[*client][]string // what each client is listed under; "*" for wide
}

// set lists c under keys (device ids, or "*" for every device) in place of
// what it was listed under.
func (r *routes) set(c *client, keys []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removeLocked(c)
	if len(keys) == 0 {
		return
	}
	if r.byDevice == nil {
		r.byDevice, r.of = map[string][]*client{}, map[*client][]string{}
	}
	if slices.Contains(keys, "*") {
		keys = []string{"*"}
		r.wide = append(slices.Clip(r.wide), c)
	} else {
		keys = slices.Compact(slices.Sorted(slices.Values(keys)))
		for _, k := range keys {
			r.byDevice[k] = append(slices.Clip(r.byDevice[k]), c)
		}
	}
	r.of[c] = keys
}

// remove takes c off every list.
func (r *routes) remove(c *client) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removeLocked(c)
}

func (r *routes) removeLocked(c *client) {
	for _, k := range r.of[c] {
		if k == "*" {
			r.wide = without(r.wide, c)
			continue
		}
		if l := without(r.byDevice[k], c); len(l) > 0 {
			r.byDevice[k] = l
		} else {
			delete(r.byDevice, k)
		}
	}
	delete(r.of, c)
}

// without returns a new list of l's clients but c.
func without(l []*client, c *client) []*client {
	i := slices.Index(l, c)
	if i < 0 {
		return l
	}
	return slices.Concat(l[:i], l[i+1:])
}
