package ingest

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// notices are the warnings for every page, each "" when there is none.
type notices struct {
	mu     sync.Mutex
	broker string // the broker cannot be reached
	drops  string // the broker drops messages
}

// brokerGrace is how long after its start iotdash may take to reach the
// broker before every page says it cannot.
const brokerGrace = 5 * time.Second

// brokerGone tells every page that the broker cannot be reached since
// then, unless the ingester is subscribed by now, or the pages say so
// already: with several connections, each one lost calls it, and the
// warning keeps the time of the first.
func (in *Ingester) brokerGone(since time.Time) {
	text := fmt.Sprintf("The MQTT broker cannot be reached since %s UTC: no readings arrive; values shown are the last received.", since.UTC().Format("15:04:05"))
	// Asked under the lock that brokerBack's clearing takes after a
	// connection is marked subscribed: the warning is cleared by it, or
	// not set.
	in.setNotice(&in.notices.broker, text, func() bool { return in.Connected() || in.notices.broker != "" })
}

// brokerBack clears the broker's absence from every page once every
// connection is up and subscribed again.
func (in *Ingester) brokerBack() {
	in.setNotice(&in.notices.broker, "", func() bool { return !in.Connected() })
}

// notice sets one of in.notices to text and tells Config.Notice the
// warnings that are up, if that changed them.
func (in *Ingester) notice(which *string, text string) {
	in.setNotice(which, text, nil)
}

// setNotice is notice, unless skip (if not nil) says otherwise under the
// lock.
func (in *Ingester) setNotice(which *string, text string, skip func() bool) {
	n := &in.notices
	n.mu.Lock()
	defer n.mu.Unlock()
	if *which == text || (skip != nil && skip()) {
		return
	}
	*which = text
	if in.cfg.Notice != nil {
		in.cfg.Notice(strings.TrimSpace(n.broker + " " + n.drops))
	}
}
