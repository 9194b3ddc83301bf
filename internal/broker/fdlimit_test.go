package broker

import (
	"testing"

	"github.com/acmebroker/acmebroker/internal/config"
)

func TestFitConnections(t *testing.T) {
	c := config.Default()
	c.DNS.Listen = []string{"0.0.0.0:53", "[::]:53"}
	reserve := fdReserve(c.DNS)
	if reserve != 256+2*512 {
		t.Fatalf("reserve %d with 2 listeners of 512 TCP connections", reserve)
	}
	c.DNS.TCPMaxConnections = 0
	if fdReserve(c.DNS) != 256+2*1024 {
		t.Fatal("no DNS TCP limit: no room kept for it")
	}
	for _, tc := range []struct {
		want    int
		limit   uint64
		reserve int
		fit     int
	}{
		{4096, 1 << 20, 1280, 4096}, // systemd's hard limit: as configured
		{4096, 20000, 1280, 4096},   // plenty
		{4096, 4096, 1280, 2816},    // lowered: the reserve stays free
		{4096, 1024, 1280, 256},     // a tiny limit: a quarter of it
		{4096, 40, 1280, 16},        // absurdly small: still 16
		{100, 1024, 1280, 100},      // never above what was asked
		{4096, 1 << 62, 1280, 4096}, // no overflow
	} {
		if got := fitConnections(tc.want, tc.limit, tc.reserve); got != tc.fit {
			t.Errorf("fitConnections(%d, %d, %d) = %d, want %d", tc.want, tc.limit, tc.reserve, got, tc.fit)
		}
	}
	if limit, err := raiseOpenFiles(); err != nil || limit < 64 {
		t.Fatalf("open-files limit %d, %v", limit, err)
	}
}
