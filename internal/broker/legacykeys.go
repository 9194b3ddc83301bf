package broker

import (
	"context"
	"log/slog"
	"time"

	"github.com/acmebroker/acmebroker/internal/secret"
	"github.com/acmebroker/acmebroker/storage"
)

// keyVerifier returns the API's key checker, bounded to perSecond bcrypt
// compares, and the scan that tells it whether bcrypt keys (accounts
// imported from acme-dns) exist. Until the scan is done it assumes they
// do, so no failure is cheap while it runs.
func keyVerifier(st storage.Store, perSecond int, logger *slog.Logger) (*secret.Verifier, func(context.Context)) {
	v := secret.NewVerifier(perSecond, time.Now)
	v.AssumeBcrypt(secret.DefaultBcryptCost)
	scan := func(ctx context.Context) {
		start := time.Now()
		n, maxCost := 0, 0
		err := st.Accounts(ctx, func(a storage.AccountInfo) error {
			if c := secret.BcryptCost(a.KeyHash); c > 0 {
				n++
				maxCost = max(maxCost, c)
			}
			return nil
		})
		if err != nil {
			if ctx.Err() == nil {
				logger.Warn("scan for legacy bcrypt keys failed; failed logins keep costing a bcrypt compare", "err", err)
			}
			return
		}
		v.AssumeBcrypt(maxCost)
		logger.Info("legacy bcrypt keys", "accounts", n, "cost", maxCost, "took", time.Since(start).Round(time.Millisecond))
	}
	return v, scan
}
