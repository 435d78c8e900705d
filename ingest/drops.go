package ingest

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"iotdash/internal/mqttsub"
)

// droppedTopic is where Mosquitto publishes how many messages it has
// dropped (for every subscriber: its in-flight window and queue were full),
// every sys_interval seconds (10 by default).
const droppedTopic = "$SYS/broker/publish/messages/dropped"

// dropsQuiet is how long after the broker's last reported drop the warning
// stays up.
const dropsQuiet = time.Minute

// brokerDrops follows the count of messages a broker of the user's reports
// it dropped: loss iotdash cannot prevent, made visible.
type brokerDrops struct {
	mu       sync.Mutex
	total    int64     // the broker's figure, as last reported
	known    bool      // a figure has been reported
	lastRise time.Time // when the figure last went up
	// The warning: up from the first rise until dropsQuiet after the last.
	warning    bool
	since      time.Time
	sinceTotal int64 // the figure before the first rise
}

// report takes a figure the broker published at now. It returns the
// warning to show ("" for none) and whether it changed.
func (d *brokerDrops) report(payload []byte, now time.Time) (notice string, changed bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(string(payload)), 10, 64)
	if err != nil || n < 0 {
		return "", false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// The first figure may count drops from before iotdash started; a
	// figure that goes down is a restarted broker. Only a rise is news.
	rose := d.known && n > d.total
	if rose {
		d.lastRise = now
		if !d.warning {
			d.warning, d.since, d.sinceTotal = true, now, d.total
		}
	}
	d.total, d.known = n, true
	switch {
	case rose:
		return fmt.Sprintf("The MQTT broker has dropped %d messages since %s UTC: readings are missing. Raise its max_inflight_messages and max_queued_messages (see the README).",
			n-d.sinceTotal, d.since.UTC().Format("15:04:05")), true
	case d.warning && now.Sub(d.lastRise) > dropsQuiet:
		d.warning = false
		return "", true
	}
	return "", false
}

// reportDrops takes the broker's figure and tells the log and Config.Notice
// when the warning changes.
func (in *Ingester) reportDrops(payload []byte) {
	notice, changed := in.dropped.report(payload, time.Now())
	if !changed {
		return
	}
	if notice != "" {
		in.log.Warn("the broker is dropping messages", "broker", in.cfg.Broker, "detail", notice)
	} else {
		in.log.Info("the broker has stopped dropping messages", "broker", in.cfg.Broker)
	}
	in.notice(&in.notices.drops, notice)
}

// BrokerDrops says how many messages the broker reports it has dropped
// since it started (for all its subscribers, iotdash among them) and when
// that figure last rose (zero if it has not since iotdash connected). It
// is known only for a broker that publishes the figure, as Mosquitto does
// under $SYS; fed by Submit, it is always zero.
func (in *Ingester) BrokerDrops() (total int64, lastRise time.Time) {
	in.dropped.mu.Lock()
	defer in.dropped.mu.Unlock()
	return in.dropped.total, in.dropped.lastRise
}

// watchDrops subscribes to the broker's count of dropped messages (handle
// takes them). A broker that does not publish it (or refuses the
// subscription) just leaves the figure at zero.
func (in *Ingester) watchDrops(c *mqttsub.Client) {
	c.Subscribe(subscribeTimeout, mqttsub.Subscription{Topic: droppedTopic})
}
