package api

// dns-persist-01 records (draft-ietf-acme-dns-persist): an account sets,
// lists and removes the standing TXT records the broker serves at its
// fulldomain beside its challenge values. Not part of acme-dns's API; its
// clients never call it and see nothing change.
//
//	GET    /persist           the account's records
//	POST   /persist           set one (replacing the one of the same issuer)
//	DELETE /persist/{issuer}  remove one
//
// Same headers and the same 401 "forbidden" as /update; the source must be
// in the account's allowfrom. Every answer that succeeds is the account's
// records after the call (persistList).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/acmebroker/acmebroker/storage"
)

// PersistRecord is one record as the API shows it.
type PersistRecord struct {
	Issuer       string `json:"issuer"`
	AccountURI   string `json:"accounturi"`
	Policy       string `json:"policy,omitempty"`        // "wildcard" or absent
	PersistUntil int64  `json:"persist_until,omitempty"` // Unix seconds; absent: no end
	Value        string `json:"value"`                   // the TXT value served
	SetAt        string `json:"set_at"`                  // RFC 3339, UTC
}

// PersistList is the answer of every /persist call that succeeds.
type PersistList struct {
	Fulldomain string          `json:"fulldomain"` // where the records are served
	Records    []PersistRecord `json:"records"`    // by issuer; [] when none
	Max        int             `json:"max"`        // how many the account may hold
}

// persistErrorBody is errorBody with the field at fault.
type persistErrorBody struct {
	Error  string `json:"error"`
	Field  string `json:"field,omitempty"`
	Detail string `json:"detail"`
}

func (s *server) listPersist(w http.ResponseWriter, r *http.Request) {
	acct, _, ok := s.authorize(w, r, "persist list")
	if !ok {
		return
	}
	recs, err := s.Accounts.PersistRecords(r.Context(), acct.Subdomain)
	if err != nil {
		s.writeFailed(w, r, acct, "list persist records", err)
		return
	}
	writeJSON(w, http.StatusOK, s.persistList(acct, recs))
}

func (s *server) setPersist(w http.ResponseWriter, r *http.Request) {
	acct, ip, ok := s.authorizeWrite(w, r, "persist change")
	if !ok {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	rec, err := persistRequest(body)
	var pe *storage.PersistError
	switch {
	case errors.As(err, &pe):
		writePersistError(w, pe)
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, "malformed_json_payload",
			`the body must be a JSON object such as {"issuer": "letsencrypt.org", "accounturi": "https://...", "policy": "wildcard", "persist_until": 1893456000}: `+err.Error())
		return
	}
	recs, err := s.Zone.SetPersist(r.Context(), acct.Subdomain, rec)
	switch {
	case errors.As(err, &pe):
		writePersistError(w, pe)
		return
	case errors.Is(err, storage.ErrTooMany):
		writeError(w, http.StatusConflict, "too_many_persist", fmt.Sprintf(
			"the account holds %d persist records already, the most it may: remove one (DELETE /persist/{issuer}) first, or set the record of an issuer it has to replace it", storage.MaxPersistRecords))
		return
	case err != nil:
		s.writeFailed(w, r, acct, "set persist record", err)
		return
	}
	s.Logger.Info("persist record set", "subdomain", acct.Subdomain, "issuer", rec.Issuer, "remote", ip.String())
	writeJSON(w, http.StatusOK, s.persistList(acct, recs))
}

func (s *server) deletePersist(w http.ResponseWriter, r *http.Request) {
	acct, ip, ok := s.authorizeWrite(w, r, "persist removal")
	if !ok {
		return
	}
	issuer := storage.NormalizeIssuer(chi.URLParam(r, "issuer"))
	var pe *storage.PersistError
	if err := storage.CheckIssuer(issuer); errors.As(err, &pe) {
		writePersistError(w, pe)
		return
	}
	recs, deleted, err := s.Zone.DeletePersist(r.Context(), acct.Subdomain, issuer)
	if err != nil {
		s.writeFailed(w, r, acct, "delete persist record", err)
		return
	}
	if !deleted {
		have := make([]string, len(recs))
		for i, rec := range recs {
			have[i] = rec.Issuer
		}
		detail := "the account has no persist record of issuer " + issuer + ": it has none"
		if len(have) > 0 {
			detail = "the account has no persist record of issuer " + issuer + "; it has records of: " + strings.Join(have, ", ")
		}
		writeError(w, http.StatusNotFound, "no_such_persist", detail)
		return
	}
	s.Logger.Info("persist record removed", "subdomain", acct.Subdomain, "issuer", issuer, "remote", ip.String())
	writeJSON(w, http.StatusOK, s.persistList(acct, recs))
}

// authorizeWrite is authorize plus the limits /update has, per account
// and per source: each change moves the zone serial and is sent to the
// secondaries.
func (s *server) authorizeWrite(w http.ResponseWriter, r *http.Request, what string) (storage.Account, netip.Addr, bool) {
	acct, ip, ok := s.authorize(w, r, what)
	if !ok {
		return acct, ip, false
	}
	now := s.Now()
	if ok, wait := s.updLimit.take(acct.Username, now); limited(w, ok, wait, "changes for this account") {
		return acct, ip, false
	}
	if ok, wait := s.updSrcLimit.take(sourceKey(ip), now); limited(w, ok, wait, "changes from this address") {
		return acct, ip, false
	}
	return acct, ip, true
}

// persistRequest reads POST /persist's body into a record for the zone
// writer to check and stamp. A key or value of the wrong kind is a
// *storage.PersistError naming it; anything else wrong is plain malformed
// JSON.
func persistRequest(body []byte) (storage.PersistRecord, error) {
	var req struct {
		Issuer       string          `json:"issuer"`
		AccountURI   string          `json:"accounturi"`
		Policy       string          `json:"policy"`
		PersistUntil json.RawMessage `json:"persist_until"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := decodeOne(dec, &req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return storage.PersistRecord{}, &storage.PersistError{Field: te.Field, Reason: "must be a string, not a JSON " + te.Value}
		}
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return storage.PersistRecord{}, &storage.PersistError{Field: strings.Trim(name, `"`),
				Reason: "is not a key of /persist, which takes issuer, accounturi, policy and persist_until"}
		}
		return storage.PersistRecord{}, err
	}
	rec := storage.PersistRecord{
		Issuer:     storage.NormalizeIssuer(req.Issuer),
		AccountURI: strings.TrimSpace(req.AccountURI),
		Policy:     strings.ToLower(strings.TrimSpace(req.Policy)),
	}
	// A JSON integer, or null (as when absent): no end. 0 is no end too,
	// which a client that always sends the key gives for "none".
	if raw := string(req.PersistUntil); raw != "" && raw != "null" {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || n < 0 {
			return storage.PersistRecord{}, &storage.PersistError{Field: "persist_until",
				Reason: fmt.Sprintf("%.40s is not a whole number of seconds since 1970 (Unix time), such as 1893456000", raw)}
		}
		if n > 0 {
			rec.PersistUntil = time.Unix(n, 0).UTC()
		}
	}
	return rec, nil
}

func writePersistError(w http.ResponseWriter, pe *storage.PersistError) {
	writeJSON(w, http.StatusBadRequest, persistErrorBody{Error: "bad_persist", Field: pe.Field, Detail: pe.Error()})
}

func (s *server) persistList(acct storage.Account, recs []storage.PersistRecord) PersistList {
	out := PersistList{
		Fulldomain: acct.Subdomain + "." + strings.TrimSuffix(s.cfg.Zone, "."),
		Records:    make([]PersistRecord, len(recs)),
		Max:        storage.MaxPersistRecords,
	}
	for i, r := range recs {
		out.Records[i] = PersistRecord{
			Issuer: r.Issuer, AccountURI: r.AccountURI, Policy: r.Policy, PersistUntil: r.UntilUnix(),
			Value: r.Value(), SetAt: r.SetAt.UTC().Format(time.RFC3339Nano),
		}
	}
	return out
}
