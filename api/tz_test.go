package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"iotdash/api"
	"iotdash/devices"
)

// TestDaysInTheZone: step=1d with tz gives a bucket per local day, the one
// on which the clock goes back 25 hours long, on both stores; the CSV
// writes each time with its offset.
func TestDaysInTheZone(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	start := time.Date(2026, 10, 24, 0, 0, 0, 0, berlin)
	var rs []devices.Reading
	for h := range 24 + 25 + 24 {
		rs = append(rs, devices.Reading{Device: "tz-boiler", Metric: "t", Time: start.Add(time.Duration(h) * time.Hour).UnixMilli(), Value: 1})
	}
	for name, open := range map[string]func(testing.TB) backend{
		"sqlite": func(t testing.TB) backend { return openSQLite(t) },
		"influx": func(t testing.TB) backend { return openInflux(t) },
	} {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			if err := st.Append(context.Background(), rs); err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(api.Query(st, api.QueryOptions{}))
			defer srv.Close()
			get := func(q string) string {
				resp, err := srv.Client().Get(srv.URL + "?" + q)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 {
					t.Fatalf("%s: %d %s", q, resp.StatusCode, b)
				}
				return string(b)
			}
			q := "device=tz-boiler&metric=t&from=2026-10-24T00:00:00%2B02:00&to=2026-10-27T00:00:00%2B01:00&step=1d&agg=count&tz=Europe/Berlin"
			var ans struct{ Points [][2]float64 }
			json.Unmarshal([]byte(get(q)), &ans)
			var got []string
			for _, p := range ans.Points {
				got = append(got, time.UnixMilli(int64(p[0])).In(berlin).Format("01-02 15:04 -0700")+" "+itoa(p[1]))
			}
			want := []string{"10-24 00:00 +0200 24", "10-25 00:00 +0200 25", "10-26 00:00 +0100 24"}
			if strings.Join(got, ", ") != strings.Join(want, ", ") {
				t.Errorf("days in Europe/Berlin:\n got %v\nwant %v", got, want)
			}
			csv := get(q + "&format=csv")
			if !strings.Contains(csv, "2026-10-25T00:00:00.000+02:00,") || !strings.Contains(csv, "2026-10-26T00:00:00.000+01:00,") {
				t.Errorf("CSV in Europe/Berlin:\n%s", csv)
			}
		})
	}
}

func itoa(v float64) string { b, _ := json.Marshal(v); return string(b) }
