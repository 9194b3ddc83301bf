package e2e_test

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/client"
	"github.com/acmebroker/acmebroker/internal/acmetest"
	"github.com/acmebroker/acmebroker/internal/testenv"
)

// TestAgedOutValuesLeaveSecondaries: a value that ages out of txt_window
// stops being served by the broker at once and, after the next prune pass
// (which moves the serial), by the secondary too: both answer the same.
func TestAgedOutValuesLeaveSecondaries(t *testing.T) {
	if acmetest.NSDPath() == "" {
		testenv.Skip(t, "nsd is not installed (apt-get install nsd; .ci/run does it)")
	}
	nsdPort := acmetest.FreePort(t)
	cfg := hiddenPrimary(t, filepath.Join(t.TempDir(), "broker.db"), net.JoinHostPort("127.0.0.1", fmt.Sprint(nsdPort)))
	const window = 2 * time.Second // a prune pass every second
	cfg.DNS.TXTWindow.Duration = window
	rd, _ := runBroker(t, cfg)
	nsd := acmetest.StartNSD(t, acmetest.NSDOptions{Zone: cfg.DNS.Zone, Primary: rd.DNS[0], Port: nsdPort,
		KeyName: xfrKeyName, KeyAlgorithm: "hmac-sha256", KeySecret: xfrKeySecret})

	api := &client.BrokerClient{}
	acct, err := api.Register(t.Context(), rd.API, nil)
	if err != nil {
		t.Fatal(err)
	}
	vals := []string{"aged-1-000000000000000000000000000000000000", "aged-2-000000000000000000000000000000000000", "aged-3-000000000000000000000000000000000000"}
	start := time.Now()
	for _, v := range vals {
		if err := api.Update(t.Context(), acct, v); err != nil {
			t.Fatal(err)
		}
	}
	waitServed(t, nsd, acct.FullDomain, vals[2])
	// Within the window all three are served (checked only while it has
	// surely not passed: a slow machine may be past it already).
	if got, err := nsd.TXT(t.Context(), acct.FullDomain); time.Since(start) < window && (err != nil || len(got) != 3) {
		t.Fatalf("NSD serves %v (%v) within the window, want all 3", got, err)
	}

	// The oldest leaves the window 2 s after it was set: the broker drops
	// it then, NSD after the next prune pass moved the serial.
	want := slices.Sorted(slices.Values(vals[1:]))
	waitExactly(t, nsd, acct.FullDomain, want, "the oldest value aged out")
	t.Logf("NSD dropped the aged-out value %v after it was set (window %v)", time.Since(start).Round(10*time.Millisecond), window)
	if b := brokerTXT(t, rd.DNS[0], acct.FullDomain); !slices.Equal(b, want) {
		t.Fatalf("the broker serves %v, NSD %v", b, want)
	}
	if nsd.LogContains("Failed to apply IXFR") {
		t.Fatalf("an IXFR did not apply:\n%s", nsd.Log())
	}
}
