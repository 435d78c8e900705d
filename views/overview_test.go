package views

import (
	"net/url"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"
)

// ids are the data-device of sel's elements, in order, "|" between
// groups (sel's parent elements with data-group).
func ids(sel *goquery.Selection) string {
	var out []string
	sel.Each(func(_ int, s *goquery.Selection) { out = append(out, s.AttrOr("data-device", "")) })
	return strings.Join(out, ",")
}

// TestOverviewGroups: ?group=location (or kind) shows a section per
// location, in name order with the devices that have none last, each in
// the attention order, with how many need attention; a group the filter
// empties is hidden; the choice stays in the count tiles' links.
func TestOverviewGroups(t *testing.T) {
	for _, tc := range []struct{ query, groups, cards string }{
		{"group=location", "Basement,Kitchen,No location", "boiler-1|freezer-2|gate-3,new-4"},
		{"group=kind", "thermometer,No kind", "freezer-2,boiler-1|gate-3,new-4"},
		{"group=bogus", "", ""}, // ignored: one list
	} {
		v, _ := url.ParseQuery(tc.query)
		doc := renderDoc(t, OverviewPage(NewOverviewPage(fleetAt(), now, ParseFilter(v.Get), 1)))
		var groups, cards []string
		doc.Find(`[data-testid="group"]`).Each(func(_ int, g *goquery.Selection) {
			groups = append(groups, strings.TrimSpace(g.Find("h2").Contents().First().Text()))
			cards = append(cards, ids(g.Find(`[data-testid="device-card"]`)))
		})
		if got := strings.Join(groups, ","); got != tc.groups {
			t.Errorf("?%s: groups %q, want %q", tc.query, got, tc.groups)
		}
		if got := strings.Join(cards, "|"); got != tc.cards {
			t.Errorf("?%s: cards %q, want %q", tc.query, got, tc.cards)
		}
	}
	v, _ := url.ParseQuery("group=location&q=kitchen")
	doc := renderDoc(t, OverviewPage(NewOverviewPage(fleetAt(), now, ParseFilter(v.Get), 1)))
	doc.Find(`[data-testid="group"]`).Each(func(_ int, g *goquery.Selection) {
		_, hidden := g.Attr("hidden")
		if want := g.AttrOr("data-group", "") != "Kitchen"; hidden != want {
			t.Errorf("group %q hidden=%v, want %v", g.AttrOr("data-group", ""), hidden, want)
		}
	})
	if got := text(doc.Find(`[data-group="Kitchen"] .group-count`)); got != "1 device, 1 need attention" {
		t.Errorf("Kitchen's count %q", got)
	}
	if got := doc.Find(`[data-testid="count-offline"] a`).AttrOr("href", ""); got != "/?group=location&q=kitchen&status=offline" {
		t.Errorf("the offline tile links to %q, want the grouping kept", got)
	}
	if got := doc.Find(`#filter-group option[selected]`).AttrOr("value", ""); got != "location" {
		t.Errorf("the form says grouped by %q", got)
	}
}

// TestOverviewTable: ?view=table is a row per device, sorted by the
// column ?sort= names ("-" for descending; what needs attention first by
// default); the header of that column says so (aria-sort), and each
// header's button asks for its column, or the same reversed.
func TestOverviewTable(t *testing.T) {
	for _, tc := range []struct{ sort, rows, aria, next string }{
		{"", "gate-3,freezer-2,new-4,boiler-1", "status:ascending", "name,-status,seen,kind,location"},
		{"seen", "new-4,gate-3,freezer-2,boiler-1", "seen:ascending", "name,status,-seen,kind,location"},
		{"-seen", "boiler-1,freezer-2,gate-3,new-4", "seen:descending", "name,status,seen,kind,location"},
		{"name", "boiler-1,freezer-2,gate-3,new-4", "name:ascending", "-name,status,seen,kind,location"},
		{"-location", "freezer-2,boiler-1,gate-3,new-4", "location:descending", "name,status,seen,kind,location"},
		{"bogus", "gate-3,freezer-2,new-4,boiler-1", "status:ascending", "name,-status,seen,kind,location"},
	} {
		v := url.Values{"view": {"table"}, "sort": {tc.sort}}
		doc := renderDoc(t, OverviewPage(NewOverviewPage(fleetAt(), now, ParseFilter(v.Get), 1)))
		if got := ids(doc.Find(`[data-testid="fleet-table"] tr[data-testid="device-row"]`)); got != tc.rows {
			t.Errorf("sort=%s: rows %q, want %q", tc.sort, got, tc.rows)
		}
		var aria, next []string
		doc.Find(`thead th[aria-sort]`).Each(func(_ int, th *goquery.Selection) {
			aria = append(aria, th.AttrOr("data-col", "")+":"+th.AttrOr("aria-sort", ""))
		})
		doc.Find(`thead th button[name="sort-by"]`).Each(func(_ int, b *goquery.Selection) { next = append(next, b.AttrOr("value", "")) })
		if got := strings.Join(aria, ","); got != tc.aria {
			t.Errorf("sort=%s: aria-sort %q, want %q", tc.sort, got, tc.aria)
		}
		if got := strings.Join(next, ","); got != tc.next {
			t.Errorf("sort=%s: the headers ask for %q, want %q", tc.sort, got, tc.next)
		}
	}
	// A row has what a card has: status, last seen and values, marked as
	// out of range, for live.js to keep.
	doc := renderDoc(t, OverviewPage(NewOverviewPage(fleetAt(), now, Filter{View: "table"}, 1)))
	row := doc.Find(`tr[data-device="freezer-2"]`)
	if text(row.Find(`[data-testid="status-badge"]`)) != "◐ Stale" || row.Find(`time[data-testid="last-seen"]`).Length() != 1 ||
		row.AttrOr("data-out", "-") != "" || !strings.Contains(text(row.Find(`[data-metric="temperature"]`)), "-2 °C out of range") {
		t.Errorf("freezer-2's row: %q", text(row))
	}
	// Without scripts, a header submits the filter's form.
	if b := doc.Find(`button[data-testid="sort-seen"]`); b.AttrOr("form", "") != "filter" || doc.Find(`form#filter`).Length() != 1 {
		t.Errorf("the sort buttons do not submit the filter's form")
	}
	// The header's choice wins over the form's hidden sort.
	if f := ParseFilter(url.Values{"view": {"table"}, "sort": {"name"}, "sort-by": {"-seen"}}.Get); f.Sort != "-seen" {
		t.Errorf("sort=name&sort-by=-seen sorts by %q", f.Sort)
	}
}
