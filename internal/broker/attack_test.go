package broker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/internal/broker/brokertest"
	"github.com/acmebroker/acmebroker/internal/config"
	"github.com/acmebroker/acmebroker/internal/testenv"
)

// memDir is a directory on a memory file system (/dev/shm) when there is
// one, else the test's temporary directory: the load-and-attack test
// measures the API under a connection flood, and an fsync stalled by
// other tests' disk writes (the whole suite runs at once in CI) would
// measure the disk instead.
func memDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "acmebroker-attack-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// TestLoadAndAttack (issue 12): one source (127.0.0.2 to 127.0.0.33, one
// /24) holds 5,000 idle API connections, each after one GET, and tries to
// hog every DNS-over-TCP slot with 640 connections; meanwhile a second
// source (127.0.1.1) registers, updates, asks over TCP and checks /health,
// and every one of those must be answered within 1 s. The attacker keeps
// at most api.connections_per_source API connections and tcp_per_source
// DNS ones. Bounded: the attack is set up in a few seconds and the second
// source's rounds take about one second each.
func TestLoadAndAttack(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	const (
		apiConns = 5000
		dnsConns = 640
		sources  = 32 // 127.0.0.2 ... 127.0.0.33: one /24
		rounds   = 8
		within   = time.Second
	)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < 2*(apiConns+dnsConns) {
		testenv.Skipf(t, "needs an open-files limit of %d (ulimit -n), have %d (%v)", 2*(apiConns+dnsConns), lim.Cur, err)
	}
	cfg := brokertest.Config(t, "", func(c *config.Config) { c.Storage.DSN = filepath.Join(memDir(t), "broker.db") })
	rd := brokertest.Start(t, cfg)
	apiAddr := strings.TrimPrefix(rd.API, "http://")

	// The attack: connections opened one after the other (no goroutine
	// each), held open until the test ends.
	var held []net.Conn
	resetAtDial := 0
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	// A dial fails with a reset when the broker refused the connection
	// before the dialer looked (loopback is that fast): counted as refused.
	next := 0
	dial := func(addr string) net.Conn {
		src := fmt.Sprintf("127.0.0.%d", 2+next%sources)
		next++
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		switch {
		case errors.Is(err, syscall.EADDRNOTAVAIL):
			testenv.Skipf(t, "cannot connect from %s (%v): needs 127.0.0.0/8 on loopback (Linux)", src, err)
		case errors.Is(err, syscall.ECONNRESET):
			resetAtDial++
			return nil
		case err != nil:
			t.Fatalf("attacker's dial from %s: %v", src, err)
		}
		held = append(held, c)
		return c
	}
	start := time.Now()
	var apiHeld, dnsHeld []net.Conn
	for range apiConns {
		if c := dial(apiAddr); c != nil {
			_, _ = io.WriteString(c, "GET /health HTTP/1.1\r\nHost: broker\r\n\r\n") // one GET, then idle
			apiHeld = append(apiHeld, c)
		}
	}
	q := new(dns.Msg)
	q.SetQuestion(cfg.DNS.Zone+".", dns.TypeSOA)
	packed, _ := q.Pack()
	frame := append([]byte{byte(len(packed) >> 8), byte(len(packed))}, packed...)
	for range dnsConns {
		if c := dial(rd.DNS[0]); c != nil {
			_, _ = c.Write(frame) // one query, then trickle nothing
			dnsHeld = append(dnsHeld, c)
		}
	}
	t.Logf("attack set up in %s: %d API and %d DNS connections tried from 127.0.0.2-%d (%d reset before the dial returned)",
		time.Since(start).Round(time.Millisecond), apiConns, dnsConns, 1+sources, resetAtDial)

	// While the second source works, the attacker keeps at it: a new API
	// connection every 10 ms (refused), and a query every
	// 500 ms on each DNS connection it holds (the slow trickle).
	stop := make(chan struct{})
	pressed := make(chan int)
	go func() {
		n := 0
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				pressed <- n
				return
			case <-tick.C:
				for _, c := range dnsHeld {
					_ = c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
					_, _ = c.Write(frame)
				}
			default:
			}
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%sources))}, Timeout: time.Second}
			if c, err := d.Dial("tcp", apiAddr); err == nil {
				n++
				c.Close()
			}
			time.Sleep(10 * time.Millisecond) // the attacker's pace, not a wait for the broker
		}
	}()

	// The second source, on its own /24.
	legit := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.1.1")}, Timeout: within}
	client := &http.Client{Timeout: within, Transport: &http.Transport{DialContext: legit.DialContext}}
	dnsClient := &dns.Client{Net: "tcp", Timeout: within, Dialer: legit}
	slowest := map[string]time.Duration{}
	timed := func(what string, f func() error) {
		t.Helper()
		begin := time.Now()
		if err := f(); err != nil {
			t.Fatalf("%s while under attack: %v (after %s)", what, err, time.Since(begin).Round(time.Millisecond))
		}
		took := time.Since(begin)
		if took > within {
			t.Fatalf("%s while under attack took %s", what, took)
		}
		slowest[what] = max(slowest[what], took)
	}
	post := func(path, body string, hdr map[string]string, want int, out any) error {
		req, _ := http.NewRequestWithContext(context.Background(), "POST", rd.API+path, strings.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			return fmt.Errorf("%d %s", resp.StatusCode, b)
		}
		if out != nil {
			return json.Unmarshal(b, out)
		}
		return nil
	}
	pace := time.NewTicker(400 * time.Millisecond) // the rounds spread over the attack
	defer pace.Stop()
	for i := range rounds {
		<-pace.C
		var a struct{ Username, Password, Subdomain, Fulldomain string }
		timed("register", func() error { return post("/register", "", nil, 201, &a) })
		val := fmt.Sprintf("attack%037d", i)
		timed("update", func() error {
			return post("/update", fmt.Sprintf(`{"subdomain":%q,"txt":%q}`, a.Subdomain, val),
				map[string]string{"X-Api-User": a.Username, "X-Api-Key": a.Password}, 200, nil)
		})
		timed("DNS query over TCP", func() error {
			m := new(dns.Msg)
			m.SetQuestion(a.Fulldomain+".", dns.TypeTXT)
			r, _, err := dnsClient.Exchange(m, rd.DNS[0])
			if err != nil {
				return err
			}
			if len(r.Answer) != 1 || r.Answer[0].(*dns.TXT).Txt[0] != val {
				return fmt.Errorf("answer %v", r)
			}
			return nil
		})
		timed("GET /health", func() error {
			resp, err := client.Get(rd.API + "/health")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				b, _ := io.ReadAll(resp.Body)
				return fmt.Errorf("%d %s", resp.StatusCode, b)
			}
			return nil
		})
	}

	close(stop)
	t.Logf("%d more API connections dialled while the second source worked; its slowest answers: %v", <-pressed, slowest)

	// What the attacker got: at most its per-source share of each. Every
	// connection is read against one deadline, so this ends within 2 s.
	deadline := time.Now().Add(2 * time.Second)
	answered := func(conns []net.Conn, got func(*bufio.Reader) bool) int {
		n := 0
		for _, c := range conns {
			_ = c.SetReadDeadline(deadline)
			if got(bufio.NewReader(c)) {
				n++
			}
		}
		return n
	}
	apiAnswered := answered(apiHeld, func(br *bufio.Reader) bool {
		resp, err := http.ReadResponse(br, nil)
		return err == nil && resp.StatusCode == 200
	})
	dnsAnswered := answered(dnsHeld, func(br *bufio.Reader) bool {
		var l [2]byte
		_, err := io.ReadFull(br, l[:]) // the first answer's length: answered at least once
		return err == nil
	})
	t.Logf("the attacker's /24 got %d of %d API connections and %d of %d DNS TCP connections answered", apiAnswered, apiConns, dnsAnswered, dnsConns)
	if apiAnswered == 0 || apiAnswered > cfg.API.ConnectionsPerSource {
		t.Errorf("attacker's API connections answered: %d, want 1 to %d (api.connections_per_source)", apiAnswered, cfg.API.ConnectionsPerSource)
	}
	if dnsAnswered == 0 || dnsAnswered > cfg.DNS.TCPPerSource {
		t.Errorf("attacker's DNS TCP connections answered: %d, want 1 to %d (dns.tcp_per_source, per /24)", dnsAnswered, cfg.DNS.TCPPerSource)
	}
}
