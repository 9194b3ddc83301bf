package metrics

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/acmebroker/acmebroker/storage"
)

func newStorageErrors() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "storage", Name: "errors_total",
		Help: "Failed storage calls, by operation and kind (\"unavailable\": the database could not be reached, was locked or full, or timed out; \"failed\": any other failure). " +
			"Expected answers (not found, conflict, invalid token) and calls abandoned by their caller are not errors.",
	}, []string{"op", "kind"})
}

// Store wraps st so that its failures are counted by operation. The
// wrapper does not embed storage.Store: a method added to it later does not
// compile here until it is wrapped and counted too.
func (m *Metrics) Store(st storage.Store) storage.Store {
	return &store{inner: st, errs: m.storage}
}

type store struct {
	inner storage.Store
	errs  *prometheus.CounterVec
}

var _ storage.Store = (*store)(nil)

// observe counts err unless it is an expected outcome; it returns err.
func (s *store) observe(op string, err error) error {
	switch {
	case err == nil,
		errors.Is(err, storage.ErrNotFound),
		errors.Is(err, storage.ErrConflict),
		errors.Is(err, storage.ErrTokenInvalid),
		errors.Is(err, storage.ErrTooMany),
		errors.Is(err, context.Canceled):
		return err
	case errors.Is(err, storage.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		s.errs.WithLabelValues(op, "unavailable").Inc()
	default:
		s.errs.WithLabelValues(op, "failed").Inc()
	}
	return err
}

// callbackError marks an error returned by the caller's callback, which is
// not the database's failure.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }
func (e *callbackError) Unwrap() error { return e.err }

func (s *store) observeStream(op string, err error) error {
	var cb *callbackError
	if errors.As(err, &cb) {
		return cb.err
	}
	return s.observe(op, err)
}

func (s *store) CreateAccount(ctx context.Context, a storage.Account) (uint32, error) {
	serial, err := s.inner.CreateAccount(ctx, a)
	return serial, s.observe("create_account", err)
}

func (s *store) Account(ctx context.Context, username string) (storage.Account, error) {
	a, err := s.inner.Account(ctx, username)
	return a, s.observe("account", err)
}

func (s *store) UpdateKeyHash(ctx context.Context, username, oldHash, newHash string) error {
	return s.observe("update_key_hash", s.inner.UpdateKeyHash(ctx, username, oldHash, newHash))
}

func (s *store) SetTXT(ctx context.Context, sub, value string, at time.Time, p storage.TXTPolicy) ([]storage.TXTRecord, uint32, error) {
	recs, serial, err := s.inner.SetTXT(ctx, sub, value, at, p)
	return recs, serial, s.observe("set_txt", err)
}

func (s *store) PruneTXT(ctx context.Context, sub string, now time.Time, p storage.TXTPolicy) (int, uint32, error) {
	n, serial, err := s.inner.PruneTXT(ctx, sub, now, p)
	return n, serial, s.observe("prune_txt", err)
}

func (s *store) Snapshot(ctx context.Context, fn func(storage.Subdomain) error) (uint32, error) {
	serial, err := s.inner.Snapshot(ctx, func(sd storage.Subdomain) error {
		if err := fn(sd); err != nil {
			return &callbackError{err}
		}
		return nil
	})
	return serial, s.observeStream("snapshot", err)
}

func (s *store) SetPersist(ctx context.Context, sub string, rec storage.PersistRecord) ([]storage.PersistRecord, uint32, error) {
	recs, serial, err := s.inner.SetPersist(ctx, sub, rec)
	return recs, serial, s.observe("set_persist", err)
}

func (s *store) DeletePersist(ctx context.Context, sub, issuer string) ([]storage.PersistRecord, uint32, error) {
	recs, serial, err := s.inner.DeletePersist(ctx, sub, issuer)
	return recs, serial, s.observe("delete_persist", err)
}

func (s *store) PersistRecords(ctx context.Context, sub string) ([]storage.PersistRecord, error) {
	recs, err := s.inner.PersistRecords(ctx, sub)
	return recs, s.observe("persist_records", err)
}

func (s *store) DeleteAccount(ctx context.Context, username string) (uint32, error) {
	serial, err := s.inner.DeleteAccount(ctx, username)
	return serial, s.observe("delete_account", err)
}

func (s *store) DeleteUnusedAccount(ctx context.Context, username string, cutoff time.Time) (uint32, error) {
	serial, err := s.inner.DeleteUnusedAccount(ctx, username, cutoff)
	if errors.Is(err, storage.ErrInUse) {
		return serial, err // an expected answer
	}
	return serial, s.observe("delete_unused_account", err)
}

func (s *store) AccountBySubdomain(ctx context.Context, name string) (storage.AccountInfo, error) {
	a, err := s.inner.AccountBySubdomain(ctx, name)
	return a, s.observe("account_by_subdomain", err)
}

func (s *store) Close() error { return s.inner.Close() }

func (s *store) UpdateAllowFrom(ctx context.Context, username string, allow []netip.Prefix) error {
	return s.observe("update_allowfrom", s.inner.UpdateAllowFrom(ctx, username, allow))
}

func (s *store) CreateAccountWithToken(ctx context.Context, a storage.Account, tokenID string) (uint32, error) {
	serial, err := s.inner.CreateAccountWithToken(ctx, a, tokenID)
	return serial, s.observe("create_account_with_token", err)
}

func (s *store) CreateToken(ctx context.Context, t storage.Token) error {
	return s.observe("create_token", s.inner.CreateToken(ctx, t))
}

func (s *store) Token(ctx context.Context, id string) (storage.Token, error) {
	t, err := s.inner.Token(ctx, id)
	return t, s.observe("token", err)
}

func (s *store) Tokens(ctx context.Context) ([]storage.Token, error) {
	ts, err := s.inner.Tokens(ctx)
	return ts, s.observe("tokens", err)
}

func (s *store) RevokeToken(ctx context.Context, id string, at time.Time) error {
	return s.observe("revoke_token", s.inner.RevokeToken(ctx, id, at))
}

func (s *store) Accounts(ctx context.Context, fn func(storage.AccountInfo) error) error {
	err := s.inner.Accounts(ctx, func(a storage.AccountInfo) error {
		if err := fn(a); err != nil {
			return &callbackError{err}
		}
		return nil
	})
	return s.observeStream("accounts", err)
}

func (s *store) SetDisabled(ctx context.Context, username string, disabled bool) error {
	return s.observe("set_disabled", s.inner.SetDisabled(ctx, username, disabled))
}

func (s *store) Subdomain(ctx context.Context, name string) (storage.Subdomain, uint32, error) {
	sd, serial, err := s.inner.Subdomain(ctx, name)
	return sd, serial, s.observe("subdomain", err)
}

func (s *store) Ping(ctx context.Context) error {
	return s.observe("ping", s.inner.Ping(ctx))
}

func (s *store) GetValue(ctx context.Context, name string) (storage.Value, error) {
	v, err := s.inner.GetValue(ctx, name)
	return v, s.observe("get_value", err)
}

func (s *store) PutValue(ctx context.Context, name string, data []byte, at time.Time) error {
	return s.observe("put_value", s.inner.PutValue(ctx, name, data, at))
}

func (s *store) DeleteValue(ctx context.Context, name string) error {
	return s.observe("delete_value", s.inner.DeleteValue(ctx, name))
}

func (s *store) ListValues(ctx context.Context, prefix string) ([]storage.ValueInfo, error) {
	vs, err := s.inner.ListValues(ctx, prefix)
	return vs, s.observe("list_values", err)
}

func (s *store) TryLock(ctx context.Context, name, owner string, at time.Time, ttl time.Duration) (bool, error) {
	held, err := s.inner.TryLock(ctx, name, owner, at, ttl)
	return held, s.observe("try_lock", err)
}

func (s *store) Unlock(ctx context.Context, name, owner string) error {
	return s.observe("unlock", s.inner.Unlock(ctx, name, owner))
}

func (s *store) SetOwnTXT(ctx context.Context, name, value string, at time.Time, p storage.TXTPolicy) ([]storage.TXTRecord, uint32, error) {
	recs, serial, err := s.inner.SetOwnTXT(ctx, name, value, at, p)
	return recs, serial, s.observe("set_own_txt", err)
}

func (s *store) DeleteOwnTXT(ctx context.Context, name, value string, at time.Time) ([]storage.TXTRecord, uint32, error) {
	recs, serial, err := s.inner.DeleteOwnTXT(ctx, name, value, at)
	return recs, serial, s.observe("delete_own_txt", err)
}
