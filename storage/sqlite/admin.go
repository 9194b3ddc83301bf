package sqlite

import (
	"context"
	"errors"

	"github.com/acmebroker/acmebroker/storage"
)

// errNotYet marks contract methods whose SQLite implementation is being
// written (issue 4); they fail cleanly meanwhile.
var errNotYet = errors.New("sqlite: not implemented yet")

// Accounts is not implemented yet.
func (s *Store) Accounts(ctx context.Context, fn func(storage.AccountInfo) error) error {
	return errNotYet
}

// SetDisabled is not implemented yet.
func (s *Store) SetDisabled(ctx context.Context, username string, disabled bool) error {
	return errNotYet
}

// Subdomain is not implemented yet.
func (s *Store) Subdomain(ctx context.Context, name string) (storage.Subdomain, uint32, error) {
	return storage.Subdomain{}, 0, errNotYet
}
