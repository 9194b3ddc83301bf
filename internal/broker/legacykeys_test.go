package broker_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/acmebroker/acmebroker/internal/broker/brokertest"
	"github.com/acmebroker/acmebroker/internal/config"
	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/sqlite"
)

// TestBrokerScansForLegacyKeys: the broker finds out at start whether
// bcrypt keys exist. With one, failed logins for unknown users cost a
// bcrypt compare from the budget (api.bcrypt_per_second = 1: the second
// in a row is 503); with none, they are cheap and never refused as busy.
func TestBrokerScansForLegacyKeys(t *testing.T) {
	for _, legacy := range []bool{true, false} {
		dsn := filepath.Join(t.TempDir(), "broker.db")
		if legacy {
			st, err := sqlite.Open(context.Background(), dsn, sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			h, _ := bcrypt.GenerateFromPassword([]byte(strings.Repeat("k", 40)), bcrypt.MinCost)
			if _, err := st.CreateAccount(context.Background(), storage.Account{Username: "0b9e5a8a-1111-4222-8333-444455556666",
				KeyHash: string(h), Subdomain: "legacy", CreatedAt: time.Now()}); err != nil {
				t.Fatal(err)
			}
			st.Close()
		}
		cfg := config.Default()
		cfg.DNS.Listen = []string{"127.0.0.1:0"}
		cfg.API.Listen = "127.0.0.1:0"
		cfg.API.BcryptPerSecond = 1
		cfg.API.AuthFailLimit = 0
		cfg.Storage.DSN = dsn
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		rd := brokertest.Start(t, cfg)
		unknown := func() int {
			req, _ := http.NewRequest("POST", rd.API+"/update", strings.NewReader(`{"subdomain":"legacy","txt":"x"}`))
			req.Header.Set("X-Api-User", "0b9e5a8a-9999-4222-8333-444455556666")
			req.Header.Set("X-Api-Key", strings.Repeat("w", 40))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		// Poll (bounded) until the scan has settled: with a bcrypt key two
		// failures in a row hit the budget of 1 a second; without, ten never do.
		deadline := time.Now().Add(10 * time.Second)
		for {
			a, b := unknown(), unknown()
			if legacy && a == 401 && b == http.StatusServiceUnavailable {
				break
			}
			if !legacy {
				ok := a == 401 && b == 401
				for range 8 {
					ok = ok && unknown() == 401
				}
				if ok {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("legacy %v: failed logins answered %d, %d", legacy, a, b)
			}
			time.Sleep(time.Second) // the budget refills at 1 a second
		}
	}
}
