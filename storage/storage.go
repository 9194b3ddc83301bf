// Package storage defines the broker's persistent data model and the contract
// every storage engine (storage/sqlite, storage/postgres) implements.
//
// The broker keeps accounts (credentials + the one subdomain they may write)
// and the TXT values posted for each subdomain. The DNS server does not read a
// Store on its hot path; it answers from an in-memory index that is filled
// from Store.Snapshot at start-up and kept current after every write that
// changes the zone (the API's, the pruner's, and other nodes' and admin
// commands' through internal/nodesync).
package storage

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// Sentinel errors. Engines wrap them; callers compare with errors.Is.
var (
	// ErrNotFound: no account with that username.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the username or subdomain is already taken.
	ErrConflict = errors.New("already exists")
	// ErrUnavailable: the database cannot be reached or is not writable
	// (locked, full, gone). The API maps it to 503.
	ErrUnavailable = errors.New("storage unavailable")
	// ErrTokenInvalid: a registration token is revoked, expired or used up
	// (the wrapping error says which).
	ErrTokenInvalid = errors.New("registration token not valid")
	// ErrInUse: an account was used after the time given to
	// DeleteUnusedAccount (or holds persist records), so it was kept.
	ErrInUse = errors.New("account used since the cutoff")
	// ErrTooMany: the account holds MaxPersistRecords persist records
	// already (for other issuers).
	ErrTooMany = errors.New("too many records")
)

// Token lets whoever holds it register accounts when registration is
// "token". The holder has "<ID>.<secret>"; only a hash of the secret is kept.
type Token struct {
	ID          string         // public part, shown in lists
	Hash        string         // encoded hash of the secret part
	Comment     string         // what it is for, free text
	MaxAccounts int            // accounts it may register; 0 = no limit
	Accounts    int            // accounts registered with it so far
	AllowFrom   []netip.Prefix // sources that may use it; empty = anywhere
	ExpiresAt   time.Time      // zero = never
	CreatedAt   time.Time
	RevokedAt   time.Time // zero = not revoked
}

// Usable says why t cannot register an account at time now ("" if it can).
func (t Token) Usable(now time.Time) string {
	switch {
	case !t.RevokedAt.IsZero():
		return "revoked"
	case !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt):
		return "expired"
	case t.MaxAccounts > 0 && t.Accounts >= t.MaxAccounts:
		return "used up"
	}
	return ""
}

// Account is one registered API user. It may set TXT values for Subdomain only.
type Account struct {
	Username  string         // UUID, also the X-Api-User header
	KeyHash   string         // encoded hash of the API key (see package api/secret); never the key
	Subdomain string         // lower-case single DNS label
	AllowFrom []netip.Prefix // sources allowed to update; empty = anywhere
	CreatedAt time.Time
	// Disabled is set by an admin: the API refuses the account's
	// credentials until it is enabled again. Its values stay served until
	// they age out.
	Disabled bool
}

// AccountInfo is an account with what an admin wants to know of its use.
type AccountInfo struct {
	Account
	Values     int       // TXT values stored for its subdomain
	LastUpdate time.Time // time of its newest TXT value; zero if it never set one
	Persist    int       // dns-persist-01 records it holds (such an account is in use without updates)
}

// TXTRecord is one value served at <subdomain>.<zone>.
type TXTRecord struct {
	Value     string
	UpdatedAt time.Time
}

// TXTPolicy says which values of a subdomain are kept (and served): the
// Always newest are kept whatever their age; any other value is kept while
// it is younger than Window; never more than Max in all.
type TXTPolicy struct {
	Always int
	Window time.Duration
	Max    int
}

// DefaultTXTPolicy: the 2 newest always (what acme-dns serves), every value
// of the last 10 minutes, at most 16.
var DefaultTXTPolicy = TXTPolicy{Always: 2, Window: 10 * time.Minute, Max: 16}

// Keep returns the records of recs (sorted newest first) that the policy
// keeps at time now. It does not allocate; the result aliases recs.
func (p TXTPolicy) Keep(recs []TXTRecord, now time.Time) []TXTRecord {
	n := 0
	for i, r := range recs {
		if i >= p.Max {
			break
		}
		if i >= p.Always && now.Sub(r.UpdatedAt) >= p.Window {
			break
		}
		n = i + 1
	}
	return recs[:n]
}

// Subdomain is one registered subdomain (or own name, IsOwnName) with its
// current TXT values and persist records (an own name has none), as loaded
// at start-up.
type Subdomain struct {
	Name    string
	Records []TXTRecord     // newest first
	Persist []PersistRecord // by issuer; served beside Records, never subject to a TXTPolicy
}

// Store is the contract of a storage engine.
//
// Every method is safe for concurrent use and honours ctx cancellation.
// A method that returns nil has made its change durable: it survives a crash
// of the process (and, with the default settings, of the machine).
// Errors wrap ErrNotFound, ErrConflict or ErrUnavailable where those apply.
type Store interface {
	// CreateAccount stores a new account. ErrConflict if the username or the
	// subdomain exists. It returns the zone serial after the change.
	CreateAccount(ctx context.Context, a Account) (serial uint32, err error)

	// Account returns the account with that username, or ErrNotFound.
	Account(ctx context.Context, username string) (Account, error)

	// UpdateKeyHash replaces the stored hash of an account's key with
	// newHash if it is still oldHash (a key rotation, or the upgrade of a
	// legacy bcrypt hash), so that of two concurrent changes exactly one
	// wins. ErrConflict if the stored hash is no longer oldHash (nothing
	// changes), ErrNotFound if there is no such account.
	UpdateKeyHash(ctx context.Context, username, oldHash, newHash string) error

	// SetTXT adds value to subdomain's TXT set (or refreshes its time if it
	// is there already), drops what policy no longer keeps, and returns the
	// values kept, newest first, with the zone serial after the change.
	SetTXT(ctx context.Context, subdomain, value string, at time.Time, policy TXTPolicy) (recs []TXTRecord, serial uint32, err error)

	// SetOwnTXT is SetTXT for an own name (IsOwnName: where the broker
	// serves its own dns-01 challenge values), which no account holds.
	// The values are part of the zone like an account's: Snapshot,
	// Subdomain and PruneTXT take own names too, and other nodes are told
	// of the change.
	SetOwnTXT(ctx context.Context, name, value string, at time.Time, policy TXTPolicy) (recs []TXTRecord, serial uint32, err error)

	// DeleteOwnTXT removes value from the own name's values and returns
	// the values left, newest first, with the zone serial after the
	// change (at is the time of the change). If value was not there
	// nothing changes and serial is 0.
	DeleteOwnTXT(ctx context.Context, name, value string, at time.Time) (recs []TXTRecord, serial uint32, err error)

	// PruneTXT deletes the values of subdomain that policy no longer keeps
	// at time now and returns how many it deleted. When it deletes any, the
	// zone serial moves and is returned (DNS stopped serving them when they
	// aged out, but secondaries copied them with the subdomain's last change
	// and must learn they are gone); otherwise serial is 0. An unknown
	// subdomain has nothing to prune.
	PruneTXT(ctx context.Context, subdomain string, now time.Time, policy TXTPolicy) (n int, serial uint32, err error)

	// Snapshot calls fn once per registered subdomain (with its TXT values,
	// newest first, and its persist records), then once per own name that
	// holds values, and returns the current zone serial. Used at start-up.
	Snapshot(ctx context.Context, fn func(Subdomain) error) (serial uint32, err error)

	// SetPersist stores rec (checked with rec.CheckSet) among
	// subdomain's persist records, replacing the one of the same Issuer,
	// and returns them all, by issuer, with the zone serial after the
	// change. ErrNotFound if no account has the subdomain, ErrTooMany if
	// it holds MaxPersistRecords of other issuers (nothing changes).
	SetPersist(ctx context.Context, subdomain string, rec PersistRecord) (recs []PersistRecord, serial uint32, err error)

	// DeletePersist removes subdomain's persist record of issuer and
	// returns those left, by issuer, with the zone serial after the
	// change. If it has none of that issuer nothing changes and serial is
	// 0. ErrNotFound if no account has the subdomain.
	DeletePersist(ctx context.Context, subdomain, issuer string) (recs []PersistRecord, serial uint32, err error)

	// PersistRecords returns subdomain's persist records, by issuer.
	// ErrNotFound if no account has the subdomain.
	PersistRecords(ctx context.Context, subdomain string) ([]PersistRecord, error)

	// DeleteAccount removes an account, its TXT values and its persist
	// records and returns the zone serial after the change. ErrNotFound if
	// there is no such account.
	DeleteAccount(ctx context.Context, username string) (serial uint32, err error)

	// DeleteUnusedAccount is DeleteAccount for an account last used at or
	// before cutoff (its newest value's time; its creation if it has no
	// values) that holds no persist record (those authorize issuance with
	// no update at all), checked in the same transaction as the delete, so
	// an update racing with a prune keeps its account. ErrInUse if it was
	// used after cutoff or holds a persist record (nothing changes),
	// ErrNotFound if there is no such account.
	DeleteUnusedAccount(ctx context.Context, username string, cutoff time.Time) (serial uint32, err error)

	// UpdateAllowFrom replaces the sources an account may update from.
	// ErrNotFound if there is no such account.
	UpdateAllowFrom(ctx context.Context, username string, allow []netip.Prefix) error

	// CreateAccountWithToken stores a new account registered with the
	// token tokenID, in one transaction with counting it against the
	// token's limit: ErrTokenInvalid (wrapped with the reason) if the token
	// is revoked, expired at a.CreatedAt or used up, ErrNotFound if there
	// is no such token, ErrConflict as CreateAccount.
	CreateAccountWithToken(ctx context.Context, a Account, tokenID string) (serial uint32, err error)

	// CreateToken stores a new registration token. ErrConflict if the ID
	// exists.
	CreateToken(ctx context.Context, t Token) error

	// Token returns the token with that ID, or ErrNotFound.
	Token(ctx context.Context, id string) (Token, error)

	// Tokens returns every token, oldest first.
	Tokens(ctx context.Context) ([]Token, error)

	// RevokeToken marks a token revoked at time at (a revoked token stays
	// listed). ErrNotFound if there is no such token.
	RevokeToken(ctx context.Context, id string, at time.Time) error

	// Accounts calls fn for every account, in subdomain order, with its
	// use. It streams: memory holds one account at a time, whatever their
	// number. fn must not write to the store.
	Accounts(ctx context.Context, fn func(AccountInfo) error) error

	// AccountBySubdomain returns the account that holds the subdomain name,
	// with its use as Accounts reports it, or ErrNotFound.
	AccountBySubdomain(ctx context.Context, name string) (AccountInfo, error)

	// SetDisabled disables (or enables again) an account. It does not
	// change the zone, so the serial stays. ErrNotFound if there is no such
	// account.
	SetDisabled(ctx context.Context, username string, disabled bool) error

	// Subdomain returns one registered subdomain with its values, newest
	// first, its persist records, and the zone serial, read together.
	// ErrNotFound if no account has it (for an own name: if it holds no
	// value). A node uses it to refresh a subdomain another node changed.
	Subdomain(ctx context.Context, name string) (Subdomain, uint32, error)

	// GetValue returns the named value (values.go), or ErrNotFound.
	GetValue(ctx context.Context, name string) (Value, error)

	// PutValue stores data under name, replacing any value there, with
	// the modification time at. It does not change the zone.
	PutValue(ctx context.Context, name string, data []byte, at time.Time) error

	// DeleteValue deletes the named value. ErrNotFound if there is none.
	DeleteValue(ctx context.Context, name string) error

	// ListValues describes every value whose name starts with prefix
	// ("" for all), in bytewise order of their names.
	ListValues(ctx context.Context, prefix string) ([]ValueInfo, error)

	// TryLock takes the lease name for owner until at+ttl if it is free,
	// expired at time at, or owner's already (then it is extended to
	// at+ttl), and reports whether owner holds it now. Of owners racing
	// for a free lease exactly one gets it. Times are the callers': nodes
	// sharing a database should keep their clocks in step (NTP), and a
	// holder should extend its lease well before it runs out.
	TryLock(ctx context.Context, name, owner string, at time.Time, ttl time.Duration) (bool, error)

	// Unlock releases the lease name if owner holds it; otherwise it does
	// nothing (the lease expired and someone else took it, or it was
	// never taken).
	Unlock(ctx context.Context, name, owner string) error

	// Ping checks that the database answers.
	Ping(ctx context.Context) error

	// Close releases the store. Pending writes finish first.
	Close() error
}
