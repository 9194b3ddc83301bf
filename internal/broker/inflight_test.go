package broker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/api"
	"github.com/acmebroker/acmebroker/storage"
)

type failingStore struct{ api.Store }

func (failingStore) SetTXT(context.Context, string, string, time.Time, storage.TXTPolicy) ([]storage.TXTRecord, uint32, error) {
	return nil, 0, errors.New("disk full")
}

type nopIndex struct{ api.Index }

func (nopIndex) Set(string, []storage.TXTRecord, uint32) {}

// TestInflight: a write counts from the store call until the index has it,
// or until the store fails; wait returns at once when nothing is in flight
// and at its bound when something stays.
func TestInflight(t *testing.T) {
	f := newInflight()
	idle := func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.n == 0
	}
	st := inflightStore{failingStore{}, f}
	if _, _, err := st.SetTXT(t.Context(), "s", "v", time.Now(), storage.DefaultTXTPolicy); err == nil || !idle() {
		t.Fatal("a failed write is still in flight")
	}
	f.begin() // a write accepted by the database...
	done := make(chan struct{})
	go func() { f.wait(time.Minute); close(done) }()
	select {
	case <-done:
		t.Fatal("wait returned with a write in flight")
	case <-time.After(50 * time.Millisecond): // bounded: it must still be waiting
	}
	inflightIndex{nopIndex{}, f}.Set("s", nil, 1) // ...reaches the index
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("wait did not return once the write reached the index")
	}
	f.begin() // never finished (a bug elsewhere): wait is bounded
	start := time.Now()
	f.wait(20 * time.Millisecond)
	if time.Since(start) > 5*time.Second {
		t.Fatal("wait not bounded")
	}
}
