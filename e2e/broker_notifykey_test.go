package e2e_test

import (
	"fmt"
	"net"
	"path/filepath"
	"testing"

	"github.com/acmebroker/acmebroker/client"
	"github.com/acmebroker/acmebroker/internal/acmetest"
	"github.com/acmebroker/acmebroker/internal/config"
	"github.com/acmebroker/acmebroker/internal/testenv"
)

// TestNotifyKeyPerSecondary: a notify entry "host:port key NAME" signs that
// secondary's NOTIFY with its own key rather than notify_key. NSD here
// knows only its own key, so it takes the NOTIFY (and transfers at once)
// only if it is signed with that key.
func TestNotifyKeyPerSecondary(t *testing.T) {
	if acmetest.NSDPath() == "" {
		testenv.Skip(t, "nsd is not installed (apt-get install nsd; .ci/run does it)")
	}
	const ownKey, ownSecret = "ns2-key", "bnMyLW93bi1rZXktZm9yLXRoZS10ZXN0LW9ubHktIQ=="
	nsdPort := acmetest.FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(nsdPort))
	cfg := hiddenPrimary(t, filepath.Join(t.TempDir(), "broker.db"), addr)
	cfg.DNS.Transfer.Keys = append(cfg.DNS.Transfer.Keys, config.TSIGKey{Name: ownKey, Algorithm: "hmac-sha256", Secret: ownSecret})
	cfg.DNS.Transfer.Notify = []string{addr + " key " + ownKey} // notify_key stays xfr-key
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	rd, _ := runBroker(t, cfg)
	nsd := acmetest.StartNSD(t, acmetest.NSDOptions{Zone: cfg.DNS.Zone, Primary: rd.DNS[0], Port: nsdPort,
		KeyName: ownKey, KeyAlgorithm: "hmac-sha256", KeySecret: ownSecret, ServerExtra: []string{"xfrd-reload-timeout: 0"}})

	api := &client.BrokerClient{}
	acct, err := api.Register(t.Context(), rd.API, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"own-key-1-000000000000000000000000000000000", "own-key-2-000000000000000000000000000000000"} {
		if err := api.Update(t.Context(), acct, v); err != nil {
			t.Fatal(err)
		}
		waitServed(t, nsd, acct.FullDomain, v)
	}
	if !nsd.LogContains("TSIG verified with key "+ownKey) || nsd.LogContains("bad key") {
		t.Fatalf("NSD did not take transfers signed with its own key:\n%s", nsd.Log())
	}
}
