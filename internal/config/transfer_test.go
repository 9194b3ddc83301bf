package config

import (
	"fmt"
	"strings"
	"testing"
)

func TestTransferConfig(t *testing.T) {
	const secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ=="
	key := "[[dns.transfer.keys]]\nname = \"XFR-Key.\"\nsecret = \"" + secret + "\"\n"
	tests := []struct {
		name, toml, wantErr string
		check               func(t *testing.T, tr Transfer)
	}{
		{name: "off by default", check: func(t *testing.T, tr Transfer) {
			if len(tr.AllowFrom) != 0 || len(tr.Notify) != 0 || tr.TSIGRequired() {
				t.Errorf("default transfer config: %+v", tr)
			}
		}},
		{name: "keys make TSIG required, names normalised, default algorithm",
			toml: "[dns.transfer]\nallow_from = [\"127.0.0.1/32\"]\nnotify = [\"127.0.0.1:5300\"]\nnotify_key = \"xfr-key\"\n" + key,
			check: func(t *testing.T, tr Transfer) {
				if !tr.TSIGRequired() || tr.Keys[0].Name != "xfr-key" || tr.Keys[0].Algorithm != "hmac-sha256" {
					t.Errorf("%+v", tr)
				}
				if s := fmt.Sprintf("%v %+v %s", tr, tr.Keys, tr.Keys[0]); strings.Contains(s, secret) {
					t.Errorf("printing the config shows the secret: %s", s)
				}
			}},
		{name: "TSIG can be made optional", toml: "[dns.transfer]\nrequire_tsig = false\n" + key, check: func(t *testing.T, tr Transfer) {
			if tr.TSIGRequired() {
				t.Error("require_tsig = false ignored")
			}
		}},
		{name: "a key per secondary, journal size",
			toml: "[dns.transfer]\nallow_from = [\"192.0.2.0/24\"]\nnotify = [\"192.0.2.1:53\", \"192.0.2.2:53 key NS2-Key.\", \" 192.0.2.3:5353  KEY  xfr-key \"]\nnotify_key = \"xfr-key\"\njournal = 100000\n" +
				key + "[[dns.transfer.keys]]\nname = \"ns2-key\"\nsecret = \"" + secret + "\"\n",
			check: func(t *testing.T, tr Transfer) {
				want := []NotifyTarget{{"192.0.2.1:53", "xfr-key"}, {"192.0.2.2:53", "ns2-key"}, {"192.0.2.3:5353", "xfr-key"}}
				if got := tr.NotifyTargets(); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("NotifyTargets() = %v, want %v", got, want)
				}
				if tr.JournalSize() != 100000 {
					t.Errorf("journal %d", tr.JournalSize())
				}
			}},
		{name: "journal default", check: func(t *testing.T, tr Transfer) {
			if tr.JournalSize() != DefaultJournal {
				t.Errorf("journal %d, want %d", tr.JournalSize(), DefaultJournal)
			}
		}},
		{name: "journal too large", toml: "[dns.transfer]\njournal = 2000000", wantErr: "dns.transfer.journal"},
		{name: "journal negative", toml: "[dns.transfer]\njournal = -1", wantErr: "dns.transfer.journal"},
		{name: "notify with an unknown key", toml: "[dns.transfer]\nallow_from = [\"192.0.2.0/24\"]\nnotify = [\"192.0.2.2:53 key nope\"]\n" + key, wantErr: "dns.transfer.notify[0]: key \"nope\""},
		{name: "notify with words after the address", toml: "[dns.transfer]\nallow_from = [\"192.0.2.0/24\"]\nnotify = [\"192.0.2.2:53 xfr-key\"]\n" + key, wantErr: "host:port key NAME"},
		{name: "required without key", toml: "[dns.transfer]\nrequire_tsig = true", wantErr: "dns.transfer.require_tsig"},
		{name: "bad cidr", toml: "[dns.transfer]\nallow_from = [\"127.0.0.1\"]", wantErr: "dns.transfer.allow_from[0]"},
		{name: "bad notify", toml: "[dns.transfer]\nallow_from = [\"192.0.2.0/24\"]\nnotify = [\"ns2.example.org\"]", wantErr: "dns.transfer.notify[0]"},
		{name: "notify without allow_from", toml: "[dns.transfer]\nnotify = [\"192.0.2.53:53\"]", wantErr: "add their addresses to dns.transfer.allow_from"},
		{name: "unknown notify key", toml: "[dns.transfer]\nnotify_key = \"nope\"\n" + key, wantErr: "dns.transfer.notify_key"},
		{name: "bad algorithm", toml: "[[dns.transfer.keys]]\nname = \"k\"\nalgorithm = \"md5\"\nsecret = \"" + secret + "\"", wantErr: "dns.transfer.keys[0].algorithm"},
		{name: "bad secret", toml: "[[dns.transfer.keys]]\nname = \"k\"\nsecret = \"not base64!\"", wantErr: "dns.transfer.keys[0].secret"},
		{name: "short secret", toml: "[[dns.transfer.keys]]\nname = \"k\"\nsecret = \"c2hvcnQ=\"", wantErr: "openssl rand"},
		{name: "duplicate key", toml: key + key, wantErr: "given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.toml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "not base64!") {
					t.Fatalf("error shows the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, c.DNS.Transfer)
			}
		})
	}
}
