package ingest_test

import (
	"fmt"

	"iotdash/ingest"
)

// A telemetry payload is a flat JSON object of metric to number, with an
// optional ts. A metric that is not a number is skipped, and the rest kept.
func ExampleDecodeTelemetry() {
	payload := []byte(`{"ts":1764000000123,"temperature":21.5,"humidity":40.2,"door":"open"}`)
	rs, skipped, rej := ingest.DecodeTelemetry(nil, "boiler-1", payload, 0)
	for _, r := range rs {
		fmt.Println(r.Device, r.Metric, r.Time, r.Value)
	}
	for _, s := range skipped {
		fmt.Println("skipped:", s.Reason)
	}
	fmt.Println("rejected whole:", rej != nil)

	_, _, rej = ingest.DecodeTelemetry(nil, "boiler-1", []byte(`{"temperature":NaN}`), 0)
	fmt.Println("NaN:", rej.Reason)
	// Output:
	// boiler-1 temperature 1764000000123 21.5
	// boiler-1 humidity 1764000000123 40.2
	// skipped: not_number
	// rejected whole: false
	// NaN: invalid_json
}
