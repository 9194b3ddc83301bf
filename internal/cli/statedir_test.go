package cli

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRootStateDir: root's client state lives apart from the broker's
// /var/lib/acmebroker, except for a client set up there before the split,
// which keeps working until its files are moved.
func TestRootStateDir(t *testing.T) {
	accounts := func(dir string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "accounts.json"), []byte("{}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name         string
		inNew, inOld bool
		want         string // "new" or "old"
	}{
		{"fresh machine", false, false, "new"},
		{"broker host, no client before", false, false, "new"},
		{"client set up before the split", false, true, "old"},
		{"client moved", true, true, "new"},
		{"client set up after the split", true, false, "new"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			newDir, oldDir := filepath.Join(base, "acmebroker-client"), filepath.Join(base, "acmebroker")
			if err := os.MkdirAll(oldDir, 0o700); err != nil { // the broker's directory exists
				t.Fatal(err)
			}
			if tc.inNew {
				accounts(newDir)
			}
			if tc.inOld {
				accounts(oldDir)
			}
			want := newDir
			if tc.want == "old" {
				want = oldDir
			}
			if got := rootState(newDir, oldDir); got != want {
				t.Errorf("rootState = %s, want %s", got, want)
			}
		})
	}
	if rootStateDir == legacyRootStateDir {
		t.Fatal("the client's and the broker's state directories must differ")
	}
}
