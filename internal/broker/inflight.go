package broker

import (
	"context"
	"sync"
	"time"

	"github.com/acmebroker/acmebroker/api"
	"github.com/acmebroker/acmebroker/storage"
)

// inflight counts zone writes between the database and the in-memory
// index: begun when the API asks the store, done when it has applied the
// result to the index (or the store failed). Zone transfers wait for it to
// reach zero, so two concurrent updates applied to memory in the other
// order than their serials are both there before a secondary copies the
// zone.
type inflight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed while n == 0
}

func newInflight() *inflight {
	f := &inflight{idle: make(chan struct{})}
	close(f.idle)
	return f
}

func (f *inflight) begin() {
	f.mu.Lock()
	if f.n == 0 {
		f.idle = make(chan struct{})
	}
	f.n++
	f.mu.Unlock()
}

func (f *inflight) done() {
	f.mu.Lock()
	if f.n > 0 {
		f.n--
		if f.n == 0 {
			close(f.idle)
		}
	}
	f.mu.Unlock()
}

// wait returns once no write is in flight, or after max.
func (f *inflight) wait(max time.Duration) {
	f.mu.Lock()
	idle := f.idle
	f.mu.Unlock()
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
}

// inflightStore marks the zone-changing writes of the API's store.
type inflightStore struct {
	api.Store
	f *inflight
}

func (s inflightStore) track(err error) {
	if err != nil {
		s.f.done() // nothing will reach the index
	}
}

func (s inflightStore) CreateAccount(ctx context.Context, a storage.Account) (uint32, error) {
	s.f.begin()
	serial, err := s.Store.CreateAccount(ctx, a)
	s.track(err)
	return serial, err
}

func (s inflightStore) CreateAccountWithToken(ctx context.Context, a storage.Account, tokenID string) (uint32, error) {
	s.f.begin()
	serial, err := s.Store.CreateAccountWithToken(ctx, a, tokenID)
	s.track(err)
	return serial, err
}

func (s inflightStore) SetTXT(ctx context.Context, sub, value string, at time.Time, p storage.TXTPolicy) ([]storage.TXTRecord, uint32, error) {
	s.f.begin()
	recs, serial, err := s.Store.SetTXT(ctx, sub, value, at, p)
	s.track(err)
	return recs, serial, err
}

func (s inflightStore) DeleteAccount(ctx context.Context, username string) (uint32, error) {
	s.f.begin()
	serial, err := s.Store.DeleteAccount(ctx, username)
	s.track(err)
	return serial, err
}

// inflightIndex marks the API's writes done once applied to the index.
type inflightIndex struct {
	api.Index
	f *inflight
}

func (x inflightIndex) Add(sub string, serial uint32) { x.Index.Add(sub, serial); x.f.done() }
func (x inflightIndex) Set(sub string, recs []storage.TXTRecord, serial uint32) {
	x.Index.Set(sub, recs, serial)
	x.f.done()
}
func (x inflightIndex) Remove(sub string, serial uint32) { x.Index.Remove(sub, serial); x.f.done() }
