package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/client"
	"github.com/acmebroker/acmebroker/internal/acmetest"
)

const (
	waitName = "x." + brokerZone
	value2   = "d4pl_-E7i4vbrMPw7rhmCH1SU3dqtx-2hnsm1IJ30j0"
)

// TestWaitServedReportsLastAnswer: a server that answers NXDOMAIN is
// reported as answering NXDOMAIN when the wait ends, also when the timeout
// is a multiple of the poll interval (the last poll then runs into the
// deadline, which must not replace the real answer).
func TestWaitServedReportsLastAnswer(t *testing.T) {
	zone := acmetest.StartZone(t, brokerZone)
	ck := &client.Checker{Nameservers: []string{zone.Addr()}, Interval: 200 * time.Millisecond}
	for _, timeout := range []time.Duration{time.Second, 1100 * time.Millisecond} {
		err := ck.WaitServed(context.Background(), waitName, []string{txtValue}, timeout)
		var np *client.ErrNotPropagated
		if !errors.As(err, &np) || np.Final || !strings.Contains(np.Missing[zone.Addr()], "NXDOMAIN") || strings.Contains(err.Error(), "i/o timeout") {
			t.Fatalf("timeout %s: %v", timeout, err)
		}
	}
}

// TestWaitServedProgress: while waiting, the checker says every few seconds
// what each server still lacks, and returns once all is served.
func TestWaitServedProgress(t *testing.T) {
	zone := acmetest.StartZone(t, brokerZone)
	zone.SetTXT(waitName, txtValue)
	progress := make(chan string, 100)
	ck := &client.Checker{Nameservers: []string{zone.Addr()}, Interval: 50 * time.Millisecond,
		ProgressEvery: 100 * time.Millisecond, Progress: func(m string) {
			select {
			case progress <- m:
			default:
			}
		}}
	done := make(chan error, 1)
	go func() {
		done <- ck.WaitServed(context.Background(), waitName, []string{txtValue, value2}, 30*time.Second)
	}()
	var first string
	select {
	case first = <-progress:
	case err := <-done:
		t.Fatalf("returned before both values were served: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("no progress line within 20 s")
	}
	if want := "waiting for " + zone.Addr() + " to serve " + waitName + ": 1 of 2 values"; first != want {
		t.Fatalf("progress %q, want %q", first, want)
	}
	zone.SetTXT(waitName, txtValue, value2)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("still waiting 20 s after both values were served")
	}
}

// TestWaitServedStopsEarly: a server that refuses the zone will not serve
// the values however long one waits: the wait stops at once and says why.
func TestWaitServedStopsEarly(t *testing.T) {
	other := acmetest.StartZone(t, "other.test")
	ck := &client.Checker{Nameservers: []string{other.Addr()}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := ck.WaitServed(ctx, waitName, []string{txtValue}, time.Minute)
	var np *client.ErrNotPropagated
	if !errors.As(err, &np) || !np.Final || !strings.Contains(err.Error(), "REFUSED") || ctx.Err() != nil {
		t.Fatalf("a refusing server: %v", err)
	}
}
