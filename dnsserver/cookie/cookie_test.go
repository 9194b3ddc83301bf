package cookie

import (
	"encoding/hex"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func mustSecret(t *testing.T, s string) Secret {
	t.Helper()
	sec, err := ParseSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return sec
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func at(unix int64) func() time.Time { return func() time.Time { return time.Unix(unix, 0) } }

// The worked examples of RFC 9018 Appendix A.
func TestRFC9018Vectors(t *testing.T) {
	const (
		secA   = "e5e973e5a6b2a43f48e7dc849e37bfcf"
		secOld = "dd3bdf9344b678b185a6f5cb60fca715"
		secNew = "445536bcd2513298075a5d379663c962"
	)
	for _, c := range []struct {
		name       string
		current    string
		previous   []string
		client     string
		query      string
		issued     int64 // when the query's server cookie was made (0: none)
		now        int64
		wantStatus Status // at now
		reply      string
	}{
		{"A.1 learning a new server cookie", secA, nil, "198.51.100.100",
			"2464c4abcf10c957", 0, 1559731985, ClientOnly,
			"2464c4abcf10c957010000005cf79f111f8130c3eee29480"},
		{"A.2 the same client 40 minutes later gets a renewed one", secA, nil, "198.51.100.100",
			"2464c4abcf10c957010000005cf79f111f8130c3eee29480", 1559731985, 1559734385, Valid,
			"2464c4abcf10c957010000005cf7a871d4a564a1442aca77"},
		// The example answers 1 h 52 min after the cookie was made: too
		// old for us, so a new one (the one the RFC shows) is handed out.
		{"A.3 another implementation's reserved bytes are hashed as received", secA, nil, "203.0.113.203",
			"fc93fc62807ddb8601abcdef5cf78f71a314227b6679ebf5", 0x5cf78f71, 1559734700, ClientOnly,
			"fc93fc62807ddb86010000005cf7a9acf73a7810aca2381e"},
		{"A.4 IPv6, made with the previous secret, renewed with the new", secNew, []string{secOld}, "2001:db8:220:1:59de:d0f4:8769:82b8",
			"22681ab97d52c298010000005cf7c57926556bd0934c72f8", 0x5cf7c579, 1559741961, Valid,
			"22681ab97d52c298010000005cf7c609a6bb79d16625507a"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var prev []Secret
			for _, p := range c.previous {
				prev = append(prev, mustSecret(t, p))
			}
			data := mustHex(t, c.query)
			ip := netip.MustParseAddr(c.client)
			if c.issued != 0 {
				if st := NewJar(mustSecret(t, c.current), prev, at(c.issued)).Check(data, true, ip); st != Valid {
					t.Fatalf("the query's cookie does not check when it was made: %v", st)
				}
			}
			j := NewJar(mustSecret(t, c.current), prev, at(c.now))
			st := j.Check(data, true, ip)
			if st != c.wantStatus {
				t.Fatalf("status %v, want %v", st, c.wantStatus)
			}
			if got := j.Reply(data, st, ip).Cookie; got != c.reply {
				t.Fatalf("reply %s, want %s", got, c.reply)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	sec := mustSecret(t, "e5e973e5a6b2a43f48e7dc849e37bfcf")
	const now = 1559731985
	ip := netip.MustParseAddr("198.51.100.100")
	issued := mustHex(t, "2464c4abcf10c957010000005cf79f111f8130c3eee29480") // made at now
	flip := func(b []byte, i int) []byte { c := append([]byte(nil), b...); c[i] ^= 1; return c }
	other, _ := NewSecret()
	for _, c := range []struct {
		name string
		jar  *Jar
		data []byte
		ip   netip.Addr
		want Status
	}{
		{"fresh", NewJar(sec, nil, at(now)), issued, ip, Valid},
		{"from a mapped address", NewJar(sec, nil, at(now)), issued, netip.MustParseAddr("::ffff:198.51.100.100"), Valid},
		{"an hour old", NewJar(sec, nil, at(now+3600)), issued, ip, Valid},
		{"an hour and a second old", NewJar(sec, nil, at(now+3601)), issued, ip, ClientOnly},
		{"five minutes ahead (skew)", NewJar(sec, nil, at(now-300)), issued, ip, Valid},
		{"more than five minutes ahead", NewJar(sec, nil, at(now-301)), issued, ip, ClientOnly},
		{"another address", NewJar(sec, nil, at(now)), issued, netip.MustParseAddr("198.51.100.101"), ClientOnly},
		{"another secret", NewJar(other, nil, at(now)), issued, ip, ClientOnly},
		{"the secret as previous", NewJar(other, []Secret{sec}, at(now)), issued, ip, Valid},
		{"client cookie changed", NewJar(sec, nil, at(now)), flip(issued, 0), ip, ClientOnly},
		{"hash changed", NewJar(sec, nil, at(now)), flip(issued, 23), ip, ClientOnly},
		{"timestamp changed", NewJar(sec, nil, at(now)), flip(issued, 15), ip, ClientOnly},
		{"version 2", NewJar(sec, nil, at(now)), flip(issued, 8), ip, ClientOnly},
		{"client cookie only", NewJar(sec, nil, at(now)), issued[:8], ip, ClientOnly},
		{"8-byte server cookie (another kind)", NewJar(sec, nil, at(now)), issued[:16], ip, ClientOnly},
		{"32-byte server cookie", NewJar(sec, nil, at(now)), make([]byte, 40), ip, ClientOnly},
		{"empty", NewJar(sec, nil, at(now)), []byte{}, ip, Malformed},
		{"7 bytes", NewJar(sec, nil, at(now)), issued[:7], ip, Malformed},
		{"9 bytes", NewJar(sec, nil, at(now)), issued[:9], ip, Malformed},
		{"15 bytes", NewJar(sec, nil, at(now)), issued[:15], ip, Malformed},
		{"41 bytes", NewJar(sec, nil, at(now)), make([]byte, 41), ip, Malformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.jar.Check(c.data, true, c.ip); got != c.want {
				t.Fatalf("%v, want %v", got, c.want)
			}
		})
	}
	if NewJar(sec, nil, nil).Check(nil, false, ip) != None {
		t.Fatal("no option is not None")
	}
}

func TestReply(t *testing.T) {
	sec := mustSecret(t, "e5e973e5a6b2a43f48e7dc849e37bfcf")
	ip := netip.MustParseAddr("198.51.100.100")
	issued := mustHex(t, "2464c4abcf10c957010000005cf79f111f8130c3eee29480")
	// Fresh (under half an hour): echoed as is.
	j := NewJar(sec, nil, at(1559731985+1799))
	if got := j.Reply(issued, Valid, ip).Cookie; got != hex.EncodeToString(issued) {
		t.Fatalf("a fresh cookie was not echoed: %s", got)
	}
	// What Reply hands out, Check accepts.
	for _, data := range [][]byte{issued[:8], issued} {
		r := j.Reply(data, j.Check(data, true, ip), ip)
		b := mustHex(t, r.Cookie)
		if len(b) != 24 || j.Check(b, true, ip) != Valid || string(b[:8]) != string(issued[:8]) {
			t.Fatalf("reply %x does not check", b)
		}
	}
	for _, st := range []Status{None, Malformed} {
		if j.Reply(issued, st, ip) != nil {
			t.Fatalf("a reply for %v", st)
		}
	}
}

func TestOption(t *testing.T) {
	m := new(dns.Msg)
	m.SetQuestion("example.org.", dns.TypeA)
	if _, ok := Option(m); ok {
		t.Fatal("no EDNS, yet an option")
	}
	m.SetEdns0(1232, false)
	if _, ok := Option(m); ok {
		t.Fatal("no cookie, yet an option")
	}
	opt := m.IsEdns0()
	opt.Option = append(opt.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "2464c4abcf10c957"})
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	var got dns.Msg
	if err := got.Unpack(b); err != nil {
		t.Fatal(err)
	}
	if data, ok := Option(&got); !ok || hex.EncodeToString(data) != "2464c4abcf10c957" {
		t.Fatalf("option %x %v", data, ok)
	}
}

func TestParseSecret(t *testing.T) {
	for _, s := range []string{"", "e5e973", "e5e973e5a6b2a43f48e7dc849e37bfcg", "e5e973e5a6b2a43f48e7dc849e37bfcf00"} {
		if _, err := ParseSecret(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	sec := mustSecret(t, " E5E973E5A6B2A43F48E7DC849E37BFCF ")
	if sec[0] != 0xe5 || sec.String() == hex.EncodeToString(sec[:]) {
		t.Fatal("parsed wrong, or String shows the secret")
	}
	a, _ := NewSecret()
	b, _ := NewSecret()
	if a == b {
		t.Fatal("two random secrets are equal")
	}
}

func (s Status) String() string {
	return [...]string{"None", "ClientOnly", "Valid", "Malformed"}[s]
}

// FuzzCheck: any option data from any address is classified without a
// panic, and a reply, when there is one, checks as Valid.
func FuzzCheck(f *testing.F) {
	f.Add(mustHexF("2464c4abcf10c957010000005cf79f111f8130c3eee29480"), []byte{198, 51, 100, 100})
	f.Add(mustHexF("2464c4abcf10c957"), make([]byte, 16))
	f.Add([]byte{}, []byte{})
	sec, _ := ParseSecret("e5e973e5a6b2a43f48e7dc849e37bfcf")
	j := NewJar(sec, nil, at(1559731985))
	f.Fuzz(func(t *testing.T, data, addr []byte) {
		ip, ok := netip.AddrFromSlice(addr)
		if !ok {
			ip = netip.MustParseAddr("192.0.2.1")
		}
		st := j.Check(data, true, ip)
		r := j.Reply(data, st, ip)
		if (st == ClientOnly || st == Valid) != (r != nil) {
			t.Fatalf("status %v, reply %v", st, r)
		}
		if r != nil {
			b, _ := hex.DecodeString(r.Cookie)
			if j.Check(b, true, ip) != Valid {
				t.Fatalf("reply %x to %x does not check", b, data)
			}
		}
	})
}

func mustHexF(s string) []byte { b, _ := hex.DecodeString(s); return b }
