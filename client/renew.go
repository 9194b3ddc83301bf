package client

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
// when a third of the lifetime remains, less a small random jitter. A
// revoked or expired certificate is due at once. Call it under the
// certificate's lock (it may write renewal.json).
func (is *Issuer) Decide(ctx context.Context, c *Certificate, hc *http.Client, rnd *rand.Rand) Decision {
	now := is.now()
	if d, ok := overdue(c, now); ok {
		return d
	}
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

func overdue(c *Certificate, now time.Time) (Decision, bool) {
	if !c.Renewal.RevokedAt.IsZero() {
		return Decision{Due: true, At: c.Renewal.RevokedAt, Reason: "revoked"}, true
	}
	if !now.Before(c.Leaf.NotAfter) {
		return Decision{Due: true, At: c.Leaf.NotAfter, Reason: "expired"}, true
	}
	return Decision{}, false
}

// CertState is what `client list` shows of a certificate, without asking
// the CA: its state and when it is (or was) due for renewal.
type CertState struct {
	State     string // "valid", "due", "expired" or "revoked"
	RenewalAt time.Time
	Reason    string
}

// StateOf tells c's state at now from what is stored: the renewal time
// chosen in the CA's ARI window at the last renew run, else the point where
// a third of the lifetime remains.
func StateOf(c *Certificate, now time.Time) CertState {
	if d, ok := overdue(c, now); ok {
		return CertState{State: d.Reason, RenewalAt: now, Reason: d.Reason}
	}
	at, reason := c.Renewal.RenewAt, "in the CA's renewal window (ARI)"
	if at.IsZero() {
		life := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)
		at, reason = c.Leaf.NotAfter.Add(-life/3), "a third of the lifetime left"
	}
	if !now.Before(at) {
		return CertState{State: "due", RenewalAt: at, Reason: reason}
	}
	return CertState{State: "valid", RenewalAt: at, Reason: reason}
}

// RenewOptions say how Renew decides and what it runs.
type RenewOptions struct {
	Force bool
	HTTP  *http.Client // for the CA's ARI endpoint
	Rand  *rand.Rand
	// Since is when this run started: a certificate issued since then was
	// renewed by another run while this one waited for its lock, and is
	// not renewed again (nor its hook run).
	Since time.Time
	// BeforeRenewal is called once the certificate is found due, before
	// it is renewed (the CLI runs its --pre-hook there, once per run).
	BeforeRenewal func() error
	// RateLimitWait and PropagationTimeout as in ObtainRequest.
	RateLimitWait      time.Duration
	PropagationTimeout time.Duration
	// DeployHook overrides the stored hook when not "".
	DeployHook string
}

// RenewResult says what Renew did.
type RenewResult struct {
	Renewed   bool
	Meanwhile bool // another run renewed it while this one waited
	Issued    Issued
}

// Renew renews certificate name if due (or if o.Force), under its lock,
// runs its deploy hook after a renewal, and says what it did. A failed
// renewal leaves the working certificate in place.
func (is *Issuer) Renew(ctx context.Context, name string, o RenewOptions) (RenewResult, error) {
	lk, err := is.State.LockCertificate(ctx, name, is.lockOptions())
	if err != nil {
		return RenewResult{}, err
	}
	defer lk.Unlock()
	c, err := is.State.LoadCertificate(name)
	if err != nil {
		return RenewResult{}, err
	}
	if !o.Since.IsZero() && !c.Renewal.IssuedAt.Before(o.Since) {
		is.say("%s: renewed by another run at %s while this one waited; not renewing it again", name, c.Renewal.IssuedAt.UTC().Format(time.RFC3339))
		return RenewResult{Meanwhile: true}, nil
	}
	if o.DeployHook != "" && o.DeployHook != c.Renewal.DeployHook {
		c.Renewal.DeployHook = o.DeployHook // kept for the next runs, as certbot does
		if err := is.State.UpdateRenewal(name, c.Renewal); err != nil {
			return RenewResult{}, err
		}
	}
	if !o.Force {
		rnd := o.Rand
		if rnd == nil {
			rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
		}
		hc := o.HTTP
		if hc == nil {
			hc = http.DefaultClient
		}
		d := is.Decide(ctx, c, hc, rnd)
		if !d.Due {
			is.say("%s: not due until %s (%s)", name, d.At.UTC().Format(time.RFC3339), d.Reason)
			return RenewResult{}, nil
		}
		is.say("%s: due since %s (%s); renewing", name, d.At.UTC().Format(time.RFC3339), d.Reason)
	} else {
		is.say("%s: renewing (forced)", name)
	}
	if o.BeforeRenewal != nil {
		if err := o.BeforeRenewal(); err != nil {
			return RenewResult{}, err
		}
	}
	r := c.Renewal
	req := ObtainRequest{
		Domains: r.Domains, CertName: name, CAURL: r.CAURL, Email: r.Email, KeyType: r.KeyType,
		Profile: r.Profile, PreferredChain: r.PreferredChain, CARoot: r.CARoot, DeployHook: r.DeployHook,
		RateLimitWait: o.RateLimitWait, PropagationTimeout: o.PropagationTimeout,
		// The type it was issued with; a dns-persist-01 record is used as
		// it stands (SetPersist false): a renewal never writes one.
		Challenge: r.Challenge,
	}
	if c.Renewal.RevokedAt.IsZero() {
		if id, err := ARICertID(c.Leaf); err == nil {
			req.Replaces = id
		}
	}
	if err := req.Check(); err != nil {
		return RenewResult{}, fmt.Errorf("%s/renewal.json: %w", c.Dir, err)
	}
	iss, err := is.obtainLocked(ctx, req)
	if err != nil {
		return RenewResult{}, fmt.Errorf("renewing %s failed; the current certificate (valid until %s) is untouched: %w",
			name, c.Leaf.NotAfter.UTC().Format(time.RFC3339), err)
	}
	res := RenewResult{Renewed: true, Issued: iss}
	if r.DeployHook != "" {
		if err := RunHook(ctx, "deploy", r.DeployHook, &iss, is.logger()); err != nil {
			return res, err
		}
	}
	return res, nil
}

// RunHook runs a --pre-hook, --post-hook or --deploy-hook command with
// /bin/sh -c. The names are never put into the command text: a deploy
// hook finds them, as certbot's do, in RENEWED_LINEAGE (the certificate's
// directory) and RENEWED_DOMAINS (its names, space-separated). The hook's
// output goes to the log, line by line.
func RunHook(ctx context.Context, kind, cmd string, cert *Issued, log *slog.Logger) error {
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	c.Env = os.Environ()
	if cert != nil {
		c.Env = append(c.Env,
			"RENEWED_LINEAGE="+cert.Dir,
			"RENEWED_DOMAINS="+strings.Join(cert.Domains, " "),
		)
	}
	c.WaitDelay = 5 * time.Second
	out, err := c.CombinedOutput()
	text := strings.TrimRight(string(out), "\n")
	if log != nil && text != "" {
		lines := strings.Split(text, "\n")
		if len(lines) > 200 {
			lines = append(lines[:100], append([]string{"..."}, lines[len(lines)-99:]...)...)
		}
		for _, l := range lines {
			log.Info("hook output", "hook", kind, "line", l)
		}
	}
	if err != nil {
		tail := text
		if len(tail) > 2000 {
			tail = "..." + tail[len(tail)-2000:]
		}
		if log != nil {
			log.Error("hook failed", "hook", kind, "err", err)
		}
		return fmt.Errorf("%s hook %q failed (%v): %s", kind, cmd, err, tail)
	}
	if log != nil {
		log.Info("hook ran", "hook", kind)
	}
	return nil
}
