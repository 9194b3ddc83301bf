// Package dnstest holds what the DNS packages' tests share: a
// dns.ResponseWriter that keeps what a handler writes.
package dnstest

import (
	"net"

	"github.com/miekg/dns"
)

// Recorder is a dns.ResponseWriter that keeps every message written, packed.
type Recorder struct {
	// Remote is the client's address the handler sees (a *net.UDPAddr or
	// a *net.TCPAddr says the transport).
	Remote net.Addr
	// Msgs are the messages written, in order.
	Msgs [][]byte
}

// UDPRecorder is a Recorder for a query over UDP from 192.0.2.1.
func UDPRecorder() *Recorder {
	return &Recorder{Remote: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5353}}
}

// TCPRecorder is a Recorder for a query over TCP from 192.0.2.1.
func TCPRecorder() *Recorder {
	return &Recorder{Remote: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5353}}
}

func (r *Recorder) LocalAddr() net.Addr  { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (r *Recorder) RemoteAddr() net.Addr { return r.Remote }

// WriteMsg packs m (as the server's writer does for an unsigned answer).
func (r *Recorder) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = r.Write(b)
	return err
}

func (r *Recorder) Write(b []byte) (int, error) {
	r.Msgs = append(r.Msgs, append([]byte(nil), b...))
	return len(b), nil
}

func (r *Recorder) Close() error        { return nil }
func (r *Recorder) TsigStatus() error   { return nil }
func (r *Recorder) TsigTimersOnly(bool) {}
func (r *Recorder) Hijack()             {}
