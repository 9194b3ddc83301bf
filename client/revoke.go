package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/mholt/acmez/v3/acme"
)

// Revoke revokes the stored certificate name with its CA, under the
// certificate's lock, and records it in renewal.json (so `list` shows it
// revoked and the next renew replaces it). The request is signed with the
// certificate's own key, which RFC 8555 allows: it works even when the
// ACME account that ordered it is gone. reason is an RFC 5280 reason code.
func (is *Issuer) Revoke(ctx context.Context, name string, reason int) error {
	lk, err := is.State.LockCertificate(ctx, name, is.lockOptions())
	if err != nil {
		return err
	}
	defer lk.Unlock()
	c, err := is.State.LoadCertificate(name)
	if err != nil {
		return err
	}
	kb, err := os.ReadFile(filepath.Join(c.Dir, "privkey.pem"))
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	key, err := parsePrivateKey(kb)
	if err != nil {
		return fmt.Errorf("state: %s/privkey.pem: %w", c.Dir, err)
	}
	hc := is.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 60 * time.Second}
	}
	ac := &acme.Client{Directory: c.Renewal.CAURL, HTTPClient: hc, UserAgent: "acmebroker", Logger: is.acmeLogger()}
	err = ac.RevokeCertificate(ctx, acme.Account{}, c.Leaf, key, reason)
	var p acme.Problem
	switch {
	case err == nil:
		is.say("Revoked %s (serial %x).", name, c.Leaf.SerialNumber)
	case errors.As(err, &p) && p.Type == acme.ProblemTypeAlreadyRevoked:
		is.say("%s (serial %x) was already revoked.", name, c.Leaf.SerialNumber)
	default:
		return fmt.Errorf("revoking %s: %s", name, describeACME(err))
	}
	c.Renewal.RevokedAt = is.now()
	if err := is.State.UpdateRenewal(name, c.Renewal); err != nil {
		return fmt.Errorf("revoked, but not recorded: %w", err)
	}
	is.logger().Info("certificate revoked", "cert_name", name, "serial", fmt.Sprintf("%x", c.Leaf.SerialNumber), "reason", reason)
	return nil
}
