package testenv

// HostileStrings are strings every JSON encoder of iotdash must write so
// that encoding/json reads them back unchanged: quotes, backslashes,
// control characters, HTML's specials, non-ASCII, the line separators
// JavaScript once took for line ends, and the empty string.
var HostileStrings = []string{
	"pump-1",
	`say "hi"`,
	`C:\dir\`,
	"tab\there\nnew\rline\x00nul\x1fus\x7fdel",
	"<script>&amp;</script>",
	"Temperatur °C, Außen, 温度, 🌡",
	"\u2028\u2029",
	"",
}
