package client

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"
)

// ARICertID is the RFC 9773 identifier of a certificate:
// base64url(authority key identifier) "." base64url(DER serial number).
func ARICertID(leaf *x509.Certificate) (string, error) {
	if len(leaf.AuthorityKeyId) == 0 {
		return "", errors.New("the certificate has no authority key identifier")
	}
	serial := leaf.SerialNumber.Bytes()
	if len(serial) == 0 || serial[0]&0x80 != 0 || leaf.SerialNumber.Sign() == 0 {
		serial = append([]byte{0}, serial...) // DER INTEGER: positive, minimal
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(leaf.AuthorityKeyId) + "." + enc.EncodeToString(serial), nil
}

// RenewalWindow is what the CA suggests through ARI.
type RenewalWindow struct {
	Start, End     time.Time
	ExplanationURL string
}

// renewalInfoURL reads the directory's renewalInfo endpoint ("" if none).
func renewalInfoURL(ctx context.Context, hc *http.Client, caURL string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, caURL, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("ACME directory %s: %w", caURL, err)
	}
	defer resp.Body.Close()
	var dir struct {
		RenewalInfo string `json:"renewalInfo"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&dir); err != nil {
		return "", fmt.Errorf("ACME directory %s: %w", caURL, err)
	}
	return dir.RenewalInfo, nil
}

// FetchRenewalWindow asks the CA's ARI endpoint for leaf's window.
func FetchRenewalWindow(ctx context.Context, hc *http.Client, ariURL string, leaf *x509.Certificate) (RenewalWindow, error) {
	id, err := ARICertID(leaf)
	if err != nil {
		return RenewalWindow{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(ariURL, "/")+"/"+id, nil)
	if err != nil {
		return RenewalWindow{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return RenewalWindow{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return RenewalWindow{}, fmt.Errorf("renewalInfo: HTTP %d", resp.StatusCode)
	}
	var ri struct {
		SuggestedWindow struct {
			Start time.Time `json:"start"`
			End   time.Time `json:"end"`
		} `json:"suggestedWindow"`
		ExplanationURL string `json:"explanationURL"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ri); err != nil {
		return RenewalWindow{}, fmt.Errorf("renewalInfo: %w", err)
	}
	w := RenewalWindow{Start: ri.SuggestedWindow.Start, End: ri.SuggestedWindow.End, ExplanationURL: ri.ExplanationURL}
	if w.Start.IsZero() || w.End.Before(w.Start) {
		return RenewalWindow{}, errors.New("renewalInfo: no usable suggestedWindow")
	}
	return w, nil
}

// Decision says whether a certificate is due for renewal, and why.
type Decision struct {
	Due    bool
	At     time.Time // when it is (or was) due
	Reason string
}

// Decide picks the renewal time of c: a random moment in the CA's ARI window
// when the CA offers one (kept in renewal.json so hourly runs agree), else
// when a third of the lifetime remains, less a small random jitter.
func (is *Issuer) Decide(ctx context.Context, c *Certificate, hc *http.Client, rnd *rand.Rand) Decision {
	now := is.now()
	if ariURL, err := renewalInfoURL(ctx, hc, c.Renewal.CAURL); err == nil && ariURL != "" {
		if w, err := FetchRenewalWindow(ctx, hc, ariURL, c.Leaf); err == nil {
			at := c.Renewal.RenewAt
			if at.IsZero() || at.Before(w.Start) || at.After(w.End) {
				span := w.End.Sub(w.Start)
				at = w.Start
				if span > 0 {
					at = w.Start.Add(time.Duration(rnd.Int64N(int64(span))))
				}
				c.Renewal.RenewAt, c.Renewal.ARIWindowAt = at, w.End
				_ = is.State.UpdateRenewal(c.Name, c.Renewal)
			}
			reason := fmt.Sprintf("CA renewal window %s to %s", w.Start.UTC().Format(time.RFC3339), w.End.UTC().Format(time.RFC3339))
			if w.ExplanationURL != "" {
				reason += " (" + w.ExplanationURL + ")"
			}
			return Decision{Due: !now.Before(at), At: at, Reason: reason}
		}
	}
	life := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)
	at := c.Leaf.NotAfter.Add(-life / 3)
	if j := int64(life / 50); j > 0 {
		at = at.Add(-time.Duration(rnd.Int64N(j)))
	}
	return Decision{Due: !now.Before(at), At: at, Reason: "a third of the lifetime left"}
}

// Renew renews certificate name if due (or if force), runs its deploy hook
// after a renewal, and reports whether it renewed. A failed renewal leaves
// the working certificate in place.
func (is *Issuer) Renew(ctx context.Context, name string, force bool, hc *http.Client, rnd *rand.Rand) (bool, error) {
	c, err := is.State.LoadCertificate(name)
	if err != nil {
		return false, err
	}
	if !force {
		d := is.Decide(ctx, c, hc, rnd)
		if !d.Due {
			is.say("%s: not due until %s (%s)", name, d.At.UTC().Format(time.RFC3339), d.Reason)
			return false, nil
		}
		is.say("%s: due since %s (%s); renewing", name, d.At.UTC().Format(time.RFC3339), d.Reason)
	} else {
		is.say("%s: renewing (forced)", name)
	}
	r := c.Renewal
	req := ObtainRequest{
		Domains: r.Domains, CertName: name, CAURL: r.CAURL, Email: r.Email, KeyType: r.KeyType,
		Profile: r.Profile, PreferredChain: r.PreferredChain, CARoot: r.CARoot, DeployHook: r.DeployHook,
	}
	dir, err := is.Obtain(ctx, req)
	if err != nil {
		return false, fmt.Errorf("renewing %s failed; the current certificate (valid until %s) is untouched: %w",
			name, c.Leaf.NotAfter.UTC().Format(time.RFC3339), err)
	}
	if r.DeployHook != "" {
		if err := RunDeployHook(ctx, r.DeployHook, name, dir, r.Domains); err != nil {
			return true, err
		}
	}
	return true, nil
}

// RunDeployHook runs cmd with sh -c, telling it where the new files are.
func RunDeployHook(ctx context.Context, cmd, name, dir string, domains []string) error {
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	c.Env = append(os.Environ(),
		"ACMEBROKER_CERT_NAME="+name,
		"ACMEBROKER_CERT_DIR="+dir,
		"ACMEBROKER_DOMAINS="+strings.Join(domains, " "),
		"RENEWED_LINEAGE="+dir, // certbot's name for the same thing
	)
	out, err := c.CombinedOutput()
	if err != nil {
		return fmt.Errorf("deploy hook %q failed (%v): %s", cmd, err, strings.TrimSpace(string(out)))
	}
	return nil
}
