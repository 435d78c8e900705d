package views

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestAlertsEndToEnd: an operator adds a rule on the alerts page, a device
// crosses it, the alert shows on the alerts page without a reload, on the
// device's card on the overview, and in the page title; the operator
// acknowledges it from the page.
func TestAlertsEndToEnd(t *testing.T) {
	// The simulated devices' own limits may fire alerts of their own beside
	// the boiler's: the title counts whatever is firing.
	const boilerRow = `tr[data-alert$=":e2e-boiler:temperature"]`
	const titleCountsFiring = `(() => {
		const n = document.querySelectorAll('#alerts-live tr[data-state="firing"]').length;
		return n > 0 && document.title.startsWith("(" + n + ") ");
	})()`
	d := startDashboard(t)
	ctx := page(t, d.URL+"/alerts")
	errs := consoleErrors(t, ctx)

	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("rule-name"), "Boiler too hot"),
		chromedp.SetValue(chromedp.ID("rule-pick"), "e2e-boiler"),
		chromedp.SetValue(chromedp.ID("rule-metric"), "temperature"),
		chromedp.SetValue(chromedp.ID("rule-value"), "30"),
		chromedp.SetValue(chromedp.ID("rule-clear"), "29"),
		chromedp.SetValue(chromedp.ID("rule-severity"), "critical"),
		chromedp.Submit(chromedp.ID("rule-name")),
	); err != nil {
		t.Fatal(err)
	}
	settle(t, ctx, "the rule added", `(document.querySelector('[data-testid="alerts-done"]')||{}).textContent === "Added the rule Boiler too hot."`)
	if err := chromedp.Do(ctx, chromedp.Navigate(d.URL+"/alerts")); err != nil {
		t.Fatal(err)
	}
	settle(t, ctx, "the live connection", connected)
	eval[bool](t, ctx, `window.notReloaded = true`)

	boiler := newDevice(t, d.Broker, "e2e-boiler", `{"name":"Boiler","kind":"boiler"}`)
	boiler.publish("telemetry", false, fmt.Sprintf(`{"ts":%d,"temperature":31.5}`, time.Now().UnixMilli()))
	settle(t, ctx, "the alert on the alerts page, without a reload", `[...document.querySelectorAll('#alerts-live [data-state="firing"]')].some(r => r.textContent.includes("e2e-boiler"))`)
	settle(t, ctx, "the count in the title", titleCountsFiring)
	if !eval[bool](t, ctx, `window.notReloaded === true`) {
		t.Error("the alerts page was reloaded to show the alert")
	}

	// On the overview, the boiler's card carries it.
	tab := page(t, d.URL+"/")
	settle(t, tab, "the alert on the boiler's card", `(document.querySelector('[data-testid="device-card"][data-device="e2e-boiler"] [data-testid="card-alert"]')||{}).textContent?.includes("Boiler too hot")`)

	// The boiler's page bands the chart from when it fired, and says so.
	dev := page(t, d.URL+"/devices/e2e-boiler")
	settle(t, dev, "the alert's span on the temperature chart", `(document.querySelector('figure[data-chart="temperature"]')?.dataset.alerts || "").includes('"critical"')`)
	if got := pageText(t, dev, `figure[data-chart="temperature"] [data-testid="chart-alerts"]`); !strings.Contains(got, "Boiler too hot") || !strings.Contains(got, "firing still") {
		t.Errorf("under the chart: %q", got)
	}
	// It cools: the span ends there, without a reload.
	eval[bool](t, dev, `window.notReloaded = true`)
	boiler.publish("telemetry", false, fmt.Sprintf(`{"ts":%d,"temperature":28}`, time.Now().UnixMilli()))
	settle(t, dev, "the span to end", `/^\[\[\d+,[1-9]\d*,"critical"\]\]$/.test(document.querySelector('figure[data-chart="temperature"]')?.dataset.alerts || "") && window.notReloaded === true`)
	settle(t, ctx, "the alert resolved on the alerts page", `document.querySelector('#alerts-live `+boilerRow+`[data-state="firing"]') === null`)
	boiler.publish("telemetry", false, fmt.Sprintf(`{"ts":%d,"temperature":32}`, time.Now().UnixMilli()))
	settle(t, ctx, "firing again", `document.querySelector('#alerts-live `+boilerRow+`[data-state="firing"]') !== null`)
	settle(t, ctx, "the count in the title again", titleCountsFiring)

	// Acknowledged from the page.
	if err := chromedp.Do(ctx, chromedp.Click(`#alerts-live `+boilerRow+`[data-state="firing"] button[type="submit"]`)); err != nil {
		t.Fatal(err)
	}
	settle(t, ctx, "acknowledged by admin", `(document.querySelector('#alerts-live `+boilerRow+`[data-state="firing"] [data-testid="acked-by"]')||{}).textContent?.includes("admin")`)
	checkAccessible(t, ctx)
	for _, e := range errs() {
		t.Errorf("console: %s", e)
	}
	if !strings.Contains(pageText(t, ctx, "h1"), "Alerts") {
		t.Error("not on the alerts page")
	}
}
