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
	var body io.Reader
	if len(allowFrom) > 0 {
		b, _ := json.Marshal(map[string][]string{"allowfrom": allowFrom})
		body = bytes.NewReader(b)
	}
	var acct BrokerAccount
	if err := c.call(ctx, "register", u, body, nil, http.StatusCreated, &acct); err != nil {
		return BrokerAccount{}, err
	}
	if acct.Username == "" || acct.Password == "" || acct.FullDomain == "" || acct.SubDomain == "" {
		return BrokerAccount{}, &BrokerError{Op: "register", URL: u, Status: http.StatusCreated, Detail: "the answer lacks username, password, fulldomain or subdomain: is this an acme-dns compatible broker?"}
	}
	acct.ServerURL = api
	return acct, nil
}

// Update sets value as a TXT value of the account's subdomain.
func (c *BrokerClient) Update(ctx context.Context, acct BrokerAccount, value string) error {
	u, err := joinURL(acct.ServerURL, "/update")
	if err != nil {
		return err
	}
	b, _ := json.Marshal(map[string]string{"subdomain": acct.SubDomain, "txt": value})
	hdr := http.Header{"X-Api-User": {acct.Username}, "X-Api-Key": {acct.Password}}
	var out struct {
		TXT string `json:"txt"`
	}
	return c.call(ctx, "update", u, bytes.NewReader(b), hdr, http.StatusOK, &out)
}

func (c *BrokerClient) call(ctx context.Context, op, u string, body io.Reader, hdr http.Header, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
	if err != nil {
		return &BrokerError{Op: op, URL: u, Err: err}
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http().Do(req)
	if err != nil {
		return &BrokerError{Op: op, URL: u, Err: err}
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
		return e
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &BrokerError{Op: op, URL: u, Status: resp.StatusCode, Detail: "the answer is not the JSON expected: " + err.Error()}
	}
	return nil
}

// IsBrokerStatus reports whether err is a BrokerError with that HTTP status.
func IsBrokerStatus(err error, status int) bool {
	var be *BrokerError
	return errors.As(err, &be) && be.Status == status
}
