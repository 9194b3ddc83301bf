package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// NotifyTarget is a secondary told of every serial change (RFC 1996).
type NotifyTarget struct {
	Addr string   // host:port
	Key  *TSIGKey // signs the NOTIFY when not nil
}

// NotifyConfig configures a Notifier.
type NotifyConfig struct {
	Targets []NotifyTarget
	// Timeout is how long one NOTIFY waits for its answer; default 2 s.
	Timeout time.Duration
	// MinRetry and MaxRetry bound the backoff between attempts; defaults
	// 1 s and 60 s.
	MinRetry, MaxRetry time.Duration
	// Settle is how long after a change the NOTIFY waits, so that a burst
	// of updates goes out as one; 0: at once (a NOTIFY still unanswered
	// already folds the changes after it into the next one).
	Settle time.Duration
	// Observer, if not nil, is told the outcome of every attempt.
	Observer TransferObserver
}

// Notifier sends NOTIFY to the secondaries whenever the zone's serial moves.
type Notifier struct {
	h      *Handler
	src    ZoneSource
	cfg    NotifyConfig
	logger *slog.Logger
}

// NewNotifier returns a notifier for the handler's zone, watching the
// handler's record source (which must be a ZoneSource).
func (h *Handler) NewNotifier(cfg NotifyConfig) (*Notifier, error) {
	src, ok := h.src.(ZoneSource)
	if !ok {
		return nil, errors.New("dns notify: the record source gives no change signal")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.MinRetry <= 0 {
		cfg.MinRetry = time.Second
	}
	if cfg.MaxRetry < cfg.MinRetry {
		cfg.MaxRetry = max(cfg.MinRetry, 60*time.Second)
	}
	for _, tg := range cfg.Targets {
		if tg.Key != nil {
			if err := tg.Key.Check(); err != nil {
				return nil, fmt.Errorf("dns notify %s: %w", tg.Addr, err)
			}
		}
	}
	return &Notifier{h: h, src: src, cfg: cfg, logger: h.logger}, nil
}

// Run notifies every target of the current serial, then of every change,
// until ctx ends; it returns once every sender has stopped. Changes that
// come while a NOTIFY is outstanding are folded into the next one.
func (n *Notifier) Run(ctx context.Context) {
	if len(n.cfg.Targets) == 0 {
		<-ctx.Done()
		return
	}
	senders := make([]*sender, len(n.cfg.Targets))
	var wg sync.WaitGroup
	for i, tg := range n.cfg.Targets {
		s := &sender{n: n, target: tg, wake: make(chan struct{}, 1)}
		senders[i] = s
		wg.Go(func() { s.run(ctx) })
	}
	offer := func() {
		serial := n.src.Serial()
		for _, s := range senders {
			s.offer(serial)
		}
	}
	offer() // the serial may have moved while the broker was down
	settle := time.NewTimer(time.Hour)
	settle.Stop() // started by the first change
	settling := false
	for {
		select {
		case <-ctx.Done():
			settle.Stop()
			wg.Wait()
			return
		case <-n.src.Changed():
			if n.cfg.Settle <= 0 {
				offer()
			} else if !settling {
				settling = true
				settle.Reset(n.cfg.Settle)
			}
		case <-settle.C:
			settling = false
			offer()
		}
	}
}

// sender notifies one target, one NOTIFY at a time.
type sender struct {
	n      *Notifier
	target NotifyTarget
	wake   chan struct{}

	mu      sync.Mutex
	pending uint32 // newest serial not yet sent
	has     bool   // pending is set
}

func (s *sender) offer(serial uint32) {
	s.mu.Lock()
	s.pending, s.has = serial, true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take returns the pending serial, if any.
func (s *sender) take() (uint32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pending, s.has
	s.has = false
	return p, ok
}

func (s *sender) run(ctx context.Context) {
	var serial uint32
	busy := false // serial is to be sent
	delay := s.n.cfg.MinRetry
	failures := 0
	for {
		if !busy {
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
			}
			if serial, busy = s.take(); !busy {
				continue
			}
			delay, failures = s.n.cfg.MinRetry, 0
		}
		err := s.send(ctx, serial)
		if ctx.Err() != nil {
			return
		}
		if o := s.n.cfg.Observer; o != nil {
			if err == nil {
				o.NotifySent("acked")
			} else {
				o.NotifySent("failed")
			}
		}
		if err == nil {
			if failures > 0 {
				s.n.logger.Info("dns notify acknowledged after retries", "secondary", s.target.Addr, "serial", serial, "attempts", failures+1)
			}
			acked := serial
			if serial, busy = s.take(); busy { // changed while we were waiting
				busy = serial != acked
				delay, failures = s.n.cfg.MinRetry, 0
			}
			continue
		}
		failures++
		if failures == 1 || failures%10 == 0 {
			s.n.logger.Warn("dns notify not acknowledged; retrying", "secondary", s.target.Addr, "serial", serial, "attempts", failures, "retry_in", delay, "err", err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
			delay = min(delay*2, s.n.cfg.MaxRetry)
		case <-s.wake:
			t.Stop()
			if next, ok := s.take(); ok { // a newer serial supersedes this one
				serial, delay, failures = next, s.n.cfg.MinRetry, 0
			}
		}
	}
}

// send sends one NOTIFY for serial and waits for its acknowledgement.
func (s *sender) send(ctx context.Context, serial uint32) error {
	h := s.n.h
	m := new(dns.Msg)
	m.SetNotify(h.origin)
	soa := h.soa(h.origin, h.cfg.SOATTL).(*dns.SOA)
	soa.Serial = serial
	m.Answer = []dns.RR{soa}
	c := &dns.Client{Net: "udp", Timeout: s.n.cfg.Timeout}
	if k := s.target.Key; k != nil {
		c.TsigSecret = map[string]string{k.fqdnName(): k.Secret}
		m.SetTsig(k.fqdnName(), k.algorithm(), 300, time.Now().Unix())
	}
	ctx, cancel := context.WithTimeout(ctx, s.n.cfg.Timeout)
	defer cancel()
	r, _, err := c.ExchangeContext(ctx, m, s.target.Addr)
	if err != nil {
		return fmt.Errorf("notify %s: %w", s.target.Addr, err)
	}
	if r.Opcode != dns.OpcodeNotify || r.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("notify %s: answered %s (is the broker allowed to notify it, with this key?)", s.target.Addr, dns.RcodeToString[r.Rcode])
	}
	return nil
}
