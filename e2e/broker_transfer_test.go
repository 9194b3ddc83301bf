package e2e_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/internal/acmetest"
)

// TestTransferMetrics: transfers refused and served are counted in the
// broker's metrics (the TransferObserver is wired).
func TestTransferMetrics(t *testing.T) {
	// NOTIFY goes to a port nobody listens on: counted as failed.
	nowhere := net.JoinHostPort("127.0.0.1", fmt.Sprint(acmetest.FreePort(t)))
	cfg := hiddenPrimary(t, filepath.Join(t.TempDir(), "broker.db"), nowhere)
	cfg.Metrics.Listen = "127.0.0.1:0"
	rd, _ := runBroker(t, cfg)

	q := new(dns.Msg)
	q.SetAxfr(dns.Fqdn(cfg.DNS.Zone))
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	if r, _, err := c.Exchange(q, rd.DNS[0]); err != nil || r.Rcode != dns.RcodeRefused {
		t.Fatalf("unsigned AXFR: %v %v", r, err)
	}
	signed := new(dns.Msg)
	signed.SetAxfr(dns.Fqdn(cfg.DNS.Zone))
	signed.SetTsig(xfrKeyName+".", dns.HmacSHA256, 300, time.Now().Unix())
	tr := &dns.Transfer{TsigSecret: map[string]string{xfrKeyName + ".": xfrKeySecret}}
	ch, err := tr.In(signed, rd.DNS[0])
	if err != nil {
		t.Fatal(err)
	}
	for env := range ch {
		if env.Error != nil {
			t.Fatal(env.Error)
		}
	}
	want := []string{
		`acmebroker_dns_zone_transfers_total{qtype="AXFR",result="refused"} 1`,
		`acmebroker_dns_zone_transfers_total{qtype="AXFR",result="ok"} 1`,
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(rd.Metrics)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		missing := ""
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				missing = w
			}
		}
		notified := strings.Contains(string(b), `acmebroker_dns_notifies_total{result="failed"} `) &&
			!strings.Contains(string(b), `acmebroker_dns_notifies_total{result="failed"} 0`+"\n")
		if missing == "" && notified {
			return
		}
		if !notified {
			missing = "a failed NOTIFY"
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack %q:\n%s", missing, b)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}
