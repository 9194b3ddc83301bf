package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/acmebroker/acmebroker/internal/broker"
	"github.com/acmebroker/acmebroker/internal/broker/brokertest"
	"github.com/acmebroker/acmebroker/internal/config"
)

func metricsConfig(t *testing.T, listen string) config.Config {
	t.Helper()
	return brokertest.Config(t, "auth.example.test", func(c *config.Config) { c.Metrics.Listen = listen })
}

// scrape fetches url and parses the text exposition.
func scrape(t *testing.T, url string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("scrape does not parse: %v", err)
	}
	return mfs, string(body)
}

// value is the sample of family name whose labels include want (a counter,
// gauge, or a histogram's count); ok false if there is none.
func value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// TestMetricsEndToEnd runs a broker with metrics on, uses the API and DNS
// as a client would, and checks what a Prometheus scrape over HTTP sees.
func TestMetricsEndToEnd(t *testing.T) {
	rd := brokertest.Start(t, metricsConfig(t, "127.0.0.1:0"))
	if !strings.HasPrefix(rd.Metrics, "http://127.0.0.1:") {
		t.Fatalf("Ready.Metrics = %q", rd.Metrics)
	}
	client := &http.Client{Timeout: 10 * time.Second}

	resp, err := client.Post(rd.API+"/register", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var a struct{ Username, Password, Subdomain, Fulldomain string }
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != 201 {
		t.Fatalf("register: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	const txt = "LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo"
	update := func(key string) int {
		body := fmt.Sprintf(`{"subdomain":%q,"txt":%q}`, a.Subdomain, txt)
		req, _ := http.NewRequest("POST", rd.API+"/update", strings.NewReader(body))
		req.Header.Set("X-Api-User", a.Username)
		req.Header.Set("X-Api-Key", key)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := update(a.Password); st != 200 {
		t.Fatalf("update: %d", st)
	}
	if st := update("wrong-key-wrong-key-wrong-key-wrong-key-1234"); st != 401 {
		t.Fatalf("update with a wrong key: %d", st)
	}
	resp, err = client.Get(rd.API + "/" + a.Subdomain) // no such route
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	var serial uint32
	for _, c := range []struct {
		name  string
		qtype uint16
		rcode int
	}{
		{a.Fulldomain, dns.TypeTXT, dns.RcodeSuccess},
		{"nope.auth.example.test", dns.TypeTXT, dns.RcodeNameError},
		{"example.com", dns.TypeA, dns.RcodeRefused},
		{"auth.example.test", dns.TypeSOA, dns.RcodeSuccess},
	} {
		for _, network := range []string{"udp", "tcp"} {
			q := new(dns.Msg)
			q.SetQuestion(dns.Fqdn(c.name), c.qtype)
			r, _, err := (&dns.Client{Net: network, Timeout: 5 * time.Second}).Exchange(q, rd.DNS[0])
			if err != nil {
				t.Fatalf("%s %s: %v", network, c.name, err)
			}
			if r.Rcode != c.rcode {
				t.Fatalf("%s %s: rcode %s, want %s", network, c.name, dns.RcodeToString[r.Rcode], dns.RcodeToString[c.rcode])
			}
			if c.qtype == dns.TypeSOA {
				serial = r.Answer[0].(*dns.SOA).Serial
			}
		}
	}

	// A query is counted just after its answer is written, so on a busy
	// machine one may not be yet: wait (bounded) until all 8 are.
	mfs, body := scrape(t, rd.Metrics)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		n := 0.0
		for _, l := range []map[string]string{{"qtype": "TXT", "rcode": "NOERROR"}, {"qtype": "TXT", "rcode": "NXDOMAIN"},
			{"qtype": "A", "rcode": "REFUSED"}, {"qtype": "SOA", "rcode": "NOERROR"}} {
			v, _ := value(mfs, "acmebroker_dns_queries_total", l)
			n += v
		}
		if n >= 8 {
			break
		}
		time.Sleep(10 * time.Millisecond)
		mfs, body = scrape(t, rd.Metrics)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"acmebroker_dns_queries_total", map[string]string{"qtype": "TXT", "rcode": "NOERROR"}, 2},
		{"acmebroker_dns_queries_total", map[string]string{"qtype": "TXT", "rcode": "NXDOMAIN"}, 2},
		{"acmebroker_dns_queries_total", map[string]string{"qtype": "A", "rcode": "REFUSED"}, 2},
		{"acmebroker_dns_queries_total", map[string]string{"qtype": "SOA", "rcode": "NOERROR"}, 2},
		{"acmebroker_api_requests_total", map[string]string{"route": "/register", "method": "POST", "code": "201"}, 1},
		{"acmebroker_api_requests_total", map[string]string{"route": "/update", "method": "POST", "code": "200"}, 1},
		{"acmebroker_api_requests_total", map[string]string{"route": "/update", "method": "POST", "code": "401"}, 1},
		{"acmebroker_api_requests_total", map[string]string{"route": "unmatched", "method": "GET", "code": "404"}, 1},
		{"acmebroker_api_request_duration_seconds", map[string]string{"route": "/update"}, 2},
		{"acmebroker_dns_cached_subdomains", nil, 1},
		{"acmebroker_dns_zone_serial", nil, float64(serial)},
		{"acmebroker_dns_zone_transfers_total", map[string]string{"qtype": "AXFR", "result": "ok"}, 0},
		{"acmebroker_dns_notifies_total", map[string]string{"result": "failed"}, 0},
		{"acmebroker_dns_rrl_dropped_total", nil, 0},
		{"acmebroker_dns_rrl_slipped_total", nil, 0},
	} {
		got, ok := value(mfs, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	// The UDP queries above each charged a rate-limit bucket.
	if got, ok := value(mfs, "acmebroker_dns_rrl_buckets", nil); !ok || got < 1 {
		t.Errorf("acmebroker_dns_rrl_buckets = %v (present %v), want at least 1 after UDP queries", got, ok)
	}
	// One query in 16 is timed.
	if got, ok := value(mfs, "acmebroker_dns_request_duration_seconds", nil); !ok || got > 8 {
		t.Errorf("dns latency histogram: count %v (present %v), want at most the 8 queries", got, ok)
	}
	if n := len(mfs["acmebroker_storage_errors_total"].GetMetric()); n != 0 {
		t.Errorf("%d storage error series after a run without failures", n)
	}
	for _, name := range []string{"go_goroutines", "process_open_fds"} {
		if mfs[name] == nil {
			t.Errorf("%s missing: runtime and process collectors not registered", name)
		}
	}
	for _, secret := range []string{a.Username, a.Password, a.Subdomain, txt, "nope", "example.com"} {
		if strings.Contains(body, secret) {
			t.Errorf("the scrape contains %q", secret)
		}
	}
}

// Off by default: no listener, no scrape URL.
func TestMetricsOffByDefault(t *testing.T) {
	rd := brokertest.Start(t, metricsConfig(t, ""))
	if rd.Metrics != "" {
		t.Fatalf("metrics served at %q with [metrics] listen unset", rd.Metrics)
	}
}

// A metrics address that cannot be had fails the start, naming the key,
// before anything is served.
func TestMetricsBusyPortFailsStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	served := false
	err = broker.Run(ctx, metricsConfig(t, ln.Addr().String()), slog.New(slog.DiscardHandler), func(broker.Ready) { served = true })
	if err == nil || !strings.Contains(err.Error(), "metrics.listen") || served {
		t.Fatalf("Run = %v (served %v), want a metrics.listen error before serving", err, served)
	}
}
