package api

import (
	"net/http"
)

// accountResponse is what GET /account tells an account about itself and
// about the limits the broker applies to it, so that a client can plan: how
// many values it may have served at once (txt_max, and for how long:
// txt_window_seconds, the newest txt_always whatever their age) and how
// fast it may send them (update_limit_per_minute, 0 for no limit).
// acme-dns has no such endpoint (it answers 404); a client then assumes
// acme-dns's own behaviour: 2 values, rotated, never expiring.
type accountResponse struct {
	Username             string   `json:"username"`
	Subdomain            string   `json:"subdomain"`
	Fulldomain           string   `json:"fulldomain"`
	AllowFrom            []string `json:"allowfrom"`
	TXTMax               int      `json:"txt_max"`
	TXTAlways            int      `json:"txt_always"`
	TXTWindowSeconds     int      `json:"txt_window_seconds"`
	UpdateLimitPerMinute int      `json:"update_limit_per_minute"`
}

// account answers GET /account: the same authentication and allowfrom
// check as /update, and nothing is changed. It costs no update token: a
// client asks once before it sets values.
func (s *server) account(w http.ResponseWriter, r *http.Request) {
	acct, _, ok := s.authorize(w, r, "account query")
	if !ok {
		return
	}
	p := s.cfg.TXTPolicy
	writeJSON(w, http.StatusOK, accountResponse{
		Username:             acct.Username,
		Subdomain:            acct.Subdomain,
		Fulldomain:           acct.Subdomain + "." + s.cfg.Zone,
		AllowFrom:            prefixStrings(acct.AllowFrom),
		TXTMax:               p.Max,
		TXTAlways:            min(p.Always, p.Max),
		TXTWindowSeconds:     int(p.Window.Seconds()),
		UpdateLimitPerMinute: max(0, s.cfg.Limits.UpdatePerAccount),
	})
}
