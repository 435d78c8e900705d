package push_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/coder/websocket"

	"iotdash/devices"
	"iotdash/push"
)

// A browser subscribes to devices over /ws, is told when the subscription
// is in force, and then receives their readings in batches.
func ExampleHub() {
	hub := push.NewHub(push.Options{})
	defer hub.Close()
	srv := httptest.NewServer(hub)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, strings.Replace(srv.URL, "http://", "ws://", 1), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.CloseNow()
	conn.Write(ctx, websocket.MessageText, []byte(`{"subscribe":{"devices":["boiler-1"]}}`))
	_, frame, _ := conn.Read(ctx)
	fmt.Println(string(frame))

	hub.Publish([]devices.Reading{
		{Device: "boiler-1", Metric: "temperature", Time: 1764000000123, Value: 21.5},
		{Device: "gate-3", Metric: "open", Time: 1764000000123, Value: 1}, // not subscribed
	})
	_, frame, _ = conn.Read(ctx)
	fmt.Println(string(frame))
	// Output:
	// {"subscribed":{"devices":["boiler-1"]}}
	// {"readings":[{"d":"boiler-1","m":"temperature","t":1764000000123,"v":21.5}]}
}
