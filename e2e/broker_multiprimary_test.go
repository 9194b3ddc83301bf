package e2e_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/client"
	"github.com/acmebroker/acmebroker/internal/acmetest"
	"github.com/acmebroker/acmebroker/internal/pgtest"
	"github.com/acmebroker/acmebroker/internal/testenv"
)

// TestSecondaryOfTwoNodes: two broker nodes on one PostgreSQL database are
// both primaries of one NSD. They publish the same zone at the same
// serial, so NSD takes changes made through either node, by IXFR from
// whichever it asks, and keeps doing so when the first node is gone.
func TestSecondaryOfTwoNodes(t *testing.T) {
	if acmetest.NSDPath() == "" {
		testenv.Skip(t, "nsd is not installed (apt-get install nsd; .ci/run does it)")
	}
	dsn := pgtest.Schema(t) // skips without ACMEBROKER_TEST_POSTGRES
	nsdPort := acmetest.FreePort(t)
	node := func() (string, func(), *client.BrokerClient, string) {
		cfg := hiddenPrimary(t, "unused.db", net.JoinHostPort("127.0.0.1", fmt.Sprint(nsdPort)))
		cfg.Storage.Engine, cfg.Storage.DSN = "postgres", dsn
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		rd, stop := runBroker(t, cfg)
		return rd.DNS[0], stop, &client.BrokerClient{}, rd.API
	}
	dnsA, stopA, api, apiA := node()
	dnsB, _, _, apiB := node()
	const zone = "auth.example.org"
	nsd := acmetest.StartNSD(t, acmetest.NSDOptions{Zone: zone, Primary: dnsA, MorePrimaries: []string{dnsB}, Port: nsdPort,
		KeyName: xfrKeyName, KeyAlgorithm: "hmac-sha256", KeySecret: xfrKeySecret, ServerExtra: []string{"xfrd-reload-timeout: 0"}})

	acct, err := api.Register(t.Context(), apiA, nil)
	if err != nil {
		t.Fatal(err)
	}
	set := func(apiURL, value string) {
		t.Helper()
		a := acct
		a.ServerURL = apiURL
		if err := api.Update(t.Context(), a, value); err != nil {
			t.Fatal(err)
		}
		waitServed(t, nsd, acct.FullDomain, value)
	}
	set(apiA, "through-a-000000000000000000000000000000000")
	set(apiB, "through-b-000000000000000000000000000000000")
	// Node A hears of B's change by notification, a moment after NSD may
	// have it from B: the two converge on one serial.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) { // polling with a deadline
		a, b := soaSerial(t, dnsA, zone), soaSerial(t, dnsB, zone)
		if a == b {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s the nodes publish serials %d and %d", a, b)
		}
	}
	stopA()
	set(apiB, "after-a-stopped-000000000000000000000000000")
	waitSerial(t, nsd, zone, soaSerial(t, dnsB, zone))
	if nsd.LogContains("Failed to apply IXFR") {
		t.Fatalf("an IXFR from one of the nodes did not apply:\n%s", nsd.Log())
	}
	// The last change came by transfer from B (NSD names the source).
	if from := "from " + strings.Replace(dnsB, ":", "@", 1) + " TSIG verified"; !nsd.LogContains(from) {
		t.Fatalf("NSD never transferred from node B (%q):\n%s", from, nsd.Log())
	}
}
