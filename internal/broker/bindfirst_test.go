package broker_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/acmebroker/acmebroker/internal/broker"
	"github.com/acmebroker/acmebroker/internal/config"
)

// TestBusyAddressCreatesNoDatabase: a second instance whose DNS, API or
// metrics address is taken fails before it opens storage, so it neither
// creates nor migrates a database file, and its error names the address.
func TestBusyAddressCreatesNoDatabase(t *testing.T) {
	busyUDP, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busyUDP.Close() })
	busyTCP, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busyTCP.Close() })
	udpAddr, tcpAddr := busyUDP.LocalAddr().String(), busyTCP.Addr().String()

	for _, tc := range []struct {
		name  string
		set   func(*config.Config)
		addr  string
		field string
	}{
		{"dns", func(c *config.Config) { c.DNS.Listen = []string{udpAddr} }, udpAddr, "dns.listen"},
		{"api", func(c *config.Config) { c.API.Listen = tcpAddr }, tcpAddr, "api.listen"},
		{"metrics", func(c *config.Config) { c.Metrics.Listen = tcpAddr }, tcpAddr, "metrics"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := metricsConfig(t, "")
			dir := t.TempDir()
			cfg.Storage.DSN = filepath.Join(dir, "second.db")
			tc.set(&cfg)
			served := false
			err := broker.Run(context.Background(), cfg, slog.New(slog.DiscardHandler), func(broker.Ready) { served = true })
			if err == nil || served {
				t.Fatalf("Run with %s busy = %v (served %v), want an error", tc.addr, err, served)
			}
			if !strings.Contains(err.Error(), tc.addr) || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %s and %s", err, tc.field, tc.addr)
			}
			ents, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				t.Errorf("a failed start left %s behind", e.Name())
			}
		})
	}
}
