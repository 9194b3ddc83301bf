package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// BrokerAccount is what /register returns, plus the API it was made on. Its
// JSON form is the one lego and other acme-dns clients store, so a state file
// can be shared with them.
type BrokerAccount struct {
	FullDomain string   `json:"fulldomain"`
	SubDomain  string   `json:"subdomain"`
	Username   string   `json:"username"`
	Password   string   `json:"password"`
	ServerURL  string   `json:"server_url"`
	AllowFrom  []string `json:"allowfrom,omitempty"`
}

// BrokerError is a failed call to the broker's API, with what to do about it.
type BrokerError struct {
	Op     string // "register", "update"
	URL    string
	Status int    // 0: no HTTP answer
	Code   string // the API's "error" string, if any
	Detail string
	Err    error // transport error, if any
}

func (e *BrokerError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "broker %s at %s: ", e.Op, e.URL)
	switch {
	case e.Status == 0:
		fmt.Fprintf(&b, "no answer (%v): is the broker running and is --api right?", e.Err)
	case e.Status == http.StatusUnauthorized:
		b.WriteString("401 forbidden: the broker refused these credentials for this subdomain, or this host's address is outside the account's allowfrom; register again (acmebroker client register) or fix --allow-from")
	case e.Status == http.StatusNotFound && e.Op == "register":
		b.WriteString("404: registration is disabled on this broker (or --api has the wrong path); ask its admin for an account")
	default:
		fmt.Fprintf(&b, "HTTP %d", e.Status)
		if e.Code != "" {
			fmt.Fprintf(&b, " %s", e.Code)
		}
		if e.Detail != "" {
			fmt.Fprintf(&b, ": %s", e.Detail)
		}
		if e.Status >= 500 {
			b.WriteString(" (a problem on the broker's side; try again later)")
		}
	}
	return b.String()
}

func (e *BrokerError) Unwrap() error { return e.Err }

// BrokerClient calls a broker's acme-dns-compatible API.
type BrokerClient struct {
	HTTP *http.Client // nil: a client with a 30 s timeout
	// MaxWait caps how long one call waits, in all, for the broker's
	// Retry-After (429 rate limits, 503 while its database is away); 0
	// means 2 minutes.
	MaxWait time.Duration
	// Wait is told when a call waits for Retry-After (nil: silent).
	Wait func(msg string)
}

func (c *BrokerClient) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 30 * time.Second}
}

// joinURL appends path to base, keeping any path prefix base has.
func joinURL(base, path string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(base))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("broker API URL %q must look like https://broker.example.org", base)
	}
	u.Path = strings.TrimRight(u.Path, "/") + path
	return u.String(), nil
}

// Register creates an account on the broker at api.
func (c *BrokerClient) Register(ctx context.Context, api string, allowFrom []string) (BrokerAccount, error) {
	u, err := joinURL(api, "/register")
	if err != nil {
		return BrokerAccount{}, err
	}
	var body []byte
	if len(allowFrom) > 0 {
		body, _ = json.Marshal(map[string][]string{"allowfrom": allowFrom})
	}
	var acct BrokerAccount
	if err := c.call(ctx, "register", http.MethodPost, u, body, nil, http.StatusCreated, &acct); err != nil {
		return BrokerAccount{}, err
	}
	if acct.Username == "" || acct.Password == "" || acct.FullDomain == "" || acct.SubDomain == "" {
		return BrokerAccount{}, &BrokerError{Op: "register", URL: u, Status: http.StatusCreated, Detail: "the answer lacks username, password, fulldomain or subdomain: is this an acme-dns compatible broker?"}
	}
	acct.ServerURL = api
	return acct, nil
}

// Update sets value as a TXT value of the account's subdomain. A 429 or 503
// answer with Retry-After is retried after that time, up to MaxWait in all.
func (c *BrokerClient) Update(ctx context.Context, acct BrokerAccount, value string) error {
	u, err := joinURL(acct.ServerURL, "/update")
	if err != nil {
		return err
	}
	b, _ := json.Marshal(map[string]string{"subdomain": acct.SubDomain, "txt": value})
	var out struct {
		TXT string `json:"txt"`
	}
	return c.call(ctx, "update", http.MethodPost, u, b, authHeader(acct), http.StatusOK, &out)
}

func authHeader(acct BrokerAccount) http.Header {
	return http.Header{"X-Api-User": {acct.Username}, "X-Api-Key": {acct.Password}}
}

// BrokerLimits are what a broker applies to one account (GET /account).
type BrokerLimits struct {
	// Plain: the broker has no GET /account (acme-dns, or an older
	// acmebroker): the other fields are acme-dns's behaviour, and the
	// credentials have not been checked.
	Plain bool
	// TXTMax values at most are served at once; the newest TXTAlways
	// whatever their age, the others while younger than TXTWindow.
	TXTMax, TXTAlways int
	TXTWindow         time.Duration
	// UpdatesPerMinute is the broker's rate limit on /update for the
	// account; 0: none.
	UpdatesPerMinute int
}

// plainLimits is what acme-dns does: 2 values, rotated, never expiring.
var plainLimits = BrokerLimits{Plain: true, TXTMax: 2, TXTAlways: 2}

// Batch is how many values of one account may wait for validation at
// once without pushing each other out of what the broker serves.
func (l BrokerLimits) Batch() int {
	n := l.TXTMax
	if l.TXTWindow <= 0 {
		n = min(n, l.TXTAlways)
	}
	return max(1, n)
}

// accountInfo is the JSON of GET /account (api/account.go).
type accountInfo struct {
	Username             string   `json:"username"`
	Subdomain            string   `json:"subdomain"`
	Fulldomain           string   `json:"fulldomain"`
	AllowFrom            []string `json:"allowfrom"`
	TXTMax               *int     `json:"txt_max"`
	TXTAlways            *int     `json:"txt_always"`
	TXTWindowSeconds     *int     `json:"txt_window_seconds"`
	UpdateLimitPerMinute *int     `json:"update_limit_per_minute"`
}

// ParseAccountLimits reads a GET /account answer. Missing or absurd fields
// fall back to acme-dns's behaviour, the safe side: a broker saying more
// than it serves would make values age out before the CA looks.
func ParseAccountLimits(body []byte) (BrokerLimits, error) {
	var ai accountInfo
	if err := json.Unmarshal(body, &ai); err != nil {
		return BrokerLimits{}, fmt.Errorf("the answer to GET /account is not the JSON expected: %w", err)
	}
	l := BrokerLimits{TXTMax: 2, TXTAlways: 2}
	if ai.TXTMax != nil && *ai.TXTMax >= 1 {
		l.TXTMax = min(*ai.TXTMax, 1000)
	}
	if ai.TXTAlways != nil && *ai.TXTAlways >= 1 {
		l.TXTAlways = min(*ai.TXTAlways, l.TXTMax)
	} else {
		l.TXTAlways = min(2, l.TXTMax)
	}
	if ai.TXTWindowSeconds != nil && *ai.TXTWindowSeconds > 0 {
		l.TXTWindow = time.Duration(min(*ai.TXTWindowSeconds, 7*24*3600)) * time.Second
	}
	if ai.UpdateLimitPerMinute != nil && *ai.UpdateLimitPerMinute > 0 {
		l.UpdatesPerMinute = *ai.UpdateLimitPerMinute
	}
	return l, nil
}

// Limits asks the broker (GET /account) what it applies to acct; the broker
// checks the credentials and allowfrom on the way, as for /update. A broker
// without the endpoint (acme-dns answers 404 or 405) gets acme-dns's
// limits, with Plain set.
func (c *BrokerClient) Limits(ctx context.Context, acct BrokerAccount) (BrokerLimits, error) {
	u, err := joinURL(acct.ServerURL, "/account")
	if err != nil {
		return BrokerLimits{}, err
	}
	var raw json.RawMessage
	err = c.call(ctx, "account query", http.MethodGet, u, nil, authHeader(acct), http.StatusOK, &raw)
	if IsBrokerStatus(err, http.StatusNotFound) || IsBrokerStatus(err, http.StatusMethodNotAllowed) {
		return plainLimits, nil
	}
	if err != nil {
		return BrokerLimits{}, err
	}
	l, err := ParseAccountLimits(raw)
	if err != nil {
		return BrokerLimits{}, &BrokerError{Op: "account query", URL: u, Status: http.StatusOK, Detail: err.Error()}
	}
	return l, nil
}

func (c *BrokerClient) call(ctx context.Context, op, method, u string, body []byte, hdr http.Header, want int, out any) error {
	maxWait := c.MaxWait
	if maxWait <= 0 {
		maxWait = 2 * time.Minute
	}
	var waited time.Duration
	for attempt := 0; ; attempt++ {
		retryAfter, err := c.once(ctx, op, method, u, body, hdr, want, out)
		if retryAfter <= 0 || attempt >= 20 {
			return err
		}
		if waited+retryAfter > maxWait {
			var be *BrokerError
			if errors.As(err, &be) {
				be.Detail = strings.TrimSpace(be.Detail + fmt.Sprintf(" (the broker asks to retry after %s; that is beyond the %s this run waits)", retryAfter, maxWait))
			}
			return err
		}
		if c.Wait != nil {
			c.Wait(fmt.Sprintf("broker %s: %s; retrying in %s as it asks (Retry-After)", op, shortStatus(err), retryAfter))
		}
		t := time.NewTimer(retryAfter)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting to retry the broker %s: %w", op, ctx.Err())
		case <-t.C:
		}
		waited += retryAfter
	}
}

func shortStatus(err error) string {
	var be *BrokerError
	if errors.As(err, &be) {
		if be.Code != "" {
			return fmt.Sprintf("HTTP %d %s", be.Status, be.Code)
		}
		return fmt.Sprintf("HTTP %d", be.Status)
	}
	return err.Error()
}

// once makes one request. retryAfter > 0: the broker asked to come back
// then (429, 503).
func (c *BrokerClient) once(ctx context.Context, op, method, u string, body []byte, hdr http.Header, want int, out any) (time.Duration, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, &BrokerError{Op: op, URL: u, Err: err}
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return 0, &BrokerError{Op: op, URL: u, Err: err}
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		e := &BrokerError{Op: op, URL: u, Status: resp.StatusCode}
		var eb struct {
			Error  string `json:"error"`
			Detail string `json:"detail"`
		}
		if json.Unmarshal(data, &eb) == nil {
			e.Code, e.Detail = eb.Error, eb.Detail
		}
		var ra time.Duration
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			ra = ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
		return ra, e
	}
	if err := json.Unmarshal(data, out); err != nil {
		return 0, &BrokerError{Op: op, URL: u, Status: resp.StatusCode, Detail: "the answer is not the JSON expected: " + err.Error()}
	}
	return 0, nil
}

// IsBrokerStatus reports whether err is a BrokerError with that HTTP status.
func IsBrokerStatus(err error, status int) bool {
	var be *BrokerError
	return errors.As(err, &be) && be.Status == status
}
