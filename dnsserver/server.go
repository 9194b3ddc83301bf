package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// Timeouts and limits for TCP clients: a slow or idle client cannot hold a
// connection for long.
const (
	tcpReadTimeout   = 2 * time.Second
	tcpWriteTimeout  = 2 * time.Second
	tcpIdleTimeout   = 8 * time.Second
	tcpMaxQueries    = 256
	tcpMaxLifetime   = 30 * time.Second
	udpReadSize      = 4096
	listenAttempts   = 20 // port 0: tries to find a port free on both UDP and TCP
	shutdownDeadline = 5 * time.Second
)

// Server holds the bound UDP and TCP sockets of every listen address.
type Server struct {
	pcs   []net.PacketConn
	lns   []net.Listener
	addrs []string
	tsig  map[string]string // TSIG secrets by key name (SetTSIG)
	// TCP limits (LimitTCP, tcplimit.go); zero: the defaults above.
	tcpLimits TCPLimits
	tcpLogger *slog.Logger
}

// Listen binds UDP and TCP on each address (the same port for both; port 0
// picks one free on both). Nothing is served until Serve. An address that
// cannot be had fails the whole call with an error naming it.
func Listen(addrs []string) (*Server, error) {
	if len(addrs) == 0 {
		return nil, errors.New("dns.listen: no address to listen on")
	}
	s := &Server{}
	for _, a := range addrs {
		pc, ln, err := listenPair(a)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.pcs = append(s.pcs, pc)
		s.lns = append(s.lns, ln)
		s.addrs = append(s.addrs, pc.LocalAddr().String())
	}
	return s, nil
}

func listenPair(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dns.listen %q: %w (write host:port, e.g. \"0.0.0.0:53\" or \"[::1]:53\")", addr, err)
	}
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, listenError(addr, "udp", err)
		}
		actual := strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
		ln, err := net.Listen("tcp", net.JoinHostPort(host, actual))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port == "0" && errors.Is(err, syscall.EADDRINUSE) && attempt < listenAttempts {
			continue // the port picked for UDP is taken for TCP; pick again
		}
		return nil, nil, listenError(net.JoinHostPort(host, actual), "tcp", err)
	}
}

func listenError(addr, network string, err error) error {
	const other = "choose another address in [dns] listen"
	hint := other
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		hint = "another process is using it; stop it or " + other
		// The usual suspects hold port 53 only; on another port they mislead.
		if _, port, _ := net.SplitHostPort(addr); port == "53" {
			hint = "another process is using it (often systemd-resolved or dnsmasq, which hold port 53); stop it, listen on the public address only, or " + other
		}
	case errors.Is(err, syscall.EACCES):
		hint = "ports below 1024 need root or CAP_NET_BIND_SERVICE (see deploy/acmebroker.service), or " + other
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		hint = "no interface has that address; " + other
	}
	return fmt.Errorf("dns.listen %s (%s): %w (%s)", addr, network, err, hint)
}

// Addrs returns the bound addresses as host:port, each serving UDP and TCP.
func (s *Server) Addrs() []string { return append([]string(nil), s.addrs...) }

// Serve answers queries with h on every socket until ctx ends, then stops
// accepting, lets in-flight queries finish (bounded) and closes the sockets.
// It returns early with an error if a socket fails.
func (s *Server) Serve(ctx context.Context, h dns.Handler) error {
	var srvs []*dns.Server
	for _, pc := range s.pcs {
		srvs = append(srvs, &dns.Server{PacketConn: pc, Handler: h, UDPSize: udpReadSize, MsgAcceptFunc: acceptMsg, TsigSecret: s.tsig})
	}
	for _, ln := range s.lns {
		srvs = append(srvs, &dns.Server{
			Listener: s.tcpListener(ln), Handler: h, MsgAcceptFunc: acceptMsg,
			ReadTimeout: tcpReadTimeout, WriteTimeout: tcpWriteTimeout,
			IdleTimeout:   s.tcpIdle,
			MaxTCPQueries: s.tcpQueries(),
			TsigSecret:    s.tsig,
		})
	}
	type exit struct {
		i   int
		err error
	}
	started := make(chan int, len(srvs))
	exited := make(chan exit, len(srvs))
	for i, srv := range srvs {
		srv.NotifyStartedFunc = func() { started <- i }
		go func() { exited <- exit{i, srv.ActivateAndServe()} }()
	}

	// Wait until every server has started or failed, so that each one
	// shut down below has really started.
	running := make([]bool, len(srvs))
	var firstErr error
	settled, gone := 0, 0
	for settled < len(srvs) {
		select {
		case i := <-started:
			running[i] = true
			settled++
		case e := <-exited:
			gone++
			if firstErr == nil && e.err != nil {
				firstErr = fmt.Errorf("dns %s: %w", s.addrs[e.i%len(s.addrs)], e.err)
			}
			if !running[e.i] {
				settled++
			}
			running[e.i] = false
		}
	}
	if firstErr == nil {
		select {
		case <-ctx.Done():
		case e := <-exited:
			gone++
			running[e.i] = false
			if e.err != nil {
				firstErr = fmt.Errorf("dns %s: %w", s.addrs[e.i%len(s.addrs)], e.err)
			}
		}
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), shutdownDeadline)
	defer cancel()
	for i, srv := range srvs {
		if running[i] {
			_ = srv.ShutdownContext(shutCtx)
		}
	}
	for gone < len(srvs) {
		select {
		case <-exited:
			gone++
		case <-shutCtx.Done():
			gone = len(srvs)
		}
	}
	s.Close()
	return firstErr
}

// Close releases the sockets (for a server never served, or after Serve).
func (s *Server) Close() {
	for _, pc := range s.pcs {
		_ = pc.Close()
	}
	for _, ln := range s.lns {
		_ = ln.Close()
	}
}

// acceptMsg decides which packets reach the handler. Responses are dropped
// (never answer an answer: no loops, no reflection); unknown opcodes get
// NOTIMP; a query must carry exactly one question.
func acceptMsg(dh dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	if dh.Bits&qr != 0 {
		return dns.MsgIgnore
	}
	switch int(dh.Bits>>11) & 0xF {
	case dns.OpcodeQuery:
		if dh.Qdcount != 1 || dh.Ancount > 1 || dh.Nscount > 1 || dh.Arcount > 2 {
			return dns.MsgReject
		}
	case dns.OpcodeNotify, dns.OpcodeUpdate:
		if dh.Qdcount != 1 {
			return dns.MsgReject
		}
	default:
		return dns.MsgRejectNotImplemented
	}
	return dns.MsgAccept
}
