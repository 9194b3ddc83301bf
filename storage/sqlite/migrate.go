package sqlite

import (
	"io/fs"

	"github.com/acmebroker/acmebroker/storage/internal/migrations"
)

// migration is one schema change of this engine's.
type migration = migrations.Migration

// loadMigrations returns the engine's *.sql files of dir in order (see
// migrations.Load).
func loadMigrations(fsys fs.FS, dir string) ([]migration, error) { return migrations.Load(fsys, dir) }
