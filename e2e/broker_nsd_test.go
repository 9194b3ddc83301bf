package e2e_test

import (
	"path/filepath"
	"testing"

	"github.com/acmebroker/acmebroker/internal/acmetest"
	"github.com/acmebroker/acmebroker/internal/testenv"
)

// TestNSDSecondary: a real NSD, secondary of the broker with a TSIG key and
// docs/secondaries.md's xfrd-reload-timeout: 0, passes checkSecondary; every
// transfer is signed and every IXFR applies as sent; after a restart on the
// same database the serial keeps increasing, so NSD takes the new changes.
func TestNSDSecondary(t *testing.T) {
	if acmetest.NSDPath() == "" {
		testenv.Skip(t, "nsd is not installed (apt-get install nsd; .ci/run does it)")
	}
	db := filepath.Join(t.TempDir(), "broker.db")
	// Enough data that the first transfer takes several messages, each
	// signed (NSD checks the chained MACs).
	const bulk = 600
	seed(t, db, bulk)
	run, nsd := nsdPair(t, db)
	api, acct := checkSecondary(t, run, "NSD", bulk, 50)
	// Every transfer was signed, and every incremental one applied as sent
	// (NSD falls back to AXFR, and says so, when an IXFR does not fit).
	if !nsd.LogContains("TSIG verified with key "+xfrKeyName) || nsd.LogContains("Failed to apply IXFR") {
		t.Fatalf("NSD did not take signed, clean transfers:\n%s", nsd.Log())
	}

	zone := run.cfg.DNS.Zone
	before := soaSerial(t, run.rd.DNS[0], zone)
	run.stop()
	// Same database, same DNS port (NSD transfers from it).
	cfg := run.cfg
	cfg.DNS.Listen = run.rd.DNS
	rd2, _ := runBroker(t, cfg)
	if after := soaSerial(t, rd2.DNS[0], zone); after < before {
		t.Fatalf("serial went back across a restart: %d then %d", before, after)
	}
	acct.ServerURL = rd2.API
	if err := api.Update(t.Context(), acct, "after-restart-00000000000000000000000000000"); err != nil {
		t.Fatal(err)
	}
	if after := soaSerial(t, rd2.DNS[0], zone); after <= before {
		t.Fatalf("serial after restart and update %d, before %d", after, before)
	}
	waitServed(t, nsd, acct.FullDomain, "after-restart-00000000000000000000000000000")
	if nsd.LogContains("Failed to apply IXFR") {
		t.Fatalf("an IXFR after the restart did not apply:\n%s", nsd.Log())
	}
}

// nsdPair runs a broker on db as hidden primary of a real NSD that
// transfers with the key and the settings the docs give (no reload delay).
func nsdPair(t *testing.T, db string) (secondaryRun, *acmetest.NSD) {
	t.Helper()
	var nsd *acmetest.NSD
	run := startPair(t, db, nil, func(port int, primary, zone string) (secondary, error) {
		nsd = acmetest.StartNSD(t, acmetest.NSDOptions{Zone: zone, Primary: primary, Port: port,
			KeyName: xfrKeyName, KeyAlgorithm: "hmac-sha256", KeySecret: xfrKeySecret,
			ServerExtra: []string{"xfrd-reload-timeout: 0", "rrl-ratelimit: 0"}})
		return nsd, nil
	})
	return run, nsd
}
