package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"

	"github.com/google/uuid"

	"github.com/acmebroker/acmebroker/internal/secret"
	"github.com/acmebroker/acmebroker/internal/zone"
	"github.com/acmebroker/acmebroker/storage"
)

// RegisterResponse keeps acme-dns's field order: acme.sh parses the one-line
// JSON with sed.
type RegisterResponse struct {
	Username   string   `json:"username"`
	Password   string   `json:"password"`
	Fulldomain string   `json:"fulldomain"`
	Subdomain  string   `json:"subdomain"`
	AllowFrom  []string `json:"allowfrom"`
}

func (s *server) register(w http.ResponseWriter, r *http.Request) {
	if ok, wait := s.regLimit.take(sourceKey(s.clientIP(r)), s.Now()); limited(w, ok, wait, "registrations from this address") {
		return
	}
	var tokenID string
	if s.cfg.Registration == RegistrationToken {
		var ok bool
		if tokenID, ok = s.registrationToken(w, r); !ok {
			return
		}
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	allowFrom, err := registerBody(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "malformed_json_payload",
			"the body must be empty or a JSON object such as {\"allowfrom\": [\"192.0.2.0/24\"]}: "+err.Error())
		return
	}
	allow, _, err := parseAllowFrom(allowFrom)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_allowfrom_cidr", err.Error())
		return
	}
	reg, err := s.Zone.Register(r.Context(), zone.NewAccount{AllowFrom: allow, TokenID: tokenID})
	if tokenID != "" && (errors.Is(err, storage.ErrTokenInvalid) || errors.Is(err, storage.ErrNotFound)) {
		// Revoked or used up since registrationToken looked.
		s.Logger.Warn("register refused: token", "token", tokenID, "remote", s.clientIP(r).String(), "err", err)
		writeTokenError(w, "the registration token is no longer valid (revoked, expired or used up); ask the broker's admin for a new one")
		return
	}
	if err != nil {
		s.storageError(w, r, "register", err)
		return
	}
	s.Logger.Info("account registered", "subdomain", reg.Account.Subdomain, "remote", s.clientIP(r).String(), "allowfrom", len(allow), "token", tokenID)
	writeJSON(w, http.StatusCreated, NewRegisterResponse(reg))
}

// NewRegisterResponse is the body of /register's 201 for reg (also what
// `acmebroker account create` prints).
func NewRegisterResponse(reg zone.Registration) RegisterResponse {
	return RegisterResponse{
		Username:   reg.Account.Username,
		Password:   reg.Key,
		Fulldomain: reg.Fulldomain,
		Subdomain:  reg.Account.Subdomain,
		AllowFrom:  prefixStrings(reg.Account.AllowFrom),
	}
}

// registerBody reads /register's optional body. Clients send nothing,
// "{}", {"allowfrom": [...]} or {"AllowFrom": [...]} (encoding/json
// matches names case-insensitively); "allow_from" is taken too. Any other
// key is refused by name, rather than ignored: an account meant to be
// restricted must not silently accept updates from anywhere.
func registerBody(body []byte) ([]string, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	var req struct {
		AllowFrom  []string `json:"allowfrom"`
		AllowFrom2 []string `json:"allow_from"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := decodeOne(dec, &req); err != nil {
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return nil, fmt.Errorf("unknown key %s: /register takes only \"allowfrom\"", name)
		}
		return nil, err
	}
	if req.AllowFrom != nil && req.AllowFrom2 != nil {
		return nil, errors.New("give \"allowfrom\" once, not also as \"allow_from\"")
	}
	if req.AllowFrom2 != nil {
		return req.AllowFrom2, nil
	}
	return req.AllowFrom, nil
}

func (s *server) update(w http.ResponseWriter, r *http.Request) {
	// allowfrom is checked before the account's rate limit is charged: a
	// key used from elsewhere must not spend the owner's quota (issue 12).
	acct, ip, ok := s.authorize(w, r, "update")
	if !ok {
		return
	}
	now := s.Now()
	if ok, wait := s.updLimit.take(acct.Username, now); limited(w, ok, wait, "updates for this account") {
		return
	}
	if ok, wait := s.updSrcLimit.take(sourceKey(s.clientIP(r)), now); limited(w, ok, wait, "updates from this address") {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var req struct {
		Subdomain string `json:"subdomain"`
		TXT       string `json:"txt"`
	}
	if err := decodeStrict(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "malformed_json_payload",
			"the body must be a JSON object such as {\"subdomain\": \"...\", \"txt\": \"...\"}: "+err.Error())
		return
	}
	if !storage.IsLabel(strings.ToLower(req.Subdomain)) { // clients may send any case
		writeError(w, http.StatusBadRequest, "bad_subdomain", "\"subdomain\" must be the subdomain /register returned")
		return
	}
	if !strings.EqualFold(req.Subdomain, acct.Subdomain) {
		s.Logger.Warn("update refused: subdomain not the account's", "subdomain", acct.Subdomain, "remote", ip.String())
		writeForbidden(w)
		return
	}
	if !storage.IsDNS01Value(req.TXT) {
		writeError(w, http.StatusBadRequest, "bad_txt", "\"txt\" must be a DNS-01 digest: exactly 43 characters of base64url")
		return
	}
	recs, err := s.Zone.SetTXT(r.Context(), acct.Subdomain, req.TXT)
	if err != nil {
		s.writeFailed(w, r, acct, "update", err)
		return
	}
	s.Logger.Debug("txt updated", "subdomain", acct.Subdomain, "remote", ip.String(), "values", len(recs))
	writeJSON(w, http.StatusOK, map[string]string{"txt": req.TXT})
}

// setAllowFrom lets an account change the sources it may update from
// (acme-dns cannot). The request itself must come from a source the current
// list allows, so a leaked key used elsewhere cannot lift the restriction.
func (s *server) setAllowFrom(w http.ResponseWriter, r *http.Request) {
	acct, ip, ok := s.authorize(w, r, "allowfrom change")
	if !ok {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var req struct {
		AllowFrom *[]string `json:"allowfrom"`
	}
	if err := decodeStrict(body, &req); err != nil || req.AllowFrom == nil {
		detail := "the body must be a JSON object such as {\"allowfrom\": [\"192.0.2.0/24\"]} ([] allows any source)"
		if err != nil {
			detail += ": " + err.Error()
		}
		writeError(w, http.StatusBadRequest, "malformed_json_payload", detail)
		return
	}
	allow, shown, err := parseAllowFrom(*req.AllowFrom)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_allowfrom_cidr", err.Error())
		return
	}
	if err := s.Zone.SetAllowFrom(r.Context(), acct, allow); err != nil {
		s.writeFailed(w, r, acct, "update allowfrom", err)
		return
	}
	s.Logger.Info("allowfrom changed", "subdomain", acct.Subdomain, "remote", ip.String(),
		"old", prefixStrings(acct.AllowFrom), "new", shown)
	writeJSON(w, http.StatusOK, map[string][]string{"allowfrom": shown})
}

// rotateKey gives the account a new key; the old one stops working at once.
func (s *server) rotateKey(w http.ResponseWriter, r *http.Request) {
	acct, ip, ok := s.authorize(w, r, "key rotation")
	if !ok {
		return
	}
	key, err := s.Zone.RotateKey(r.Context(), acct)
	if err != nil {
		s.writeFailed(w, r, acct, "rotate key", err)
		return
	}
	s.Logger.Info("account key rotated", "subdomain", acct.Subdomain, "remote", ip.String())
	writeJSON(w, http.StatusOK, map[string]string{"username": acct.Username, "password": key})
}

// deleteAccount removes the account and its values; DNS stops answering
// for its subdomain at once.
func (s *server) deleteAccount(w http.ResponseWriter, r *http.Request) {
	acct, ip, ok := s.authorize(w, r, "account deletion")
	if !ok {
		return
	}
	if err := s.Zone.Delete(r.Context(), acct); err != nil {
		s.writeFailed(w, r, acct, "delete account", err)
		return
	}
	s.Logger.Info("account deleted", "subdomain", acct.Subdomain, "remote", ip.String())
	writeJSON(w, http.StatusOK, map[string]string{"deleted": acct.Subdomain})
}

// writeFailed answers a write for an authenticated account that failed.
// An account deleted (or whose key was rotated) since the request
// authenticated is a 401 "forbidden", as if it had arrived a moment later:
// the credentials are no longer good. Anything else is storageError's.
func (s *server) writeFailed(w http.ResponseWriter, r *http.Request, acct storage.Account, op string, err error) {
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrConflict) {
		s.Logger.Info(op+" refused: the account was deleted or its key changed meanwhile", "subdomain", acct.Subdomain, "remote", s.clientIP(r).String())
		writeForbidden(w)
		return
	}
	s.storageError(w, r, op, err)
}

// authorize is authenticate plus the account's allowfrom: what every
// request that changes the account itself needs.
func (s *server) authorize(w http.ResponseWriter, r *http.Request, what string) (storage.Account, netip.Addr, bool) {
	acct, ok := s.authenticate(w, r)
	if !ok {
		return storage.Account{}, netip.Addr{}, false
	}
	ip := s.clientIP(r)
	if !allowed(acct.AllowFrom, ip) {
		// Counted as a failed authentication of the source (a leaked key
		// tried from elsewhere), never against the account's own limits.
		s.Logger.Warn(what+" refused: source outside allowfrom", "subdomain", acct.Subdomain, "remote", ip.String())
		s.authFail.take(sourceKey(ip), s.Now())
		writeForbidden(w)
		return storage.Account{}, netip.Addr{}, false
	}
	return acct, ip, true
}

// registrationToken checks "Authorization: Bearer <id>.<secret>" and
// returns the token's ID. Every failure is a 401 whose detail says what to
// do; an unknown token costs what a wrong secret costs.
func (s *server) registrationToken(w http.ResponseWriter, r *http.Request) (string, bool) {
	scheme, raw, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	id, sec, ok := strings.Cut(strings.TrimSpace(raw), ".")
	if !strings.EqualFold(scheme, "Bearer") || !ok || id == "" || !secret.ValidKeyFormat(sec) {
		writeTokenError(w, "registration on this broker needs a token: send \"Authorization: Bearer <token>\"; the broker's admin makes one with `acmebroker token create`")
		return "", false
	}
	ip := s.clientIP(r)
	t, err := s.Accounts.Token(r.Context(), id)
	if errors.Is(err, storage.ErrNotFound) {
		secret.VerifyDummy(sec)
		s.Logger.Warn("register refused: unknown token", "remote", ip.String())
		writeTokenError(w, "the registration token is not valid")
		return "", false
	}
	if err != nil {
		s.storageError(w, r, "register: load token", err)
		return "", false
	}
	if ok, _, _ := secret.Verify(t.Hash, sec); !ok {
		s.Logger.Warn("register refused: wrong token secret", "token", id, "remote", ip.String())
		writeTokenError(w, "the registration token is not valid")
		return "", false
	}
	if why := t.Usable(s.Now()); why != "" {
		s.Logger.Warn("register refused: token "+why, "token", id, "remote", ip.String())
		writeTokenError(w, "the registration token is "+why+"; ask the broker's admin for a new one")
		return "", false
	}
	if !allowed(t.AllowFrom, ip) {
		s.Logger.Warn("register refused: source outside the token's allowfrom", "token", id, "remote", ip.String())
		writeTokenError(w, "the registration token may not be used from "+ip.String())
		return "", false
	}
	return id, true
}

func writeTokenError(w http.ResponseWriter, detail string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="acmebroker registration"`)
	writeError(w, http.StatusUnauthorized, "forbidden", detail)
}

// parseAllowFrom checks a request's CIDR list: the prefixes and their
// canonical text.
func parseAllowFrom(list []string) ([]netip.Prefix, []string, error) {
	allow := make([]netip.Prefix, 0, len(list))
	for _, c := range list {
		p, err := storage.ParsePrefix(c)
		if err != nil {
			return nil, nil, err
		}
		allow = append(allow, p)
	}
	return allow, prefixStrings(allow), nil
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// authenticate checks X-Api-User and X-Api-Key. Every failure is the same
// 401 "forbidden", and an unknown user costs what a wrong key costs.
func (s *server) authenticate(w http.ResponseWriter, r *http.Request) (storage.Account, bool) {
	src := sourceKey(s.clientIP(r))
	if ok, wait := s.authFail.ready(src, s.Now()); limited(w, ok, wait, "failed authentications from this address") {
		return storage.Account{}, false
	}
	failed := func() {
		s.authFail.take(src, s.Now())
		writeForbidden(w)
	}
	key := r.Header.Get("X-Api-Key")
	u, err := uuid.Parse(strings.TrimSpace(r.Header.Get("X-Api-User")))
	if err != nil || !secret.ValidKeyFormat(key) {
		failed()
		return storage.Account{}, false
	}
	acct, err := s.Accounts.Account(r.Context(), u.String())
	if errors.Is(err, storage.ErrNotFound) {
		// As dear as a wrong key (secret.Verifier says why).
		if err := s.Keys.Unknown(key); err != nil {
			busy(w, err)
			return storage.Account{}, false
		}
		failed()
		return storage.Account{}, false
	}
	if err != nil {
		s.storageError(w, r, "update: load account", err)
		return storage.Account{}, false
	}
	ok, rehash, err := s.Keys.Verify(acct.KeyHash, key)
	if errors.Is(err, secret.ErrBusy) {
		busy(w, err)
		return storage.Account{}, false
	}
	if err != nil {
		s.Logger.Error("update: stored key hash unreadable", "subdomain", acct.Subdomain, "err", err)
	}
	if !ok {
		failed()
		return storage.Account{}, false
	}
	if acct.Disabled {
		// Right credentials, so this is the owner (or whoever has the key):
		// tell them why, and do not count it as a guess.
		s.Logger.Warn("request refused: account disabled", "subdomain", acct.Subdomain, "remote", s.clientIP(r).String(), "path", r.URL.Path)
		writeError(w, http.StatusUnauthorized, "forbidden",
			"this account has been disabled by the broker's admin; ask them to enable it again (acmebroker account enable)")
		return storage.Account{}, false
	}
	if rehash {
		// A legacy (bcrypt) hash: store the fast form so the next update
		// is cheap, unless the key was rotated meanwhile.
		if err := s.Zone.UpgradeKeyHash(r.Context(), acct, key); err != nil && !errors.Is(err, storage.ErrConflict) {
			s.Logger.Warn("could not upgrade key hash", "subdomain", acct.Subdomain, "err", err)
		}
	}
	return acct, true
}

func (s *server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large",
				fmt.Sprintf("the body is larger than %d bytes", mbe.Limit))
			return nil, false
		}
		writeError(w, http.StatusBadRequest, "malformed_json_payload", "could not read the request body")
		return nil, false
	}
	return body, true
}

// decodeStrict decodes exactly one JSON value (an object or null) into v.
func decodeStrict(body []byte, v any) error {
	return decodeOne(json.NewDecoder(bytes.NewReader(body)), v)
}

// decodeOne decodes one JSON value with dec and checks nothing follows it.
func decodeOne(dec *json.Decoder, v any) error {
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

func allowed(list []netip.Prefix, ip netip.Addr) bool {
	if len(list) == 0 {
		return true
	}
	ip = ip.Unmap()
	for _, p := range list {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
