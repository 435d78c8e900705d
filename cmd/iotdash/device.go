package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"syscall"
	"time"

	"iotdash/broker"
	"iotdash/store/sqlite"
)

const deviceUsage = `Usage: iotdash device add|list|revoke [ID] [-data DIR]

Manages the devices that may connect to the embedded MQTT broker, in the
state file of the data directory (the one iotdash runs with; it may be
running). A device connects with its id as the MQTT user name and its
secret as the password.

  iotdash device add ID      gives ID a secret and prints it: it is shown this once
  iotdash device list        lists the devices that have one
  iotdash device revoke ID   takes it away: the device can no longer connect

`

// runDevice is iotdash device: adding, listing and revoking device
// credentials.
func runDevice(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("iotdash device", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := getenv("IOTDASH_DATA")
	if dataDir == "" {
		dataDir = "iotdash-data"
	}
	fs.StringVar(&dataDir, "data", dataDir, "iotdash's data directory (IOTDASH_DATA)")
	fs.Usage = func() { fmt.Fprint(fs.Output(), deviceUsage); fs.PrintDefaults() }
	// Flags may come before or after the verb and the id.
	var words []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return usageError{err}
		}
		if fs.NArg() == 0 {
			break
		}
		words, args = append(words, fs.Arg(0)), fs.Args()[1:]
	}
	var verb string
	if len(words) > 0 {
		verb = words[0]
	}
	rest := words[min(1, len(words)):]
	wantArgs := map[string]int{"add": 1, "list": 0, "revoke": 1}
	n, ok := wantArgs[verb]
	if !ok {
		return usageError{fmt.Errorf("device: %q is none of add, list, revoke; see iotdash device -h", verb)}
	}
	if len(rest) != n {
		return usageError{fmt.Errorf("device %s takes %d device id(s), not %d; see iotdash device -h", verb, n, len(rest))}
	}
	syscall.Umask(0o077) // the state file is the owner's alone, as iotdash makes it
	creds, err := sqlite.OpenCredentials(filepath.Join(dataDir, "fleet.db"))
	if err != nil {
		return fmt.Errorf("opening the device credentials in -data %s: %w", dataDir, err)
	}
	defer creds.Close()
	switch verb {
	case "add":
		secret, err := broker.AddDevice(ctx, creds, rest[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "device %s added. Its MQTT user name is %s and its password (shown this once; keep it):\n%s\n", rest[0], rest[0], secret)
	case "list":
		list, err := creds.List(ctx)
		if err != nil {
			return err
		}
		for _, c := range list {
			fmt.Fprintf(stdout, "%s\tadded %s\n", c.Device, c.Created.Local().Format(time.RFC3339))
		}
	case "revoke":
		if err := creds.Revoke(ctx, rest[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "device %s revoked: it can no longer connect, and a running iotdash disconnects it within 10 seconds\n", rest[0])
	}
	return nil
}
