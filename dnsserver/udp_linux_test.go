//go:build linux

package dnsserver

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// cmsg builds one control message.
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

// TestReplyControl: the control message of an answer makes it leave from
// the address the query was sent to (the received ipi_addr or ipi6_addr),
// as miekg/dns does for a wildcard socket.
func TestReplyControl(t *testing.T) {
	v4 := make([]byte, unix.SizeofInet4Pktinfo)
	v4[0] = 3                          // ifindex
	copy(v4[4:8], []byte{10, 0, 0, 1}) // spec_dst: the interface's address
	copy(v4[8:12], []byte{192, 0, 2, 7})
	v6 := make([]byte, unix.SizeofInet6Pktinfo)
	copy(v6, netip.MustParseAddr("2001:db8::7").AsSlice())
	v6[16] = 3
	mapped := make([]byte, unix.SizeofInet6Pktinfo)
	copy(mapped, netip.MustParseAddr("::ffff:192.0.2.8").AsSlice())
	other := cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMP, make([]byte, 16))
	for _, tc := range []struct {
		name    string
		rc      []byte
		level   int32
		typ     int32
		wantSrc string
	}{
		{"IPv4", cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, v4), unix.IPPROTO_IP, unix.IP_PKTINFO, "192.0.2.7"},
		{"IPv6", cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, v6), unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, "2001:db8::7"},
		{"IPv4 on a dual-stack socket", cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, mapped), unix.IPPROTO_IP, unix.IP_PKTINFO, "192.0.2.8"},
		{"after another message", append(append([]byte(nil), other...), cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, v4)...), unix.IPPROTO_IP, unix.IP_PKTINFO, "192.0.2.7"},
		{"none", other, 0, 0, ""},
		{"cut short", cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, v4)[:10], 0, 0, ""},
	} {
		out := replyControl(make([]byte, oobSize), tc.rc)
		if tc.wantSrc == "" {
			if out != nil {
				t.Errorf("%s: %x, want none", tc.name, out)
			}
			continue
		}
		h := (*unix.Cmsghdr)(unsafe.Pointer(&out[0]))
		data := out[unix.CmsgLen(0):h.Len]
		var src netip.Addr
		if tc.typ == unix.IP_PKTINFO {
			src = netip.AddrFrom4([4]byte(data[4:8]))
			if [4]byte(data[0:4]) != [4]byte{} || [4]byte(data[8:12]) != [4]byte{} {
				t.Errorf("%s: interface or address set: %x", tc.name, data)
			}
		} else {
			src = netip.AddrFrom16([16]byte(data[:16]))
		}
		if h.Level != tc.level || h.Type != tc.typ || src.String() != tc.wantSrc {
			t.Errorf("%s: level %d type %d source %s, want %d %d %s", tc.name, h.Level, h.Type, src, tc.level, tc.typ, tc.wantSrc)
		}
	}
}

// TestUDPLoopPktinfo runs the loop as for a wildcard socket (on loopback:
// tests bind nothing else): answers from the cache, from the handler and
// from the full server all reach the client with the control message.
func TestUDPLoopPktinfo(t *testing.T) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	h := newTestHandler(t, newVersionedSource())
	f, err := h.NewFastPath(FastConfig{CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	full := newHandoff(conn)
	l, err := newUDPLoop(f, conn, full, true)
	if err != nil {
		t.Fatal(err)
	}
	loopDone := make(chan error, 1)
	go func() { loopDone <- l.run() }()
	srv := &dns.Server{PacketConn: full, Handler: handoffHandler{h, full}, MsgAcceptFunc: acceptMsg}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.ActivateAndServe() }()
	defer func() {
		_ = srv.ShutdownContext(context.Background())
		<-srvDone
		_ = conn.Close()
		if err := <-loopDone; err != nil {
			t.Errorf("loop: %v", err)
		}
	}()
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	notify := query(zone+".", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	for i, q := range []*dns.Msg{query(sub1+"."+zone+".", dns.TypeTXT), query(sub1+"."+zone+".", dns.TypeTXT), notify} {
		m, _, err := c.Exchange(q, conn.LocalAddr().String())
		if err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		if m.Id != q.Id {
			t.Fatalf("query %d: answer id %d", i, m.Id)
		}
	}
	if s := f.Stats(); s.Hits != 1 || s.Fills != 1 || s.Handed != 1 {
		t.Fatalf("stats %+v: want one of each", s)
	}
	full.mu.Lock()
	left := len(full.oob)
	full.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d reply addresses kept after the answers", left)
	}
}
