package broker

import (
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Deliver takes a message a device published under the delivered prefix. It
// is called on the publishing client's connection goroutine, in the order
// that client sent its messages, and may block: while it does, the broker
// reads nothing more from that client, so a slow consumer slows the devices
// instead of dropping their messages. It calls ack exactly once, from any
// goroutine, when the message is durable; ack sends the device its PUBACK
// (QoS 1) and forwards the message to the broker's other subscribers. It
// returns false if it did not take the message: then nothing is sent, and
// the device publishes it again when it reconnects.
type Deliver func(topic string, payload []byte, ack func()) bool

// deliverHook hands every publish under prefix to deliver instead of the
// broker's own fan-out, and withholds the PUBACK until deliver acks.
type deliverHook struct {
	mqtt.HookBase
	server  *mqtt.Server
	prefix  string
	deliver Deliver
	closing <-chan struct{} // closed when the broker starts to close
}

func (h *deliverHook) ID() string { return "iotdash-deliver" }

func (h *deliverHook) Provides(b byte) bool { return b == mqtt.OnPublish }

// OnPublish runs in mochi's processPublish, after the ACL check and before
// the PUBACK. Returning ErrRejectPacket stops mochi there (no PUBACK, no
// retain, no fan-out); ack does all three once the message is durable.
func (h *deliverHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || !strings.HasPrefix(pk.TopicName, h.prefix) {
		return pk, nil // our own forward, or not a device's message
	}
	qos, id, retain := pk.FixedHeader.Qos, pk.PacketID, pk.FixedHeader.Retain
	topic, payload := pk.TopicName, pk.Payload
	if qos == 2 {
		// The QoS 2 exchange (PUBREC, PUBREL, PUBCOMP) stays mochi's:
		// wait for the commit here, then let it go on as usual. A
		// consumer that stops may never commit: the broker's close does
		// not wait for it, and the device, without its PUBREC, sends
		// the message again.
		done := make(chan struct{})
		if !h.deliver(topic, payload, func() { close(done) }) {
			return pk, packets.ErrRejectPacket
		}
		select {
		case <-done:
			return pk, nil
		case <-h.closing:
			return pk, packets.ErrRejectPacket
		}
	}
	ack := func() {
		if qos == 1 {
			// The client may be gone: then it publishes the message again
			// when it is back, and the store keeps it once (idempotent).
			_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id})
		}
		_ = h.server.Publish(topic, payload, retain, qos)
	}
	h.deliver(topic, payload, ack)
	return pk, packets.ErrRejectPacket
}
