//go:build linux

package dnsserver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The fast path's UDP loop: one goroutine per socket reads up to
// udpBatch datagrams with one recvmmsg, answers each in turn and sends
// the answers with one sendmmsg. recvmmsg and sendmmsg are called
// directly (golang.org/x/sys/unix) on buffers allocated once: the loop
// allocates nothing per packet (golang.org/x/net/ipv4's ReadBatch would
// allocate the source address of every datagram).

const fastUDPSupported = true

const (
	udpBatch      = 64
	udpReadBuffer = 4 << 20
	sockaddrSize  = unix.SizeofSockaddrInet6
	// oobSize holds one IP_PKTINFO or IPV6_PKTINFO control message.
	oobSize = 64
)

// listenUDP binds a UDP socket with SO_REUSEPORT, so that the fast path
// can bind more sockets to the same address (each with its own queue,
// the kernel spreading the queries between them). Only sockets of the
// same user can join.
func listenUDP(addr string) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: reusePort}
	return lc.ListenPacket(context.Background(), "udp", addr)
}

func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}

// udpLoop serves one socket.
type udpLoop struct {
	f       *FastPath
	conn    *net.UDPConn
	rc      syscall.RawConn
	full    *handoff
	pktinfo bool // bound to a wildcard address: answers leave from the address asked
	sc      *fastScratch
	outSize int // room for one answer

	rh    []unix.Mmsghdr
	riov  []unix.Iovec
	names []byte // udpBatch source addresses, sockaddrSize each
	roob  []byte
	rbuf  []byte

	sh   []unix.Mmsghdr
	siov []unix.Iovec
	soob []byte
	sbuf []byte

	recvF, sendF func(fd uintptr) bool
	rn           int
	rerr         syscall.Errno
	ns, sent     int
	serr         syscall.Errno
}

// newUDPLoop prepares the loop of conn. With pktinfo (for a socket bound
// to a wildcard address: see wildcard) answers leave from the address the query
// was sent to, as miekg/dns does.
func newUDPLoop(f *FastPath, conn *net.UDPConn, full *handoff, pktinfo bool) (*udpLoop, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	l := &udpLoop{f: f, conn: conn, rc: rc, full: full, sc: f.newScratch(),
		outSize: max(dns512, int(f.h.cfg.MaxUDPSize)), pktinfo: pktinfo}
	if pktinfo {
		if err := setPktinfo(rc); err != nil {
			return nil, fmt.Errorf("asking for the destination address of queries: %w", err)
		}
	}
	// Room for the queries of a burst, or of a moment the process waits
	// for the CPU: past the socket's buffer they are lost (NSD takes 2
	// MiB). The kernel caps it at net.core.rmem_max.
	_ = conn.SetReadBuffer(udpReadBuffer)
	l.rh = make([]unix.Mmsghdr, udpBatch)
	l.riov = make([]unix.Iovec, udpBatch)
	l.names = make([]byte, udpBatch*sockaddrSize)
	l.roob = make([]byte, udpBatch*oobSize)
	l.rbuf = make([]byte, udpBatch*udpReadSize)
	l.sh = make([]unix.Mmsghdr, udpBatch)
	l.siov = make([]unix.Iovec, udpBatch)
	l.soob = make([]byte, udpBatch*oobSize)
	l.sbuf = make([]byte, udpBatch*l.outSize)
	for i := range l.rh {
		h := &l.rh[i].Hdr
		h.Name = &l.names[i*sockaddrSize]
		l.riov[i].Base = &l.rbuf[i*udpReadSize]
		l.riov[i].SetLen(udpReadSize)
		h.Iov = &l.riov[i]
		h.SetIovlen(1)
		if l.pktinfo {
			h.Control = &l.roob[i*oobSize]
		}
		s := &l.sh[i].Hdr
		l.siov[i].Base = &l.sbuf[i*l.outSize]
		s.Iov = &l.siov[i]
		s.SetIovlen(1)
	}
	l.recvF, l.sendF = l.recvmmsg, l.sendmmsg
	return l, nil
}

const dns512 = 512

// wildcard reports a socket bound to 0.0.0.0 or [::], whose answers must
// be sent from the address each query came to.
func wildcard(c *net.UDPConn) bool {
	la, ok := c.LocalAddr().(*net.UDPAddr)
	return ok && la.IP.IsUnspecified()
}

// setPktinfo asks for the destination address of each datagram, for IPv4
// and IPv6 (a dual-stack socket gets both kinds); one of the two may fail.
func setPktinfo(rc syscall.RawConn) error {
	var e4, e6 error
	if err := rc.Control(func(fd uintptr) {
		e4 = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		e6 = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
	}); err != nil {
		return err
	}
	if e4 != nil && e6 != nil {
		return e4
	}
	return nil
}

func (l *udpLoop) recvmmsg(fd uintptr) bool {
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&l.rh[0])), uintptr(len(l.rh)), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait until the socket is readable
		}
		l.rn, l.rerr = int(n), errno
		return true
	}
}

func (l *udpLoop) sendmmsg(fd uintptr) bool {
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&l.sh[l.sent])), uintptr(l.ns-l.sent), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		case 0:
			l.sent += int(n)
			l.serr = 0
		default:
			l.serr = errno
		}
		return true
	}
}

// run serves the socket until it is closed.
func (l *udpLoop) run() error {
	for {
		for i := range l.rh {
			h := &l.rh[i].Hdr
			h.Namelen = sockaddrSize
			if l.pktinfo {
				h.SetControllen(oobSize)
			}
			h.Flags = 0
		}
		if err := l.rc.Read(l.recvF); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if l.rerr != 0 {
			if l.rerr == unix.EBADF {
				return nil
			}
			if temporary(l.rerr) {
				continue
			}
			return fmt.Errorf("recvmmsg: %w", l.rerr)
		}
		l.batch(l.rn)
	}
}

func temporary(e syscall.Errno) bool {
	switch e {
	case unix.ENOMEM, unix.ENOBUFS, unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH:
		return true
	}
	return e.Temporary()
}

// batch answers the n datagrams read.
func (l *udpLoop) batch(n int) {
	defer func() {
		if p := recover(); p != nil {
			l.f.logger.Error("dns fast path panic", "panic", p)
		}
	}()
	start := l.f.now()
	now := start.UnixNano()
	l.ns, l.sent = 0, 0
	timed := 0
	var t outcomes
	defer l.f.flush(&t)
	for i := range n {
		p := l.rbuf[i*udpReadSize : i*udpReadSize+int(l.rh[i].Len)]
		if len(p) < 12 || p[2]&0x80 != 0 {
			continue // runts and responses: the full server drops them too
		}
		src := l.source(i)
		out := l.sbuf[l.ns*l.outSize : (l.ns+1)*l.outSize]
		k, qtype, rcode, o := l.f.answer(l.sc, p, src, false, now, out)
		t.count(o)
		if o == toFull {
			l.toFull(i, p, src)
			continue
		}
		resp := out[:k]
		if k > 0 && l.f.lim != nil {
			if resp = l.f.lim.Limit(src.Addr(), resp); len(resp) != k && resp != nil {
				rcode = int(resp[3] & 0x0f) // slipped: a bare header, no OPT
			}
		}
		if len(resp) == 0 {
			l.f.observe(qtype, -1)
			continue
		}
		if l.f.obs != nil {
			l.f.obs.Answered(qtype, rcode)
			if l.sc.sampled++; l.sc.sampled%16 == 0 {
				timed++
			}
		}
		l.queue(i, len(resp))
	}
	l.f.flush(&t) // counted before the answers leave: whoever got one sees it counted
	for l.sent < l.ns {
		if err := l.rc.Write(l.sendF); err != nil {
			return // closed
		}
		if l.serr != 0 {
			l.sent++ // this one cannot go (its address, its size): the others can
		}
	}
	if timed > 0 {
		d := l.f.now().Sub(start)
		for range timed {
			l.f.obs.Took(d)
		}
	}
}

// queue sets the next message to send: n bytes of its buffer, to the
// source of datagram i.
func (l *udpLoop) queue(i, n int) {
	j := l.ns
	s := &l.sh[j].Hdr
	s.Name = &l.names[i*sockaddrSize]
	s.Namelen = l.rh[i].Hdr.Namelen
	l.siov[j].SetLen(n)
	s.Control = nil
	s.SetControllen(0)
	if l.pktinfo {
		if c := replyControl(l.soob[j*oobSize:(j+1)*oobSize], l.control(i)); len(c) > 0 {
			s.Control = &c[0]
			s.SetControllen(len(c))
		}
	}
	l.ns++
}

// control is the control data received with datagram i.
func (l *udpLoop) control(i int) []byte {
	return l.roob[i*oobSize : i*oobSize+int(l.rh[i].Hdr.Controllen)]
}

// source is the address datagram i came from.
func (l *udpLoop) source(i int) netip.AddrPort {
	sa := l.names[i*sockaddrSize : (i+1)*sockaddrSize]
	port := binary.BigEndian.Uint16(sa[2:])
	switch *(*uint16)(unsafe.Pointer(&sa[0])) {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(sa[4:8])), port)
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(sa[8:24])), port)
	}
	return netip.AddrPort{}
}

// toFull hands datagram i to the full server.
func (l *udpLoop) toFull(i int, p []byte, src netip.AddrPort) {
	addr := net.UDPAddrFromAddrPort(src)
	sa := l.names[i*sockaddrSize : (i+1)*sockaddrSize]
	if *(*uint16)(unsafe.Pointer(&sa[0])) == unix.AF_INET6 {
		if scope := *(*uint32)(unsafe.Pointer(&sa[24])); scope != 0 {
			addr.Zone = strconv.Itoa(int(scope)) // the net package takes an index for a zone
		}
	}
	var oob []byte
	if l.pktinfo {
		var buf [oobSize]byte
		if c := replyControl(buf[:], l.control(i)); len(c) > 0 {
			oob = append([]byte(nil), c...)
		}
	}
	if !l.full.pass(append([]byte(nil), p...), addr, oob) {
		l.f.logger.Debug("dns: queue of the full server full, query dropped", "remote", src.String())
	}
}

// replyControl writes into buf the control message that makes a reply
// leave from the destination address found in the received control data
// rc, as miekg/dns does (source address only, no interface), and returns
// it; nil if rc has no destination address.
func replyControl(buf, rc []byte) []byte {
	var dst4 []byte
	var dst6 []byte
	for len(rc) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&rc[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(rc) {
			break
		}
		data := rc[unix.CmsgLen(0):l]
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			dst4 = data[8:12] // ipi_addr: the header's destination
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			dst6 = data[:16]
		}
		rc = rc[min(unix.CmsgSpace(l-unix.CmsgLen(0)), len(rc)):]
	}
	if dst6 != nil {
		if a := netip.AddrFrom16([16]byte(dst6)); a.Is4In6() {
			u := a.Unmap().As4()
			dst4, dst6 = u[:], nil
		}
	}
	var level, typ int32
	var n int
	switch {
	case dst6 != nil:
		level, typ, n = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, unix.SizeofInet6Pktinfo
	case dst4 != nil:
		level, typ, n = unix.IPPROTO_IP, unix.IP_PKTINFO, unix.SizeofInet4Pktinfo
	default:
		return nil
	}
	out := buf[:unix.CmsgSpace(n)]
	clear(out)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&out[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(n))
	data := out[unix.CmsgLen(0):]
	if dst6 != nil {
		copy(data[:16], dst6) // ipi6_addr; ipi6_ifindex 0
	} else {
		copy(data[4:8], dst4) // ipi_spec_dst; ipi_ifindex 0
	}
	return out
}
