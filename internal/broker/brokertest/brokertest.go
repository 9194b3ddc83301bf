// Package brokertest runs a real broker (SQLite, DNS, API) inside a test,
// on the addresses of the config given, and stops it when the test ends.
package brokertest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/internal/broker"
	"github.com/acmebroker/acmebroker/internal/config"
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
	ctx, cancel := context.WithCancel(context.Background())
	readyc := make(chan broker.Ready, 1)
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = broker.Run(ctx, cfg, slog.New(slog.DiscardHandler), func(r broker.Ready) { readyc <- r })
	}()
	stop := func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	select {
	case r := <-readyc:
		return r, stop
	case <-done:
		t.Fatalf("broker failed to start: %v", runErr)
	case <-time.After(30 * time.Second):
		t.Fatal("broker did not start within 30 s")
	}
	return broker.Ready{}, stop
}
