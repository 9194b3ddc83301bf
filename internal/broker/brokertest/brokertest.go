// Package brokertest runs a real broker (SQLite, DNS, API) inside a test,
// on the addresses of the config given, and stops it when the test ends.
package brokertest

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/internal/broker"
	"github.com/acmebroker/acmebroker/internal/config"
	"github.com/acmebroker/acmebroker/internal/syncbuf"
)

// Start runs broker.Run with cfg until the test ends and returns once it
// serves; it fails the test if the broker does not start within 30 s.
func Start(t testing.TB, cfg config.Config) broker.Ready {
	t.Helper()
	r, _ := Run(t, cfg)
	return r
}

// Run is Start, and also returns a function that stops the broker (its
// API and its DNS server) before the test ends, as an outage does; it
// returns once the broker has stopped. Calling it again does nothing.
func Run(t testing.TB, cfg config.Config) (broker.Ready, func()) {
	t.Helper()
	return RunNamed(t, "broker", cfg)
}

// RunNamed is Run for one of several brokers of a test: the broker's log
// (info and above) is kept and shown under name if the test fails, and an
// error it stops with fails the test.
func RunNamed(t testing.TB, name string, cfg config.Config) (broker.Ready, func()) {
	t.Helper()
	var log syncbuf.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log:\n%s", name, log.String())
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	readyc := make(chan broker.Ready, 1)
	done := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(&log, nil))
	go func() { done <- broker.Run(ctx, cfg, logger, func(r broker.Ready) { readyc <- r }) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: %v", name, err)
			}
		})
	}
	t.Cleanup(stop)
	select {
	case r := <-readyc:
		return r, stop
	case err := <-done:
		once.Do(func() {}) // nothing left to stop
		t.Fatalf("%s failed to start: %v", name, err)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not start within 30 s", name)
	}
	return broker.Ready{}, stop
}

// Config is a broker configuration for a test: DNS (UDP and TCP) and the
// API on 127.0.0.1 port 0, a SQLite file in the test's temporary
// directory. With a zone, the broker serves that zone with its NS and the
// NS's address (127.0.0.1) as static records, as a delegated zone does;
// with "", the embedded default's zone and records. tweak (may be nil)
// changes the rest; the result is validated.
func Config(t testing.TB, zone string, tweak func(*config.Config)) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.DNS.Listen = []string{"127.0.0.1:0"}
	cfg.API.Listen = "127.0.0.1:0"
	cfg.Storage.DSN = filepath.Join(t.TempDir(), "broker.db")
	if zone != "" {
		cfg.DNS.Zone = zone
		cfg.DNS.NSName = "ns1." + zone
		cfg.DNS.NSAdmin = "hostmaster." + zone
		cfg.DNS.Records = []string{zone + ". NS ns1." + zone + ".", "ns1." + zone + ". A 127.0.0.1"}
	}
	if tweak != nil {
		tweak(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// ConfigFile writes cfg as a TOML file in the test's temporary directory
// and returns its path, for the commands that take -config.
func ConfigFile(t testing.TB, cfg config.Config) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := config.Encode(f, cfg); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path); err != nil {
		t.Fatalf("the config written for the test does not load: %v", err)
	}
	return path
}
