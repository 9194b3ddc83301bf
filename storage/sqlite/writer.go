package sqlite

// Group commit.
//
// With synchronous=FULL every COMMIT waits for an fsync (about 0.2 ms on a
// local SSD, 1-5 ms on a typical VM disk), so one transaction per write would
// cap the API at a few hundred writes a second. Instead every write is a
// request to one writer goroutine, which owns one connection and loops:
//
//  1. wait for a request, then take whatever else is already queued (up to
//     maxBatch), and under load wait a little for the callers of the last
//     batch to come back (see gather);
//  2. BEGIN IMMEDIATE; for each request: SAVEPOINT, run it, RELEASE (or
//     ROLLBACK TO the savepoint if it failed, so a UNIQUE conflict undoes
//     only that request and is reported to its own caller);
//  3. COMMIT once, then answer every caller.
//
// While one batch waits for its fsync the next one queues up, so the batch
// size grows with the load by itself; a lone caller never waits for a timer.
//
// A request whose caller gives up (ctx done) before the writer has taken it
// is skipped. Once taken it runs to the end and its caller waits for the
// outcome: returning early would leave the caller unsure whether a write that
// then commits happened (the API would not put the value in its DNS index).
// A batch is bounded (maxBatch small statements and one fsync, or a busy
// timeout), so that wait is short.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// maxBatch caps the requests committed together (and the queue length).
const maxBatch = 256

// Request states; the writer and the caller race with CompareAndSwap from
// statePending and exactly one of them wins.
const (
	statePending int32 = iota
	stateTaken
	stateCancelled
)

// request is one write. apply runs inside the batch transaction on the
// writer's connection and reports its results through variables it closes
// over; the caller reads them only after receiving from done.
type request struct {
	apply func(ctx context.Context, c *sql.Conn) error
	state atomic.Int32
	done  chan error // buffered: the writer never blocks on a caller
}

// hooks let tests hold the writer and observe batches. All nil in production.
type hooks struct {
	beforeBatch func()      // writer: before waiting for the next batch
	enqueued    func()      // caller: its request is in the queue
	afterCommit func(n int) // writer: a batch of n requests committed, callers not yet answered
}

// write queues apply for the writer and waits for its outcome.
func (s *Store) write(ctx context.Context, apply func(ctx context.Context, c *sql.Conn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &request{apply: apply, done: make(chan error, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return errClosed
	}
	select {
	case s.reqs <- r:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	if s.hooks.enqueued != nil {
		s.hooks.enqueued()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		if r.state.CompareAndSwap(statePending, stateCancelled) {
			return ctx.Err()
		}
		return <-r.done
	}
}

// maxGatherWait bounds how long the writer holds a batch open for callers it
// expects back (see gather).
const maxGatherWait = time.Millisecond

// runWriter is the writer goroutine. It returns when Close has closed reqs
// and every request queued before that has been committed and answered.
func (s *Store) runWriter() {
	defer close(s.writerDone)
	batch := make([]*request, 0, maxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var (
		expect int           // requests the next batch may expect, see gather
		cost   time.Duration // moving average of a batch's duration
		idle   time.Time     // when the writer last started waiting
	)
	for {
		if s.hooks.beforeBatch != nil {
			s.hooks.beforeBatch()
		}
		idle = time.Now()
		r, ok := <-s.reqs
		if !ok {
			return
		}
		wait := min(cost/4, maxGatherWait)
		if time.Since(idle) > wait {
			// The last batch's callers are not coming straight back (a
			// burst ended, or they are slow): do not wait for them.
			expect = 0
		}
		batch = s.gather(append(batch[:0], r), expect, wait, timer)
		start := time.Now()
		taken, queued := s.commitBatch(batch)
		if taken > 0 {
			cost += (time.Since(start) - cost) / 8
		}
		expect = taken + queued
		clear(batch) // let finished requests be collected
	}
}

// gather adds to batch what is queued already and then, if fewer than
// expect, waits up to wait for the rest.
//
// Taking only what is queued is not enough under steady load: callers
// answered a moment ago are still on their way back, so batches would settle
// into two alternating halves of the callers, each paying a full fsync. The
// previous batch's callers plus the requests that arrived while it committed
// are the writers active right now; waiting for them (at most a quarter of a
// commit, at most maxGatherWait) lets one fsync serve them all, the way
// PostgreSQL's commit_delay does. A lone caller expects 1 and never waits.
func (s *Store) gather(batch []*request, expect int, wait time.Duration, timer *time.Timer) []*request {
	for len(batch) < maxBatch {
		select {
		case r, ok := <-s.reqs:
			if !ok {
				return batch
			}
			batch = append(batch, r)
			continue
		default:
		}
		break
	}
	expect = min(expect, maxBatch)
	if len(batch) >= expect || wait <= 0 {
		return batch
	}
	timer.Reset(wait)
	defer timer.Stop()
	for len(batch) < expect {
		select {
		case r, ok := <-s.reqs:
			if !ok {
				return batch
			}
			batch = append(batch, r)
		case <-timer.C:
			return batch
		}
	}
	return batch
}

// commitBatch runs the requests of batch whose callers are still waiting in
// one transaction and answers them. It returns how many it ran and how many
// requests were queued when the transaction ended (they arrived meanwhile).
func (s *Store) commitBatch(batch []*request) (taken, queued int) {
	run := batch[:0]
	for _, r := range batch {
		if r.state.CompareAndSwap(statePending, stateTaken) {
			run = append(run, r)
		}
	}
	if len(run) == 0 {
		return 0, 0
	}
	// The batch is shared, so no caller's ctx may cancel it; it is bounded by
	// the busy timeout instead.
	ctx := context.Background()
	c := s.wconn
	errs := make([]error, len(run))
	fatal := s.runBatch(ctx, c, run, errs)
	queued = len(s.reqs)
	if fatal != nil {
		// Nothing of the batch was committed. Requests that failed on their
		// own keep their error (it is the more precise one).
		if _, err := c.ExecContext(ctx, "ROLLBACK"); ignoreNoTx(err) != nil {
			s.log.Error("sqlite rollback after failed batch", "err", err)
		}
		s.log.Warn("sqlite write batch failed", "writes", len(run), "err", fatal)
		for i := range errs {
			if errs[i] == nil {
				errs[i] = fmt.Errorf("batch of %d writes not committed: %w", len(run), fatal)
			}
		}
	} else if s.hooks.afterCommit != nil {
		s.hooks.afterCommit(len(run))
	}
	for i, r := range run {
		r.done <- errs[i]
	}
	return len(run), queued
}

// runBatch runs taken in one transaction, recording each request's own
// failure in errs. It returns non-nil if the transaction as a whole failed
// (nothing committed).
func (s *Store) runBatch(ctx context.Context, c *sql.Conn, taken []*request, errs []error) error {
	if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	for i, r := range taken {
		if _, err := c.ExecContext(ctx, "SAVEPOINT req"); err != nil {
			return err
		}
		if err := r.apply(ctx, c); err != nil {
			errs[i] = err
			// If SQLite rolled back the whole transaction by itself (disk
			// full, I/O error) the savepoint is gone and this fails too.
			if _, rbErr := c.ExecContext(ctx, "ROLLBACK TO req"); rbErr != nil {
				return errors.Join(err, rbErr)
			}
		}
		if _, err := c.ExecContext(ctx, "RELEASE req"); err != nil {
			return err
		}
	}
	// A database file removed or replaced under the running broker would
	// take this commit into an unlinked inode: acknowledged, then lost at
	// the next start. Refuse instead (see checkFile).
	if err := s.checkFile(); err != nil {
		return err
	}
	_, err := c.ExecContext(ctx, "COMMIT")
	return err
}
