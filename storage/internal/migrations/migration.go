// Package migrations finds a storage engine's versioned SQL files and orders
// them; applying them is each engine's own business (SQLite takes a write
// transaction, PostgreSQL an advisory lock).
package migrations

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Migration is one schema change, read from <dir>/NNNN_name.sql.
type Migration struct {
	Version int    // NNNN, from 1
	Name    string // the file name without ".sql", e.g. "0001_init"
	SQL     string
}

// Load returns the *.sql files of dir in fsys sorted by version.
// A file is named <version>_<description>.sql, version a positive decimal
// number. Versions must run 1, 2, 3, ... without gaps or duplicates, so a
// mistake in naming fails every test instead of skipping a change.
func Load(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		name := strings.TrimSuffix(e.Name(), ".sql")
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 || num[0] == '+' {
			return nil, fmt.Errorf("migrations: %s: name must be <version>_<description>.sql with a positive version, e.g. 0002_add_index.sql", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("migrations: %w", err)
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version != i+1 {
			if i > 0 && ms[i-1].Version == m.Version {
				return nil, fmt.Errorf("migrations: %s and %s have the same version", ms[i-1].Name, m.Name)
			}
			return nil, fmt.Errorf("migrations: version %d is missing (found %s)", i+1, m.Name)
		}
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("migrations: no *.sql files in %s", dir)
	}
	return ms, nil
}
