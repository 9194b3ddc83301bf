package broker_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/client"
	"github.com/acmebroker/acmebroker/internal/acmetest"
	"github.com/acmebroker/acmebroker/internal/broker"
	"github.com/acmebroker/acmebroker/internal/config"
	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/sqlite"
)

const (
	xfrKeyName   = "xfr-key"
	xfrKeySecret = "Zm9yLXRoZS10ZXN0LW9ubHktbm90LWEtcmVhbC1zZWNyZXQ="
)

// hiddenPrimary is a broker configured to be transferred from 127.0.0.1
// with a TSIG key and to NOTIFY the secondary at notify.
func hiddenPrimary(t *testing.T, db, notify string) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.DNS.Listen = []string{"127.0.0.1:0"}
	cfg.API.Listen = "127.0.0.1:0"
	cfg.Storage.DSN = db
	cfg.DNS.Transfer = config.Transfer{
		AllowFrom: []string{"127.0.0.1/32"},
		Keys:      []config.TSIGKey{{Name: xfrKeyName, Algorithm: "hmac-sha256", Secret: xfrKeySecret}},
		Notify:    []string{notify},
		NotifyKey: xfrKeyName,
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// runBroker runs a broker until the returned stop is called (or the test
// ends).
func runBroker(t *testing.T, cfg config.Config) (broker.Ready, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	readyc := make(chan broker.Ready, 1)
	done := make(chan error, 1)
	go func() {
		done <- broker.Run(ctx, cfg, slog.New(slog.DiscardHandler), func(r broker.Ready) { readyc <- r })
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("broker: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	select {
	case r := <-readyc:
		return r, stop
	case err := <-done:
		stopped = true
		t.Fatalf("broker failed to start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("broker did not start within 30 s")
	}
	return broker.Ready{}, nil
}

// waitNSD polls the secondary until it serves want for name.
func waitNSD(t *testing.T, nsd *acmetest.NSD, name, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last []string
	var err error
	for time.Now().Before(deadline) {
		last, err = nsd.TXT(t.Context(), name)
		if err == nil && slices.Contains(last, want) {
			return
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
	t.Fatalf("NSD does not serve %q at %s after 20 s: %v %v\nnsd.log:\n%s", want, name, last, err, nsd.Log())
}

// seed stores n accounts bulk-0... with two values each, from several
// goroutines (the store batches concurrent writes into one commit).
func seed(t *testing.T, db string, n int) {
	t.Helper()
	st, err := sqlite.Open(t.Context(), db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				sub := fmt.Sprintf("bulk-%d", i)
				if _, err := st.CreateAccount(t.Context(), storage.Account{Username: sub + "-user", KeyHash: "h", Subdomain: sub, CreatedAt: now}); err != nil {
					errs <- err
					return
				}
				for _, v := range []string{fmt.Sprintf("%043d", i+1), fmt.Sprintf("%043d", i)} {
					if _, _, err := st.SetTXT(t.Context(), sub, v, now, storage.DefaultTXTPolicy); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// brokerTXT returns the TXT values the broker serves for name, sorted.
func brokerTXT(t *testing.T, addr, name string) []string {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	q.SetEdns0(dns.DefaultMsgSize, false)
	r, err := dns.Exchange(q, addr)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(txt.Txt, ""))
		}
	}
	slices.Sort(out)
	return out
}

func soaSerial(t *testing.T, addr, zone string) uint32 {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(zone), dns.TypeSOA)
	r, err := dns.Exchange(q, addr)
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("SOA from %s: %v %v", addr, r, err)
	}
	return r.Answer[0].(*dns.SOA).Serial
}

// TestNSDSecondary: a real NSD, secondary of the broker with a TSIG key,
// serves what /update set; strangers cannot transfer; a current secondary
// gets one SOA; after a restart on the same database the serial keeps
// increasing, so NSD takes the new changes.
func TestNSDSecondary(t *testing.T) {
	if acmetest.NSDPath() == "" {
		t.Skip("nsd is not installed (apt-get install nsd; .ci/run does it)")
	}
	nsdPort := acmetest.FreePort(t)
	nsdAddr := net.JoinHostPort("127.0.0.1", fmt.Sprint(nsdPort))
	db := filepath.Join(t.TempDir(), "broker.db")
	// Enough data that the first transfer takes several messages, each
	// signed (NSD checks the chained MACs).
	const bulk = 600
	seed(t, db, bulk)
	cfg := hiddenPrimary(t, db, nsdAddr)
	rd, stop := runBroker(t, cfg)
	zone := cfg.DNS.Zone
	nsd := acmetest.StartNSD(t, acmetest.NSDOptions{Zone: zone, Primary: rd.DNS[0], Port: nsdPort,
		KeyName: xfrKeyName, KeyAlgorithm: "hmac-sha256", KeySecret: xfrKeySecret})

	waitNSD(t, nsd, fmt.Sprintf("bulk-%d.%s", bulk-1, zone), fmt.Sprintf("%043d", bulk-1))

	api := &client.BrokerClient{}
	acct, err := api.Register(t.Context(), rd.API, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Update(t.Context(), acct, "first-value-0000000000000000000000000000000"); err != nil {
		t.Fatal(err)
	}
	waitNSD(t, nsd, acct.FullDomain, "first-value-0000000000000000000000000000000")
	if err := api.Update(t.Context(), acct, "second-value-000000000000000000000000000000"); err != nil {
		t.Fatal(err)
	}
	waitNSD(t, nsd, acct.FullDomain, "second-value-000000000000000000000000000000")
	// Every transfer was signed, and every incremental one applied as sent
	// (NSD falls back to AXFR, and says so, when an IXFR does not fit).
	if !nsd.LogContains("TSIG verified with key "+xfrKeyName) || nsd.LogContains("Failed to apply IXFR") {
		t.Fatalf("NSD did not take signed, clean transfers:\n%s", nsd.Log())
	}

	t.Run("strangers refused", func(t *testing.T) {
		axfr := func() *dns.Msg { q := new(dns.Msg); q.SetAxfr(dns.Fqdn(zone)); return q }
		// No TSIG, from an allowed source.
		c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
		if r, _, err := c.Exchange(axfr(), rd.DNS[0]); err != nil || r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
			t.Fatalf("unsigned AXFR: %v %v", r, err)
		}
		// Right key, source not allowed (127.0.0.2 is loopback too).
		c = &dns.Client{Net: "tcp", Timeout: 5 * time.Second, TsigSecret: map[string]string{xfrKeyName + ".": xfrKeySecret},
			Dialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}}
		q := axfr()
		q.SetTsig(xfrKeyName+".", dns.HmacSHA256, 300, time.Now().Unix())
		if r, _, err := c.Exchange(q, rd.DNS[0]); err != nil || r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
			t.Fatalf("AXFR from 127.0.0.2: %v %v", r, err)
		}
	})

	t.Run("IXFR at the current serial is one SOA", func(t *testing.T) {
		serial, err := nsd.Serial(t.Context(), zone)
		if err != nil || serial != soaSerial(t, rd.DNS[0], zone) {
			t.Fatalf("NSD serial %d (%v) is not the broker's", serial, err)
		}
		q := new(dns.Msg)
		q.SetIxfr(dns.Fqdn(zone), serial, "ns1.", "h.")
		q.SetTsig(xfrKeyName+".", dns.HmacSHA256, 300, time.Now().Unix())
		tr := &dns.Transfer{TsigSecret: map[string]string{xfrKeyName + ".": xfrKeySecret}}
		ch, err := tr.In(q, rd.DNS[0])
		if err != nil {
			t.Fatal(err)
		}
		var rrs []dns.RR
		for env := range ch {
			if env.Error != nil {
				t.Fatal(env.Error)
			}
			rrs = append(rrs, env.RR...)
		}
		if len(rrs) != 1 || rrs[0].(*dns.SOA).Serial != serial {
			t.Fatalf("IXFR from the current serial: %v", rrs)
		}
	})

	t.Run("concurrent updates all reach NSD", func(t *testing.T) {
		const workers, each = 6, 8
		accts := make([]client.BrokerAccount, workers)
		for i := range accts {
			if accts[i], err = api.Register(t.Context(), rd.API, nil); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w, a := range accts {
			wg.Go(func() {
				for k := range each {
					if err := api.Update(t.Context(), a, fmt.Sprintf("w%d-%040d", w, k)); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// NSD ends up with exactly what the broker serves, name by name.
		for _, a := range accts {
			want := brokerTXT(t, rd.DNS[0], a.FullDomain)
			if len(want) != each {
				t.Fatalf("broker serves %d values at %s, want %d", len(want), a.FullDomain, each)
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				got, err := nsd.TXT(t.Context(), a.FullDomain)
				slices.Sort(got)
				if err == nil && slices.Equal(got, want) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("NSD serves %v at %s, the broker %v\n%s", got, a.FullDomain, want, nsd.Log())
				}
				time.Sleep(20 * time.Millisecond) // polling with a deadline
			}
		}
	})

	before := soaSerial(t, rd.DNS[0], zone)
	stop()
	// Same database, same DNS port (NSD transfers from it).
	cfg.DNS.Listen = rd.DNS
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
	waitNSD(t, nsd, acct.FullDomain, "after-restart-00000000000000000000000000000")
	if nsd.LogContains("Failed to apply IXFR") {
		t.Fatalf("an IXFR after the restart did not apply:\n%s", nsd.Log())
	}
}
