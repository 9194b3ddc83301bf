package dnsserver

import (
	"fmt"
	"net"
	"runtime"
	"sync"

	"github.com/miekg/dns"
)

// EnableFastPath makes Serve answer queries through f (see fastpath.go):
// over UDP, one goroutine per socket reads and answers them in batches;
// over TCP, each connection's pipelined queries are read and answered
// together (tcpfast.go). Queries that are not ordinary go to the full
// server. Call it before Serve. Without Linux, UDP stays as it was.
func (s *Server) EnableFastPath(f *FastPath) { s.fast = f }

// udpServe is what a miekg/dns server reads UDP queries from, and the
// handler it answers them with.
type udpServe struct {
	pc net.PacketConn
	h  dns.Handler
}

// startUDP starts the fast path's loops on every listen address. It
// returns what the full servers read (the queries the loops hand over)
// and a stop function that closes the extra sockets and waits for the
// loops (after Close has closed the first socket of each address).
// Without a fast path the full servers read the sockets themselves.
func (s *Server) startUDP(h dns.Handler) ([]udpServe, func()) {
	var out []udpServe
	if s.fast == nil || !fastUDPSupported {
		for _, pc := range s.pcs {
			out = append(out, udpServe{pc, h})
		}
		return out, func() {}
	}
	var (
		wg    sync.WaitGroup
		extra []net.PacketConn
	)
	n := s.fast.sockets
	if n == 0 {
		n = runtime.GOMAXPROCS(0)
	}
	for _, pc := range s.pcs {
		uc, ok := pc.(*net.UDPConn)
		if !ok {
			out = append(out, udpServe{pc, h})
			continue
		}
		full := newHandoff(uc)
		conns := []*net.UDPConn{uc}
		for i := 1; i < n; i++ {
			more, err := listenUDP(uc.LocalAddr().String())
			if err != nil {
				s.fast.logger.Warn("dns fast path: fewer UDP sockets than asked", "addr", uc.LocalAddr().String(), "sockets", i, "err", err)
				break
			}
			conns = append(conns, more.(*net.UDPConn))
		}
		var loops []*udpLoop
		for _, c := range conns {
			l, err := newUDPLoop(s.fast, c, full, wildcard(c))
			if err != nil {
				s.fast.logger.Warn("dns fast path: off for this address", "addr", c.LocalAddr().String(), "err", err)
				loops = nil
				break
			}
			loops = append(loops, l)
		}
		if loops == nil { // every socket must be read: the full server reads the first, the others go
			for _, c := range conns[1:] {
				_ = c.Close()
			}
			out = append(out, udpServe{pc, h})
			continue
		}
		for _, c := range conns[1:] {
			extra = append(extra, c)
		}
		for _, l := range loops {
			wg.Go(func() {
				if err := l.run(); err != nil {
					full.stop(fmt.Errorf("fast path: %w", err)) // the full server returns it
				}
			})
		}
		out = append(out, udpServe{full, handoffHandler{h, full}})
	}
	return out, func() {
		for _, pc := range extra {
			_ = pc.Close()
		}
		wg.Wait()
	}
}
