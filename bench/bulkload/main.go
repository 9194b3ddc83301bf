// Command bulkload fills a broker database with many accounts at once, for
// the large-scale benchmark (bench/scale.sh): straight into SQLite in large
// transactions, not through the API. Each account gets a random username,
// key and subdomain and two TXT values older than any window, so DNS serves
// exactly two values per name, as it would for accounts in steady use.
//
// It writes, next to the database:
//   - accounts.json: the credentials of -creds randomly chosen accounts
//     (for apiload -accounts-file), mode 0600;
//   - dnsperf-queries.txt: every name once, shuffled ("<sub>.<zone> TXT");
//   - names.txt: every name with each of its values ("<sub>.<zone>. value"
//     lines), for the reference servers of bench/run.sh.
package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"
	_ "github.com/mattn/go-sqlite3"

	"github.com/acmebroker/acmebroker/internal/secret"
	"github.com/acmebroker/acmebroker/storage/sqlite"
)

type cred struct {
	Username   string   `json:"username"`
	Password   string   `json:"password"`
	Fulldomain string   `json:"fulldomain"`
	Subdomain  string   `json:"subdomain"`
	Allowfrom  []string `json:"allowfrom"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bulkload:", err)
		os.Exit(1)
	}
}

func run() error {
	dbPath := flag.String("db", "", "SQLite database to create (must not exist)")
	n := flag.Int("accounts", 1_000_000, "accounts to create")
	creds := flag.Int("creds", 20_000, "accounts whose credentials go to accounts.json")
	zone := flag.String("zone", "auth.example.org", "the broker's zone")
	batch := flag.Int("batch", 50_000, "accounts per transaction")
	flag.Parse()
	if *dbPath == "" || *n < 1 || *creds < 0 || *batch < 1 {
		return errors.New("usage: bulkload -db FILE [-accounts N] [-creds K] [-zone Z]")
	}
	if _, err := os.Stat(*dbPath); err == nil {
		return fmt.Errorf("%s exists; bulkload makes a new database", *dbPath)
	}
	ctx := context.Background()
	// The store creates the schema (its migrations), so the layout is
	// exactly what the broker expects.
	st, err := sqlite.Open(ctx, *dbPath, sqlite.Options{})
	if err != nil {
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}
	db, err := sql.Open("sqlite3", "file:"+*dbPath+"?_journal_mode=WAL&_synchronous=OFF&_foreign_keys=1")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	start := time.Now()
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	pick := make(map[int]bool, *creds)
	for _, i := range rng.Perm(*n)[:min(*creds, *n)] {
		pick[i] = true
	}
	var kept []cred
	names := make([]string, 0, *n)
	vf, err := os.Create(filepath.Join(filepath.Dir(*dbPath), "names.txt"))
	if err != nil {
		return err
	}
	defer vf.Close()
	values := bufio.NewWriter(vf)
	old := time.Now().Add(-time.Hour)
	val := make([]byte, 32)
	for lo := 0; lo < *n; lo += *batch {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		insA, err := tx.Prepare(`INSERT INTO accounts (username, key_hash, subdomain, allow_from, created_at) VALUES (?, ?, ?, '[]', ?)`)
		if err != nil {
			return err
		}
		insT, err := tx.Prepare(`INSERT INTO txt_records (subdomain, value, updated_at) VALUES (?, ?, ?)`)
		if err != nil {
			return err
		}
		for i := lo; i < min(lo+*batch, *n); i++ {
			key, err := secret.NewKey()
			if err != nil {
				return err
			}
			hash, err := secret.Hash(key)
			if err != nil {
				return err
			}
			user, sub := uuid.NewString(), uuid.NewString()
			if _, err := insA.Exec(user, hash, sub, old.UnixNano()); err != nil {
				return fmt.Errorf("account %d: %w", i, err)
			}
			for v := range 2 {
				for j := range val {
					val[j] = byte(rng.Uint32())
				}
				txt := base64.RawURLEncoding.EncodeToString(val)[:43]
				if _, err := insT.Exec(sub, txt, old.Add(time.Duration(v)*time.Second).UnixNano()); err != nil {
					return fmt.Errorf("txt of account %d: %w", i, err)
				}
				fmt.Fprintf(values, "%s.%s. %s\n", sub, *zone, txt)
			}
			names = append(names, sub+"."+*zone)
			if pick[i] {
				kept = append(kept, cred{Username: user, Password: key, Fulldomain: sub + "." + *zone, Subdomain: sub, Allowfrom: []string{}})
			}
		}
		insA.Close()
		insT.Close()
		if err := tx.Commit(); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "\rbulkload: %d/%d accounts (%s)", min(lo+*batch, *n), *n, time.Since(start).Round(time.Second))
	}
	fmt.Fprintln(os.Stderr)
	if _, err := db.ExecContext(ctx, `UPDATE zone_meta SET serial = ? WHERE id = 1`, time.Now().Unix()); err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return err
	}

	if err := values.Flush(); err != nil {
		return err
	}
	if err := vf.Close(); err != nil {
		return err
	}
	dir := filepath.Dir(*dbPath)
	b, err := json.Marshal(kept)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "accounts.json"), b, 0o600); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "dnsperf-queries.txt"))
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, i := range rng.Perm(len(names)) {
		fmt.Fprintf(w, "%s TXT\n", names[i])
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bulkload: %d accounts, %d TXT values in %s\n", *n, 2**n, time.Since(start).Round(time.Millisecond))
	return nil
}
