package acmedns_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libdns/libdns"
	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/client"
	"github.com/acmebroker/acmebroker/internal/broker"
	"github.com/acmebroker/acmebroker/internal/broker/brokertest"
	"github.com/acmebroker/acmebroker/internal/config"
	"github.com/acmebroker/acmebroker/libdns/acmedns"
)

const (
	brokerZone   = "auth.example.test"
	customerZone = "example.test"
	value1       = "LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo"
	value2       = "MPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo"
	value3       = "NPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo"
)

func startBroker(t *testing.T, dnsListen string) broker.Ready {
	t.Helper()
	return brokertest.Start(t, brokertest.Config(t, brokerZone, func(c *config.Config) {
		c.DNS.Listen = []string{dnsListen}
		c.DNS.RRL.Enabled = false
	}))
}

// served asks the broker's DNS server for name's TXT values.
func served(t *testing.T, addr, name string) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	r, err := dns.Exchange(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, txt.Txt...)
		}
	}
	slices.Sort(out)
	return out
}

// TestProviderAgainstBroker: the provider sets values a real broker then
// serves, with accounts read from the accounts.json `acmebroker client
// register` writes, and reports what the API refuses.
func TestProviderAgainstBroker(t *testing.T) {
	ctx := context.Background()
	b := startBroker(t, "127.0.0.1:0")
	bc := &client.BrokerClient{}
	acct, err := bc.Register(ctx, b.API, nil)
	if err != nil {
		t.Fatal(err)
	}
	state := &client.State{Dir: t.TempDir()}
	if err := state.SaveAccount(customerZone, acct); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(state.Dir, "accounts.json"))
	if err != nil {
		t.Fatal(err)
	}
	p := &acmedns.Provider{}
	if err := json.Unmarshal(raw, &p.Accounts); err != nil {
		t.Fatalf("accounts.json does not load as Provider.Accounts: %v", err)
	}

	// What CertMagic does for example.test and *.example.test.
	got, err := p.AppendRecords(ctx, customerZone+".", []libdns.Record{
		libdns.RR{Type: "TXT", Name: "_acme-challenge", Data: value1},
		libdns.TXT{Name: "_acme-challenge", Text: value2, TTL: time.Minute},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].(libdns.TXT).Text != value1 || got[1].RR().TTL != time.Minute {
		t.Fatalf("AppendRecords returned %#v", got)
	}
	if v := served(t, b.DNS[0], acct.FullDomain); !slices.Equal(v, []string{value1, value2}) {
		t.Fatalf("the broker serves %v at %s", v, acct.FullDomain)
	}
	// A name below the registered domain uses its account too (its CNAME
	// points at the same fulldomain).
	if _, err := p.AppendRecords(ctx, customerZone, []libdns.Record{libdns.TXT{Name: "_acme-challenge.www", Text: value3}}); err != nil {
		t.Fatalf("a name below the registered domain: %v", err)
	}
	if recs, _ := p.GetRecords(ctx, customerZone); len(recs) != 3 {
		t.Fatalf("GetRecords: %v, want the 3 set", recs)
	}
	// SetRecords: for that name only the values given remain (as far as
	// the API allows: they are its newest).
	if _, err := p.SetRecords(ctx, customerZone, []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: value2}}); err != nil {
		t.Fatal(err)
	}
	recs, _ := p.GetRecords(ctx, customerZone)
	var names []string
	for _, r := range recs {
		names = append(names, r.RR().Name+"="+r.RR().Data)
	}
	slices.Sort(names)
	if want := []string{"_acme-challenge.www=" + value3, "_acme-challenge=" + value2}; !slices.Equal(names, want) {
		t.Fatalf("after SetRecords: %v, want %v", names, want)
	}
	del, err := p.DeleteRecords(ctx, customerZone, []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: value2}, libdns.TXT{Name: "_acme-challenge", Text: "never set"}})
	if err != nil || len(del) != 1 {
		t.Fatalf("DeleteRecords: %v, %v; want the one it knew", del, err)
	}
	if recs, _ := p.GetRecords(ctx, customerZone); len(recs) != 1 {
		t.Fatalf("after DeleteRecords: %v", recs)
	}

	// What the API cannot hold, and what it refuses.
	for _, r := range []libdns.Record{libdns.Address{Name: "www"}, libdns.TXT{Name: "www", Text: value1}} {
		if _, err := p.AppendRecords(ctx, customerZone, []libdns.Record{r}); !errors.Is(err, acmedns.ErrUnsupported) {
			t.Errorf("AppendRecords(%v): %v, want ErrUnsupported", r, err)
		}
	}
	if _, err := p.AppendRecords(ctx, "other.test", []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: value1}}); err == nil {
		t.Error("a domain without an account was taken")
	}
	bad := &acmedns.Provider{Username: acct.Username, Password: "wrong-password-0000000000000000000000000", Subdomain: acct.SubDomain, ServerURL: b.API}
	_, err = bad.AppendRecords(ctx, customerZone, []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: value1}})
	var ae *acmedns.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || ae.Code != "forbidden" {
		t.Errorf("wrong password: %v, want 401 forbidden", err)
	}
	single := &acmedns.Provider{Username: acct.Username, Password: acct.Password, Subdomain: acct.SubDomain, ServerURL: b.API}
	_, err = single.AppendRecords(ctx, customerZone, []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: "short"}})
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Code != "bad_txt" {
		t.Errorf("bad value: %v, want 400 bad_txt", err)
	}
	if _, err := single.AppendRecords(ctx, "anything.test", []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: value3}}); err != nil {
		t.Errorf("the single account: %v", err)
	}
}

// TestProviderRetries: a 503 or a 429 is tried again; a 401 is not.
func TestProviderRetries(t *testing.T) {
	var calls atomic.Int32
	status := []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusOK}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(calls.Add(1)) - 1
		if r.URL.Path != "/prefix/update" || r.Header.Get("X-Api-User") != "u" {
			http.Error(w, `{"error":"forbidden"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(status[min(n, len(status)-1)])
		_, _ = w.Write([]byte(`{"txt":"` + value1 + `"}`))
	}))
	defer srv.Close()
	p := &acmedns.Provider{Username: "u", Password: "p", Subdomain: "s", ServerURL: srv.URL + "/prefix/"}
	if _, err := p.AppendRecords(context.Background(), customerZone, []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: value1}}); err != nil {
		t.Fatalf("after a 503 and a 429: %v", err)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d calls, want 3", n)
	}
	calls.Store(0)
	p.Username = "someone else"
	if _, err := p.AppendRecords(context.Background(), customerZone, []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: value1}}); err == nil || calls.Load() != 1 {
		t.Fatalf("401: %v after %d calls; want an error after 1", err, calls.Load())
	}
}
