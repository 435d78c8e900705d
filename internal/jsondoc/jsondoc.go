// Package jsondoc reads one JSON document that comes from outside (a
// request's body, an imported file) the one way iotdash does: at most a
// given size, one value, no field the type does not have, and a mistake
// said in words fit for the sender, without echoing the input at length.
//
// It is not for JSON iotdash wrote itself (its state file's documents),
// which encoding/json reads as it is.
package jsondoc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"iotdash/devices"
)

// Decode reads r, at most limit bytes, into v: what is what v is, with its
// article ("a board", "an alert rule"), for the messages. Every mistake is
// an EInvalid error that says which.
func Decode(r io.Reader, limit int, v any, what string) error {
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return devices.Wrap(err, devices.EInvalid, "%s could not be read", what)
	}
	if len(b) > limit {
		return devices.Errorf(devices.EInvalid, "%s's JSON is at most %d bytes", what, limit)
	}
	the := "the " + strings.TrimPrefix(strings.TrimPrefix(what, "an "), "a ")
	if len(bytes.TrimSpace(b)) == 0 {
		return devices.Errorf(devices.EInvalid, "%s is empty; give it as JSON", the)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return devices.Errorf(devices.EInvalid, "%s is not JSON of %s: %s", the, what, problem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return devices.Errorf(devices.EInvalid, "%s's JSON has something after its end", the)
	}
	return nil
}

// problem says what encoding/json found wrong, without echoing the input
// at length.
func problem(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return fmt.Sprintf("%s must be %s", te.Field, te.Type.String())
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120] + "…"
	}
	return strings.TrimPrefix(msg, "json: ")
}
