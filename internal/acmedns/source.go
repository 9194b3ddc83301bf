// Package acmedns reads an acme-dns database (SQLite or PostgreSQL, schema
// version 1, as written by acme-dns v0.7 to v2.x) and imports its accounts
// and current TXT values into a broker's store.
//
// acme-dns keeps three tables:
//
//	acmedns(Name, Value)                     db_version = "1"
//	records(Username, Password, Subdomain, AllowFrom)
//	                                         Password is a bcrypt hash (a BLOB in SQLite),
//	                                         AllowFrom a JSON array of CIDRs
//	txt(Subdomain, Value, LastUpdate)        txt_limit rows per subdomain (2 by default),
//	                                         Value '' until first set, LastUpdate Unix seconds
//
// v2.0 kept this schema; it only added an index on txt(Subdomain), renamed
// the SQLite engine ("sqlite3" -> "sqlite") and made the number of txt rows
// per subdomain configurable. Both are read the same way here.
package acmedns

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver, for PostgreSQL sources
	_ "github.com/mattn/go-sqlite3"    // the "sqlite3" driver, for SQLite sources
)

// Source is an open acme-dns database, read only.
type Source struct {
	db       *sql.DB
	postgres bool
	// Version is acme-dns's db_version.
	Version string
}

// Record is one row of acme-dns's records table, as stored (NULLs read as
// empty strings; AllowFromNull tells a NULL AllowFrom apart from ”).
type Record struct {
	Username      string
	Password      string
	Subdomain     string
	AllowFrom     string
	AllowFromNull bool
}

// TXTRow is one non-empty row of acme-dns's txt table.
type TXTRow struct {
	Subdomain  string
	Value      string
	LastUpdate int64 // Unix seconds; 0 if NULL
}

// IsPostgres says whether from names a PostgreSQL database (a URL or a
// key=value DSN) rather than a SQLite file.
func IsPostgres(from string) bool {
	f := strings.TrimSpace(from)
	if strings.HasPrefix(f, "postgres://") || strings.HasPrefix(f, "postgresql://") {
		return true
	}
	// libpq key=value form: "host=... dbname=... user=..."
	return strings.Contains(f, "=") && (strings.Contains(f, "host=") || strings.Contains(f, "dbname="))
}

// Open opens the acme-dns database from: a SQLite file path or a PostgreSQL
// DSN. A SQLite file is opened read only and must exist. It checks that the
// database has acme-dns's tables at a version this package reads.
func Open(ctx context.Context, from string) (*Source, error) {
	s := &Source{postgres: IsPostgres(from)}
	var err error
	if s.postgres {
		s.db, err = sql.Open("pgx", from)
	} else {
		var fi os.FileInfo
		if fi, err = os.Stat(from); err != nil {
			return nil, fmt.Errorf("acme-dns database %s: %w (give the file named by connection in acme-dns's config.cfg)", from, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("acme-dns database %s is not a file", from)
		}
		abs, aerr := filepath.Abs(from)
		if aerr != nil {
			return nil, fmt.Errorf("acme-dns database %s: %w", from, aerr)
		}
		u := url.URL{Scheme: "file", Path: abs, RawQuery: "mode=ro"}
		s.db, err = sql.Open("sqlite3", u.String())
	}
	if err != nil {
		return nil, fmt.Errorf("open acme-dns database: %w", err)
	}
	if err := s.check(ctx); err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database.
func (s *Source) Close() error { return s.db.Close() }

func (s *Source) check(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("acme-dns database: %w", err)
	}
	var v sql.NullString
	err := s.db.QueryRowContext(ctx, `SELECT Value FROM acmedns WHERE Name = 'db_version'`).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return errors.New("acme-dns database has no db_version: it was written by acme-dns before v0.7; start a current acme-dns on it once (it upgrades the schema), stop it, then import")
	case err != nil:
		return fmt.Errorf("not an acme-dns database (reading its acmedns table: %v)", err)
	}
	s.Version = v.String
	if s.Version != "1" {
		return fmt.Errorf("acme-dns database version %q is not supported (this import reads version 1, acme-dns v0.7 to v2.x)", s.Version)
	}
	for _, q := range []string{
		`SELECT Username, Password, Subdomain, AllowFrom FROM records WHERE 1 = 0`,
		`SELECT Subdomain, Value, LastUpdate FROM txt WHERE 1 = 0`,
	} {
		rows, err := s.db.QueryContext(ctx, q)
		if err != nil {
			return fmt.Errorf("not an acme-dns database (%s: %v)", q, err)
		}
		rows.Close()
	}
	return nil
}

// order sorts by subdomain in byte order on both engines, so that the two
// streams Accounts and TXT can be merged in Go.
func (s *Source) order(col string) string {
	if s.postgres {
		return col + ` COLLATE "C"`
	}
	return col
}

// records returns the rows of the records table, in byte order of
// Subdomain.
func (s *Source) records(ctx context.Context) (*sql.Rows, error) {
	q := `SELECT COALESCE(Username, ''), COALESCE(Password, ''), COALESCE(Subdomain, ''), AllowFrom
	      FROM records ORDER BY ` + s.order("COALESCE(Subdomain, '')") + `, ` + s.order("COALESCE(Username, '')")
	rows, err := s.db.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("acme-dns database: read records: %w", err)
	}
	return rows, nil
}

func scanRecord(rows *sql.Rows) (Record, error) {
	var r Record
	var user, pass, sub []byte // a BLOB in SQLite (bcrypt hashes are bound as []byte by acme-dns)
	var allow sql.NullString
	if err := rows.Scan(&user, &pass, &sub, &allow); err != nil {
		return Record{}, fmt.Errorf("acme-dns database: read records: %w", err)
	}
	r.Username, r.Password, r.Subdomain = string(user), string(pass), string(sub)
	r.AllowFrom, r.AllowFromNull = allow.String, !allow.Valid
	return r, nil
}

// txtRows returns the non-empty rows of the txt table, in byte order of
// Subdomain, oldest first within one subdomain.
func (s *Source) txtRows(ctx context.Context) (*sql.Rows, error) {
	q := `SELECT Subdomain, Value, COALESCE(LastUpdate, 0) FROM txt WHERE Value <> ''
	      ORDER BY ` + s.order("Subdomain") + `, COALESCE(LastUpdate, 0), ` + s.order("Value")
	rows, err := s.db.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("acme-dns database: read txt: %w", err)
	}
	return rows, nil
}

func scanTXT(rows *sql.Rows) (TXTRow, error) {
	var t TXTRow
	var sub, val []byte
	if err := rows.Scan(&sub, &val, &t.LastUpdate); err != nil {
		return TXTRow{}, fmt.Errorf("acme-dns database: read txt: %w", err)
	}
	t.Subdomain, t.Value = string(sub), string(val)
	return t, nil
}
