//go:build !linux

package dnsserver

import (
	"errors"
	"net"
)

// Elsewhere than Linux the fast path's UDP loop is off (no recvmmsg):
// every UDP query goes to the full server.
const fastUDPSupported = false

func listenUDP(addr string) (net.PacketConn, error) { return net.ListenPacket("udp", addr) }

type udpLoop struct{}

func wildcard(*net.UDPConn) bool { return false }

func newUDPLoop(*FastPath, *net.UDPConn, *handoff, bool) (*udpLoop, error) {
	return nil, errors.New("the fast path needs Linux")
}

func (*udpLoop) run() error { return nil }
