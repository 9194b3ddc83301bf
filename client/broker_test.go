package client_test

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/api"
	"github.com/acmebroker/acmebroker/client"
	"github.com/acmebroker/acmebroker/internal/records"
	"github.com/acmebroker/acmebroker/internal/zone"
	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/sqlite"
)

// apiServer is the real API on a real SQLite store, over HTTP.
func apiServer(t *testing.T, basePath string, disableReg bool) (*httptest.Server, *records.Index) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "b.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	idx := records.New(storage.DefaultTXTPolicy, time.Now)
	reg := api.RegistrationOpen
	if disableReg {
		reg = api.RegistrationDisabled
	}
	srv := httptest.NewServer(api.New(api.Config{Zone: brokerZone, BasePath: basePath, Registration: reg, TXTPolicy: storage.DefaultTXTPolicy},
		api.Deps{Accounts: st, Zone: zone.New(zone.Config{Zone: brokerZone, Policy: storage.DefaultTXTPolicy}, st, idx)}))
	t.Cleanup(srv.Close)
	return srv, idx
}

const txtValue = "LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo"

func TestBrokerClient(t *testing.T) {
	ctx := context.Background()
	for _, prefix := range []string{"", "/acme"} {
		srv, idx := apiServer(t, prefix, false)
		bc := &client.BrokerClient{}
		a, err := bc.Register(ctx, srv.URL+prefix+"/", []string{"127.0.0.0/8"})
		if err != nil {
			t.Fatalf("register (prefix %q): %v", prefix, err)
		}
		if !strings.HasSuffix(a.FullDomain, "."+brokerZone) || a.ServerURL != srv.URL+prefix+"/" {
			t.Fatalf("account %+v", a)
		}
		if err := bc.Update(ctx, a, txtValue); err != nil {
			t.Fatal(err)
		}
		if got, _ := idx.TXT(nil, a.SubDomain); len(got) != 1 || got[0] != txtValue {
			t.Fatalf("served %v", got)
		}
		bad := a
		bad.Password = strings.Repeat("x", 40)
		err = bc.Update(ctx, bad, txtValue)
		if !client.IsBrokerStatus(err, 401) || !strings.Contains(err.Error(), "register again") {
			t.Fatalf("wrong key: %v", err)
		}
		err = bc.Update(ctx, a, "short")
		if !client.IsBrokerStatus(err, 400) || !strings.Contains(err.Error(), "bad_txt") {
			t.Fatalf("bad value: %v", err)
		}
	}
}

func TestBrokerClientErrors(t *testing.T) {
	ctx := context.Background()
	srv, _ := apiServer(t, "", true)
	_, err := (&client.BrokerClient{}).Register(ctx, srv.URL, nil)
	if !client.IsBrokerStatus(err, 404) || !strings.Contains(err.Error(), "registration is disabled") {
		t.Fatalf("disabled registration: %v", err)
	}
	url := srv.URL
	srv.Close()
	_, err = (&client.BrokerClient{}).Register(ctx, url, nil)
	if err == nil || !strings.Contains(err.Error(), "is the broker running") {
		t.Fatalf("broker down: %v", err)
	}
	_, err = (&client.BrokerClient{}).Register(ctx, "broker.example.test", nil)
	if err == nil || !strings.Contains(err.Error(), "https://") {
		t.Fatalf("bad URL: %v", err)
	}
}
