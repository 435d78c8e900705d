// Command iotsim simulates IoT devices over MQTT: a believable fleet for
// demos (iotsim -devices 50, or a scripted -scenario), or an exact load for
// benchmarks (iotsim -rate 50000 -for 60s). It only wires flags to the
// simulator package; the simulation itself lives there.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"iotdash/simulator"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "iotsim:", err)
		os.Exit(1)
	}
}

// errUsage is a mistake in the flags; the flag package has said what.
var errUsage = errors.New("usage")

const usage = `iotsim simulates IoT devices publishing to an MQTT broker.

Fleet mode (the default) keeps devices going until interrupted: each has its
own MQTT session with a Last Will, publishes retained meta and online, then
telemetry at its interval:

  iotsim -mqtt tcp://127.0.0.1:1883 -devices 50
  iotsim -scenario boiler-room          (examples: %s)

Load mode (-rate) sends exactly that many messages a second in all, evenly
paced over -conns connections, prints a progress line each second and a
summary, and fails if the rate was not held:

  iotsim -rate 50000 -devices 10000 -conns 8 -for 60s -qos 0

Every flag can also be set by its environment variable (flags win).

Flags:
`

// env names the environment twin of a flag: -client-prefix is
// IOTSIM_CLIENT_PREFIX.
func env(name string) string {
	return "IOTSIM_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("iotsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		broker   = fs.String("mqtt", "tcp://127.0.0.1:1883", "MQTT broker `URL` (tcp:// or ssl://)")
		devs     = fs.Int("devices", 0, "how many devices: simulated (default 12), or the device ids load takes in turn (default 1000)")
		interval = fs.Duration("interval", 2*time.Second, "mean time between a device's telemetry messages")
		seed     = fs.Int64("seed", 1, "seed of the signal model: the same seed gives the same readings")
		churn    = fs.Float64("churn", 0, "chance that a device drops off in any one minute, to come back 10-90s later (0: never)")
		scenario = fs.String("scenario", "", "scenario YAML `file`, or the name of an example, scripting devices and incidents")
		prefix   = fs.String("client-prefix", "iotsim", "prefix of every MQTT client id")
		username = fs.String("username", "", "MQTT user name")
		password = fs.String("password", "", "MQTT password (better set by "+env("password")+")")
		verbose  = fs.Bool("v", false, "log each device's comings and goings")

		rate  = fs.Int("rate", 0, "load mode: messages a second to send in all")
		dur   = fs.Duration("for", 30*time.Second, "load mode: how long to send (0: until interrupted)")
		conns = fs.Int("conns", 4, "load mode: MQTT connections sharing the rate")
		qos   = fs.Int("qos", 1, "load mode: QoS of the messages, 0 or 1")
		stamp = fs.Bool("stamp", false, "load mode: put the send time in each message's ts (Unix ms), to measure delay downstream")
	)
	fs.VisitAll(func(f *flag.Flag) { f.Usage += " [$" + env(f.Name) + "]" })
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), usage, strings.Join(simulator.ExampleScenarios(), ", "))
		fs.PrintDefaults()
	}
	// Environment first, so that flags override it.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(env(f.Name)); v != "" && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s=%q: %v", env(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		return envErr
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "iotsim: unexpected arguments %q\n", fs.Args())
		return errUsage
	}

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	if *rate > 0 {
		if *qos != 0 && *qos != 1 {
			return fmt.Errorf("-qos must be 0 or 1, not %d", *qos)
		}
		n := *devs
		if n == 0 {
			n = 1000
		}
		sum, err := simulator.Load(ctx, simulator.LoadConfig{
			Broker: *broker, Rate: *rate, Devices: n, Duration: *dur, Conns: *conns, QoS: byte(*qos), Stamp: *stamp,
			ClientPrefix: *prefix + "-load", Username: *username, Password: *password, Progress: stdout, Logger: log,
		})
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, sum)
		if !sum.Held {
			return fmt.Errorf("the rate of %d messages/s was not held", *rate)
		}
		return nil
	}

	cfg := simulator.Config{
		Broker: *broker, Devices: *devs, Interval: *interval, Seed: *seed, Churn: *churn,
		ClientPrefix: *prefix, Username: *username, Password: *password, Logger: log,
	}
	if cfg.Devices == 0 {
		cfg.Devices = 12
	}
	if *scenario != "" {
		sc, err := simulator.ReadScenario(*scenario)
		if err != nil {
			return err
		}
		cfg.Scenario = sc
	}
	sim, err := simulator.New(cfg)
	if err != nil {
		return err
	}
	ids := sim.Devices()
	fmt.Fprintf(stdout, "iotsim: simulating %d devices (%s ... %s) on %s, seed %d; interrupt to stop\n",
		len(ids), ids[0], ids[len(ids)-1], *broker, *seed)
	if err := sim.Run(ctx); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "iotsim: every device went offline cleanly")
	return nil
}
