package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/internal/pgtest"
	"github.com/acmebroker/acmebroker/storage"
)

// BenchmarkSetTXT is the write of one /update, one after another, on the
// test database: its round trips and its commit.
func BenchmarkSetTXT(b *testing.B) {
	st, err := Open(context.Background(), pgtest.Schema(b), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	a := acct(1)
	if _, err := st.CreateAccount(ctx, a); err != nil {
		b.Fatal(err)
	}
	at := time.Now()
	i := 0
	for b.Loop() {
		i++
		// The default policy keeps 16 at most: past that each write also
		// deletes one.
		if _, _, err := st.SetTXT(ctx, a.Subdomain, fmt.Sprintf("%043d", i), at.Add(time.Duration(i)), storage.DefaultTXTPolicy); err != nil {
			b.Fatal(err)
		}
	}
}
