package dnsserver

import (
	"net"
	"os"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// handoff is the net.PacketConn through which the fast path's UDP loops
// hand the queries they do not take (see ordinaryQuery) to a miekg/dns
// server running the full handler chain: everything that server does
// (FORMERR for what does not unpack, TSIG, transfers, the middleware)
// stays as it was. Its reads come from the loops; its writes go out
// through the listen address's first socket, from the address the query
// was sent to when the socket is bound to a wildcard address.
type handoff struct {
	conn *net.UDPConn // replies go out through it
	in   chan slowPacket
	closer

	mu       sync.Mutex
	deadline time.Time
	wake     chan struct{} // closed when the deadline changes
	// oob holds the control message for each reply still owed to a
	// query from a wildcard socket (its source address), by the address
	// handed out with the query, which the server gives back to WriteTo.
	oob map[*net.UDPAddr][]byte
}

type slowPacket struct {
	data []byte
	addr *net.UDPAddr
}

// handoffQueue bounds the queries waiting for the full server; more are
// dropped, as a full socket buffer would.
const handoffQueue = 512

func newHandoff(conn *net.UDPConn) *handoff {
	return &handoff{conn: conn, in: make(chan slowPacket, handoffQueue), closer: newCloser(),
		wake: make(chan struct{}), oob: make(map[*net.UDPAddr][]byte)}
}

// pass queues a query for the full server; oob is the control message its
// reply must carry (nil: none). It reports false if the queue was full.
func (c *handoff) pass(data []byte, addr *net.UDPAddr, oob []byte) bool {
	if oob != nil {
		c.mu.Lock()
		c.oob[addr] = oob
		c.mu.Unlock()
	}
	select {
	case c.in <- slowPacket{data, addr}:
		return true
	default:
		if oob != nil {
			c.forget(addr)
		}
		return false
	}
}

// forget drops what is kept for a query from addr once it has been
// answered, or the handler chose not to answer.
func (c *handoff) forget(addr net.Addr) {
	if ua, ok := addr.(*net.UDPAddr); ok {
		c.mu.Lock()
		delete(c.oob, ua)
		c.mu.Unlock()
	}
}

func (c *handoff) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		c.mu.Lock()
		dl, wake := c.deadline, c.wake
		c.mu.Unlock()
		var timeout <-chan time.Time
		var t *time.Timer
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, nil, os.ErrDeadlineExceeded
			}
			t = time.NewTimer(d)
			timeout = t.C
		}
		select {
		case p := <-c.in:
			stopTimer(t)
			return copy(b, p.data), p.addr, nil
		case <-c.done:
			stopTimer(t)
			return 0, nil, c.reason()
		case <-wake: // a new deadline: wait again with it
			stopTimer(t)
		case <-timeout:
			return 0, nil, os.ErrDeadlineExceeded
		}
	}
}

func (c *handoff) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, net.InvalidAddrError("not a UDP address")
	}
	c.mu.Lock()
	oob := c.oob[ua]
	delete(c.oob, ua)
	c.mu.Unlock()
	n, _, err := c.conn.WriteMsgUDP(b, oob, ua)
	return n, err
}

// Close ends the full server's reads; the socket stays open (the Server
// closes it).
func (c *handoff) Close() error {
	c.stop(nil)
	return nil
}

func (c *handoff) LocalAddr() net.Addr { return c.conn.LocalAddr() }

func (c *handoff) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

func (c *handoff) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	close(c.wake)
	c.wake = make(chan struct{})
	c.mu.Unlock()
	return nil
}

func (c *handoff) SetWriteDeadline(time.Time) error { return nil }

// handoffHandler forgets a query's reply address once the handler chain
// is done with it, answered or not.
type handoffHandler struct {
	next dns.Handler
	c    *handoff
}

func (h handoffHandler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	h.next.ServeDNS(w, r)
	h.c.forget(w.RemoteAddr())
}

// closer is the end of a handoff: done is closed once, and reason says
// why (the first error given to stop, or net.ErrClosed).
type closer struct {
	done  chan struct{}
	once  sync.Once
	errMu sync.Mutex
	err   error
}

func newCloser() closer { return closer{done: make(chan struct{})} }

// stop ends the handoff with err (nil: closed normally).
func (c *closer) stop(err error) {
	c.errMu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.errMu.Unlock()
	c.once.Do(func() { close(c.done) })
}

func (c *closer) reason() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if c.err == nil {
		return net.ErrClosed
	}
	return c.err
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}
