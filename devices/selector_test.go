package devices_test

import (
	"strings"
	"testing"

	"iotdash/devices"
)

func TestSelector(t *testing.T) {
	boiler := devices.Device{ID: "boiler-1", Meta: devices.Meta{Kind: "thermostat", Location: "Basement east"}}
	for _, tc := range []struct {
		s     devices.Selector
		picks bool
		err   string
	}{
		{devices.Selector{Device: "boiler-1"}, true, ""},
		{devices.Selector{Device: "boiler-2"}, false, ""},
		{devices.Selector{Kind: "thermostat"}, true, ""},
		{devices.Selector{Pattern: "boiler-*"}, true, ""},
		{devices.Selector{Pattern: "pump-?"}, false, ""},
		{devices.Selector{Location: "Basement*"}, true, ""},
		{devices.Selector{Location: "Basement"}, false, ""}, // without * it is the whole location
		{devices.Selector{}, false, "give exactly one of"},
		{devices.Selector{Device: "boiler-1", Kind: "thermostat"}, false, "give exactly one of"},
		{devices.Selector{Device: "boiler/1"}, false, `device "boiler/1" is not`},
		{devices.Selector{Pattern: "boiler-["}, false, `the pattern "boiler-[" is not a pattern`},
		{devices.Selector{Location: strings.Repeat("*", 65)}, false, "the location is longer than 64 bytes"},
	} {
		err := tc.s.Validate()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%+v: Validate = %v", tc.s, err)
		case tc.err != "" && (err == nil || devices.ErrorKind(err) != devices.EInvalid || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%+v: Validate = %v, want EInvalid saying %q", tc.s, err, tc.err)
		}
		if err == nil && tc.s.Picks(boiler) != tc.picks {
			t.Errorf("%+v picks %s = %v, want %v", tc.s, boiler.ID, !tc.picks, tc.picks)
		}
	}
}
