package client_test

import (
	"context"
	"fmt"
	"net/http"
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

// brokerZone is the zone of the brokers these tests run.
const brokerZone = "auth.example.test"

// apiServer is the real API on a real SQLite store, over HTTP.
func apiServer(t *testing.T, basePath string, disableReg bool) (*httptest.Server, *records.Index) {
	t.Helper()
	reg := api.RegistrationOpen
	if disableReg {
		reg = api.RegistrationDisabled
	}
	return apiServerWith(t, api.Config{Zone: brokerZone, BasePath: basePath, Registration: reg, TXTPolicy: storage.DefaultTXTPolicy})
}

// apiServerWith is apiServer with the API configuration cfg.
func apiServerWith(t *testing.T, cfg api.Config) (*httptest.Server, *records.Index) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "b.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	idx := records.New(cfg.TXTPolicy, time.Now)
	srv := httptest.NewServer(api.New(cfg, api.Deps{Accounts: st, Zone: zone.New(zone.Config{Zone: brokerZone, Policy: cfg.TXTPolicy}, st, idx)}))
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

// TestBrokerLimits: GET /account tells the client the broker's limits and
// checks the credentials; a broker without it (acme-dns) means 2 values.
func TestBrokerLimits(t *testing.T) {
	ctx := context.Background()
	srv, _ := apiServerWith(t, api.Config{Zone: brokerZone, TXTPolicy: storage.TXTPolicy{Always: 2, Window: time.Minute, Max: 7},
		Limits: api.Limits{UpdatePerAccount: 90}})
	bc := &client.BrokerClient{}
	a, err := bc.Register(ctx, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := bc.Limits(ctx, a)
	if err != nil || l.Plain || l.TXTMax != 7 || l.TXTAlways != 2 || l.TXTWindow != time.Minute || l.UpdatesPerMinute != 90 || l.Batch() != 7 {
		t.Fatalf("Limits = %+v, %v", l, err)
	}
	bad := a
	bad.Password = strings.Repeat("x", 40)
	if _, err := bc.Limits(ctx, bad); !client.IsBrokerStatus(err, 401) {
		t.Fatalf("wrong key: %v", err)
	}
	plain := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plain.Close)
	a.ServerURL = plain.URL
	if l, err := bc.Limits(ctx, a); err != nil || !l.Plain || l.Batch() != 2 {
		t.Fatalf("acme-dns (404): %+v, %v", l, err)
	}
}

// TestBrokerRetryAfter: the broker's 429 is waited out when its
// Retry-After is within MaxWait, and reported at once when beyond.
func TestBrokerRetryAfter(t *testing.T) {
	ctx := context.Background()
	// 60 a minute: a burst of 30, then one a second.
	srv, _ := apiServerWith(t, api.Config{Zone: brokerZone, TXTPolicy: storage.DefaultTXTPolicy, Limits: api.Limits{UpdatePerAccount: 60}})
	var waits []string
	bc := &client.BrokerClient{Wait: func(m string) { waits = append(waits, m) }}
	a, err := bc.Register(ctx, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 31 {
		if err := bc.Update(ctx, a, txtValue); err != nil {
			t.Fatalf("update #%d: %v", i+1, err)
		}
	}
	if len(waits) == 0 || !strings.Contains(waits[0], "HTTP 429 too_many_requests") || !strings.Contains(waits[0], "Retry-After") {
		t.Fatalf("no wait for the broker's Retry-After: %q", waits)
	}
	impatient := &client.BrokerClient{MaxWait: 100 * time.Millisecond}
	err = impatient.Update(ctx, a, txtValue)
	if !client.IsBrokerStatus(err, 429) || !strings.Contains(err.Error(), "beyond the 100ms this run waits") {
		t.Fatalf("a Retry-After beyond MaxWait: %v", err)
	}
}

// TestBrokerClientPersist: the client's calls of /persist against the real
// API: set (the served value in the broker's canonical form), list,
// replace, remove, a removal of an issuer the account has not (404
// no_such_persist, not mistaken for a missing endpoint), wrong credentials,
// and a broker without /persist (acme-dns) saying what to use instead.
func TestBrokerClientPersist(t *testing.T) {
	ctx := context.Background()
	srv, _ := apiServer(t, "", false)
	bc := &client.BrokerClient{}
	a, err := bc.Register(ctx, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	l, err := bc.SetPersist(ctx, a, client.PersistRecord{Issuer: "ca.example", AccountURI: "https://ca.example/acct/1", Wildcard: true, Until: until})
	if err != nil {
		t.Fatal(err)
	}
	r, ok := l.Of("ca.example")
	want := fmt.Sprintf("ca.example; accounturi=https://ca.example/acct/1; policy=wildcard; persistUntil=%d", until.Unix())
	if !ok || len(l.Records) != 1 || r.Value != want || !r.Wildcard || !r.Until.Equal(until) || l.Fulldomain != a.FullDomain || l.Max < 1 {
		t.Fatalf("after set: %+v", l)
	}
	if _, err := bc.SetPersist(ctx, a, client.PersistRecord{Issuer: "ca.example", AccountURI: "https://ca.example/acct/2"}); err != nil {
		t.Fatal(err)
	}
	if l, err = bc.Persist(ctx, a); err != nil || len(l.Records) != 1 || l.Records[0].AccountURI != "https://ca.example/acct/2" || l.Records[0].Wildcard {
		t.Fatalf("after replace: %+v %v", l, err)
	}
	if l, err = bc.DeletePersist(ctx, a, "ca.example"); err != nil || len(l.Records) != 0 {
		t.Fatalf("after remove: %+v %v", l, err)
	}
	_, err = bc.DeletePersist(ctx, a, "ca.example")
	if !client.IsBrokerStatus(err, 404) || !strings.Contains(err.Error(), "no_such_persist") || strings.Contains(err.Error(), "no /persist endpoint") {
		t.Fatalf("removing it again: %v", err)
	}
	bad := a
	bad.Password = strings.Repeat("x", 40)
	if _, err := bc.Persist(ctx, bad); !client.IsBrokerStatus(err, 401) {
		t.Fatalf("wrong key: %v", err)
	}
	plain := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plain.Close)
	a.ServerURL = plain.URL
	if _, err := bc.Persist(ctx, a); !client.IsBrokerStatus(err, 404) || !strings.Contains(err.Error(), "use --challenge dns-01 or dns-account-01") {
		t.Fatalf("acme-dns (404): %v", err)
	}
}
