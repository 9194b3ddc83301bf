package dnsserver

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// The fast path over TCP: each connection is read through a buffer, so
// that the queries a client pipelines (RFC 7766) come in with one read;
// ordinary ones are answered from the cache or the handler inline, and the
// answers go out together with one write when no more queries are
// waiting. At the first query that is not ordinary (a zone transfer, TSIG,
// anything odd) the connection, with what was read of it and not yet
// answered, is handed to the miekg/dns server running the full handler
// chain, which serves it from then on.

// startTCP starts the fast path's accept loops on every listen address,
// behind the TCP limits (LimitTCP). It returns the listeners the full
// servers accept from (the connections handed over) and a stop function
// that waits for the loops and their connections once Close has closed
// the sockets. Without a fast path the full servers accept the
// connections themselves.
func (s *Server) startTCP() ([]net.Listener, func()) {
	var out []net.Listener
	if s.fast == nil {
		for _, ln := range s.lns {
			out = append(out, s.tcpListener(ln))
		}
		return out, func() {}
	}
	t := &tcpFront{f: s.fast, idle: s.tcpIdle(), maxQueries: s.tcpQueries(), conns: map[net.Conn]struct{}{}}
	for _, ln := range s.lns {
		full := newConnHandoff(ln.Addr())
		out = append(out, full)
		t.wg.Go(func() { t.accept(s.tcpListener(ln), full) })
	}
	return out, t.stop
}

// tcpFront serves the TCP connections of every listen address.
type tcpFront struct {
	f          *FastPath
	idle       time.Duration
	maxQueries int
	wg         sync.WaitGroup

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	stopped bool
}

// accept serves ln's connections until it is closed.
func (t *tcpFront) accept(ln net.Listener, full *connHandoff) {
	delay := time.Duration(0)
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: wait a little, as
				// net/http does, rather than spin.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			if !errors.Is(err, net.ErrClosed) {
				full.stop(err) // the full server returns it
			}
			return
		}
		delay = 0
		if !t.track(c) {
			_ = c.Close()
			return
		}
		t.wg.Go(func() {
			defer t.untrack(c)
			t.serve(c, full)
		})
	}
}

func isTemporary(err error) bool {
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}

func (t *tcpFront) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *tcpFront) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// stop ends the connections being served (their reads fail at once) and
// waits for them and the accept loops (the listeners are closed by then).
func (t *tcpFront) stop() {
	t.mu.Lock()
	t.stopped = true
	for c := range t.conns {
		_ = c.SetReadDeadline(time.Unix(1, 0))
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// tcpBufs are one connection's buffers, reused across connections.
type tcpBufs struct {
	r   *bufio.Reader
	out []byte
	msg []byte // a query larger than r's buffer
}

const tcpReadBuffer = 4096

var tcpBufPool = sync.Pool{New: func() any {
	return &tcpBufs{r: bufio.NewReaderSize(nil, tcpReadBuffer), out: make([]byte, 0, 16<<10)}
}}

// serve answers c's queries until it closes, idles out, reaches the
// query limit, or is handed to the full server.
func (t *tcpFront) serve(c net.Conn, full *connHandoff) {
	var remote netip.AddrPort
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		remote = ta.AddrPort()
	}
	sc := t.f.scratch.Get().(*fastScratch)
	b := tcpBufPool.Get().(*tcpBufs)
	b.r.Reset(c)
	defer func() {
		b.r.Reset(nil)
		b.out = b.out[:0]
		tcpBufPool.Put(b)
		t.f.scratch.Put(sc)
	}()
	var counts outcomes
	defer t.f.flush(&counts)
	timeout := tcpReadTimeout // the first query; then the idle timeout
	var now time.Time
	for q := 0; q < t.maxQueries; q++ {
		// Before waiting for more, send what is answered.
		waited := b.r.Buffered() < 2
		if waited {
			if !t.write(c, b) {
				_ = c.Close()
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(timeout))
		}
		var l [2]byte
		if _, err := io.ReadFull(b.r, l[:]); err != nil {
			t.write(c, b)
			_ = c.Close()
			return
		}
		if waited || q == 0 {
			now = t.f.now() // the queries of one read arrived together
		}
		n := int(binary.BigEndian.Uint16(l[:]))
		var p []byte
		var err error
		if n <= b.r.Size() {
			if b.r.Buffered() < n {
				_ = c.SetReadDeadline(time.Now().Add(tcpReadTimeout))
			}
			p, err = b.r.Peek(n)
		} else {
			if cap(b.msg) < n {
				b.msg = make([]byte, n)
			}
			p = b.msg[:n]
			_, err = io.ReadFull(b.r, p)
		}
		if err != nil {
			t.write(c, b)
			_ = c.Close()
			return
		}
		start := len(b.out)
		out := slices.Grow(append(b.out, 0, 0), 0xffff) // room for the largest answer
		k, qtype, rcode, o := t.f.answer(sc, p, remote, true, now.UnixNano(), out[len(out):len(out)+0xffff])
		counts.count(o)
		if o == toFull {
			b.out = out[:start]
			if !t.write(c, b) {
				_ = c.Close()
				return
			}
			t.handOff(c, b, l, p, n, full)
			return
		}
		if n <= b.r.Size() {
			_, _ = b.r.Discard(n)
		}
		t.f.observe(qtype, rcode)
		if k == 0 {
			b.out = out[:start]
			continue
		}
		binary.BigEndian.PutUint16(out[start:], uint16(k))
		b.out = out[:len(out)+k]
		timeout = t.idle
	}
	t.write(c, b)
	_ = c.Close()
}

// write sends the answers gathered in b.out; false if that failed.
func (t *tcpFront) write(c net.Conn, b *tcpBufs) bool {
	if len(b.out) == 0 {
		return true
	}
	_ = c.SetWriteDeadline(time.Now().Add(tcpWriteTimeout))
	_, err := c.Write(b.out)
	b.out = b.out[:0]
	return err == nil
}

// handOff gives c to the full server: its reads start with the query p
// (length prefix l, n bytes) and whatever else was read and not answered.
func (t *tcpFront) handOff(c net.Conn, b *tcpBufs, l [2]byte, p []byte, n int, full *connHandoff) {
	pending := append(append([]byte(nil), l[:]...), p...)
	if n <= b.r.Size() {
		_, _ = b.r.Discard(n)
	}
	if k := b.r.Buffered(); k > 0 {
		rest, _ := b.r.Peek(k)
		pending = append(pending, rest...)
	}
	// Release the connection from this loop's shutdown: the full server
	// tracks it from now on.
	t.untrack(c)
	_ = c.SetReadDeadline(time.Time{})
	if !full.pass(&replayConn{Conn: c, pending: pending}) {
		_ = c.Close()
	}
}

// replayConn is a connection whose reads first return bytes already read
// from it.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// connHandoff is the net.Listener the full server accepts handed-over
// connections from.
type connHandoff struct {
	addr net.Addr
	in   chan net.Conn
	closer
}

func newConnHandoff(addr net.Addr) *connHandoff {
	return &connHandoff{addr: addr, in: make(chan net.Conn, 64), closer: newCloser()}
}

// pass hands c over; false if the full server has stopped or is behind.
func (h *connHandoff) pass(c net.Conn) bool {
	select {
	case <-h.done:
		return false
	default:
	}
	select {
	case h.in <- c:
		return true
	case <-h.done:
		return false
	case <-time.After(tcpReadTimeout):
		return false
	}
}

func (h *connHandoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.in:
		return c, nil
	case <-h.done:
		// Connections handed over but never accepted are closed.
		for {
			select {
			case c := <-h.in:
				_ = c.Close()
			default:
				return nil, h.reason()
			}
		}
	}
}

func (h *connHandoff) Close() error   { h.stop(nil); return nil }
func (h *connHandoff) Addr() net.Addr { return h.addr }
