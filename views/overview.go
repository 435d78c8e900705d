package views

import (
	"cmp"
	"net/url"
	"strconv"
	"strings"

	"github.com/a-h/templ"

	"iotdash/devices"
)

// The overview's ways of showing the fleet, chosen in its URL: as cards
// (the default) or as a table (?view=table), in one list or grouped by
// location or kind (?group=location), and the table sorted by a column
// (?sort=seen, ?sort=-name for descending; by what needs attention
// first by default). The server orders and groups; live.js keeps the
// order as values change, by the same keys read from the page.

// Views are the overview's choices of how to show the fleet.
var Views = []struct{ Value, Label string }{
	{"", "Cards"},
	{"table", "Table"},
}

// Groupings are the overview's choices of how to group the fleet.
var Groupings = []struct{ Value, Label string }{
	{"", "Nothing"},
	{"location", "Location"},
	{"kind", "Kind"},
}

// Column is a sortable column of the overview's table.
type Column struct {
	Key, Label string
}

// Columns are the overview's table's sortable columns, in their order.
// "status" sorts by what needs attention first (attentionOrder).
var Columns = []Column{
	{"name", "Device"},
	{"status", "Status"},
	{"seen", "Last seen"},
	{"kind", "Kind"},
	{"location", "Location"},
}

// defaultSort is the table's order when the URL names none.
const defaultSort = "status"

// parseLayout reads the view, grouping and sort of f from the overview's
// URL parameters; a value it does not know is ignored, as a status is.
func (f *Filter) parseLayout(get func(string) string) {
	for _, v := range Views {
		if v.Value == get("view") {
			f.View = v.Value
		}
	}
	for _, g := range Groupings {
		if g.Value == get("group") {
			f.Group = g.Value
		}
	}
	// A header's button without scripts sends its sort as sort-by, beside
	// the form's own (hidden) sort: the button's wins.
	s := get("sort")
	if by := get("sort-by"); by != "" {
		s = by
	}
	for _, c := range Columns {
		if strings.TrimPrefix(s, "-") == c.Key {
			f.Sort = s
		}
	}
	if f.Sort == defaultSort || f.View != "table" {
		f.Sort = "" // cards are in the order of what needs attention
	}
}

// sortColumn is the column the overview is sorted by and whether it is in
// descending order.
func (f Filter) sortColumn() (string, bool) {
	if f.Sort == "" {
		return defaultSort, false
	}
	col, desc := strings.CutPrefix(f.Sort, "-")
	return col, desc
}

// URL is the overview with f's filter and layout, at page (from 1).
func (f Filter) URL(page int) string {
	v := url.Values{}
	if f.Text != "" {
		v.Set("q", f.Text)
	}
	if f.Status != "" {
		v.Set("status", f.Status)
	}
	if f.View != "" {
		v.Set("view", f.View)
	}
	if f.Group != "" {
		v.Set("group", f.Group)
	}
	if f.Sort != "" {
		v.Set("sort", f.Sort)
	}
	if page > 1 {
		v.Set("page", strconv.Itoa(page))
	}
	if len(v) == 0 {
		return "/"
	}
	return "/?" + v.Encode()
}

// compareEntries orders two devices as the overview shows them: by the
// sort column (what needs attention by default), then what needs
// attention, name and id. live.js's itemKey reads the same keys from the
// page.
func (f Filter) compareEntries(a, b overviewEntry) int {
	col, desc := f.sortColumn()
	c := 0
	switch col {
	case "name":
		c = cmp.Compare(a.name, b.name)
	case "seen":
		c = cmp.Compare(a.d.LastSeen, b.d.LastSeen)
	case "kind":
		c = cmp.Compare(strings.ToLower(a.d.Meta.Kind), strings.ToLower(b.d.Meta.Kind))
	case "location":
		c = cmp.Compare(strings.ToLower(a.d.Meta.Location), strings.ToLower(b.d.Meta.Location))
	default:
		c = cmp.Compare(a.att, b.att)
	}
	if desc {
		c = -c
	}
	return cmp.Or(c, cmp.Compare(a.att, b.att), cmp.Compare(a.name, b.name), cmp.Compare(a.d.ID, b.d.ID))
}

// groupOf is the group d is shown in under f's grouping: its location or
// kind ("" when it has none, or nothing is grouped).
func (f Filter) groupOf(d devices.Device) string {
	switch f.Group {
	case "location":
		return d.Meta.Location
	case "kind":
		return d.Meta.Kind
	}
	return ""
}

// compareGroups orders groups by name, ignoring case; devices without a
// location (or kind) last.
func compareGroups(a, b string) int {
	if (a == "") != (b == "") {
		if a == "" {
			return 1
		}
		return -1
	}
	return cmp.Or(cmp.Compare(strings.ToLower(a), strings.ToLower(b)), cmp.Compare(a, b))
}

// Group is a run of the overview's Devices that share a location or kind.
type Group struct {
	// Name is the location or kind, "" for devices that have none.
	Name string
	// Lo and Hi are the group's cards in Devices: Devices[Lo:Hi].
	Lo, Hi int
}

// Label is the group's heading.
func (g Group) Label(by string) string {
	if g.Name != "" {
		return g.Name
	}
	return "No " + by
}

// groupsOf splits cards, ordered group by group, into their groups.
func groupsOf(f Filter, cards []Card) []Group {
	if f.Group == "" {
		return nil
	}
	var gs []Group
	for i, c := range cards {
		name := c.Location
		if f.Group == "kind" {
			name = c.Kind
		}
		if len(gs) == 0 || gs[len(gs)-1].Name != name {
			gs = append(gs, Group{Name: name, Lo: i, Hi: i})
		}
		gs[len(gs)-1].Hi = i + 1
	}
	return gs
}

// groupCounts are how many of cards there are and how many need
// attention.
func groupCounts(cards []Card) (n, attention int) {
	for _, c := range cards {
		if c.Attention() < len(attentionOrder) {
			attention++
		}
	}
	return len(cards), attention
}

// Hidden reports whether the filter leaves out every card of g, one of
// the groups of cards.
func (g Group) Hidden(cards []Card) bool {
	for _, c := range cards[g.Lo:g.Hi] {
		if !c.Hidden {
			return false
		}
	}
	return true
}

// ariaSort is the aria-sort of a column header: how the table is sorted
// by it, "" when it is not.
func (f Filter) ariaSort(col string) string {
	c, desc := f.sortColumn()
	switch {
	case c != col:
		return ""
	case desc:
		return "descending"
	}
	return "ascending"
}

// nextSort is the sort a column header's button asks for: the column, or
// the column reversed when the table is sorted by it already.
func (f Filter) nextSort(col string) string {
	if c, desc := f.sortColumn(); c == col && !desc {
		return "-" + col
	}
	return col
}

// withStatus is f filtering by status instead.
func (f Filter) withStatus(status string) Filter {
	f.Status = status
	return f
}

// fleetAttrs are the attributes of the element that holds the overview's
// devices, which a fresh copy of the page replaces: the order of what
// needs attention and the sort, which live.js keeps as values change.
func fleetAttrs(m OverviewModel) templ.Attributes {
	col, desc := m.Filter.sortColumn()
	if desc {
		col = "-" + col
	}
	a := templ.Attributes{
		"id":                   "device-list",
		"data-swap":            true,
		"data-testid":          "device-list",
		"data-attention-order": strings.Join(attentionOrder, " "),
		"data-sort":            col,
		"aria-label":           "Devices, those needing attention first",
	}
	if m.Filter.View == "table" {
		delete(a, "aria-label") // the table's caption names it
	}
	if m.Paged {
		a["data-paged"] = true
	}
	return a
}

// deviceAttrs are the attributes of a device's card or table row by which
// live.js and the filter find it and read what it is ordered by.
func deviceAttrs(c Card) templ.Attributes {
	a := templ.Attributes{
		"data-device":   c.ID,
		"data-status":   string(c.Status),
		"data-name":     c.Name,
		"data-kind":     c.Kind,
		"data-location": c.Location,
		"data-search":   c.Search,
	}
	if c.OutOfRange() {
		a["data-out"] = true
	}
	return a
}

// sortAttrs are a column header's aria-sort, when the table is sorted by
// it.
func sortAttrs(f Filter, col string) templ.Attributes {
	if s := f.ariaSort(col); s != "" {
		return templ.Attributes{"aria-sort": s}
	}
	return nil
}
