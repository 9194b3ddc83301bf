package dnsserver_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/storage"
)

// notifySink is a UDP endpoint taking NOTIFY like a secondary: it refuses
// the first `refuse` ones, then acknowledges, and records the serials it
// acknowledged.
type notifySink struct {
	mu     sync.Mutex
	refuse int
	seen   int
	got    chan uint32
}

func (s *notifySink) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	s.mu.Lock()
	s.seen++
	ok := r.Opcode == dns.OpcodeNotify && r.IsTsig() != nil && w.TsigStatus() == nil && len(r.Answer) == 1 && r.Authoritative
	if !ok || s.seen <= s.refuse {
		m.Rcode = dns.RcodeRefused
	}
	s.mu.Unlock()
	if r.IsTsig() != nil {
		m.SetTsig(keyName, dns.HmacSHA256, 300, time.Now().Unix())
	}
	_ = w.WriteMsg(m)
	if m.Rcode == dns.RcodeSuccess {
		s.got <- r.Answer[0].(*dns.SOA).Serial
	}
}

func startSink(t *testing.T, refuse int) (*notifySink, string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sink := &notifySink{refuse: refuse, got: make(chan uint32, 100)}
	srv := &dns.Server{PacketConn: pc, Handler: sink, TsigSecret: map[string]string{keyName: secret}}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return sink, pc.LocalAddr().String()
}

func waitSerial(t *testing.T, sink *notifySink, want uint32) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case s := <-sink.got:
			if s == want {
				return
			}
		case <-timeout:
			t.Fatalf("no NOTIFY for serial %d acknowledged", want)
		}
	}
}

func TestNotifierRetriesUntilAcked(t *testing.T) {
	s := startXfr(t, "127.0.0.1/32", true, map[string][]string{"web1": {"v1"}})
	sink, addr := startSink(t, 2)
	key := testKey
	n, err := s.h.NewNotifier(dnsserver.NotifyConfig{
		Targets: []dnsserver.NotifyTarget{{Addr: addr, Key: &key}}, Observer: s.obs,
		Timeout: time.Second, MinRetry: 10 * time.Millisecond, MaxRetry: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitSerial(t, sink, 100) // at start, after two refusals
	if s.obs.get("notify failed", 2) != 2 || s.obs.get("notify acked", 1) != 1 {
		t.Fatal("observer not told of every attempt")
	}
	s.idx.Set("web1", []storage.TXTRecord{{Value: "v2", UpdatedAt: time.Now()}}, 101)
	waitSerial(t, sink, 101)
	// A burst ends with the newest serial acknowledged.
	for i := uint32(102); i < 150; i++ {
		s.idx.Set("web1", []storage.TXTRecord{{Value: "v", UpdatedAt: time.Now()}}, i)
	}
	waitSerial(t, sink, 149)
}

func TestNotifierStopsWhileRetrying(t *testing.T) {
	s := startXfr(t, "127.0.0.1/32", true, nil)
	_, addr := startSink(t, 1_000_000)
	n, err := s.h.NewNotifier(dnsserver.NotifyConfig{Targets: []dnsserver.NotifyTarget{{Addr: addr}}, Observer: s.obs,
		MinRetry: time.Millisecond, MaxRetry: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()
	if s.obs.get("notify failed", 3) < 3 {
		t.Fatal("unsigned NOTIFY refused by the sink but not retried")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// TestNotifierSettleCoalesces: with a settle time, a burst of changes goes
// out as few NOTIFYs, the last for the newest serial.
func TestNotifierSettleCoalesces(t *testing.T) {
	s := startXfr(t, "127.0.0.1/32", true, map[string][]string{"web1": {"v1"}})
	sink, addr := startSink(t, 0)
	key := testKey
	n, err := s.h.NewNotifier(dnsserver.NotifyConfig{Targets: []dnsserver.NotifyTarget{{Addr: addr, Key: &key}},
		Settle: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitSerial(t, sink, 100)
	for i := uint32(101); i <= 200; i++ {
		s.idx.Set("web1", []storage.TXTRecord{{Value: "v", UpdatedAt: time.Now()}}, i)
	}
	waitSerial(t, sink, 200)
	sink.mu.Lock()
	seen := sink.seen
	sink.mu.Unlock()
	if seen > 50 {
		t.Fatalf("%d NOTIFYs for a burst of 100 changes", seen)
	}
}
