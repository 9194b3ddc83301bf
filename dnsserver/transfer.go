package dnsserver

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ZoneSource is what zone transfers need from the data besides what
// queries need. internal/records.Index implements it.
type ZoneSource interface {
	RecordSource
	// Walk starts a pass over every registered subdomain with the values
	// published at the walker's Serial.
	Walk() ZoneWalker
	// Diff returns what changed since serial from: for each changed
	// subdomain the values it had at from and has no more (Del) and the
	// values it has now and had not then (Add), with the serial they make.
	// ok is false when the history no longer reaches back to from (or never
	// had it): the caller sends the whole zone.
	Diff(from uint32) (serial uint32, diffs []ZoneDiff, ok bool)
	// Changed receives after the serial has moved; several moves may show
	// as one.
	Changed() <-chan struct{}
}

// ZoneWalker hands out the subdomains of a Walk in chunks.
type ZoneWalker interface {
	Serial() uint32
	// Next appends the next chunk to dst and reports whether more remain.
	Next(dst []ZoneEntry) ([]ZoneEntry, bool)
	// Err says why Next stopped early (nil: it did not).
	Err() error
}

// ZoneEntry is one registered subdomain with the values it publishes to
// secondaries.
type ZoneEntry struct {
	Name   string // relative to the zone, lower-case: a subdomain label or an own name (_acme-challenge.api)
	Values []string
}

// ZoneDiff is the change of one subdomain's values.
type ZoneDiff struct {
	Name     string
	Del, Add []string
}

// TransferObserver is told the outcome of every zone transfer served and NOTIFY sent.
type TransferObserver interface {
	TransferServed(qtype string, result string) // qtype "AXFR" or "IXFR"; result "ok", "refused" or "error"
	NotifySent(result string)                   // "acked" or "failed"
}

// TSIGKey is a shared secret for transaction signatures (RFC 8945).
type TSIGKey struct {
	Name      string // key name, as a domain name ("xfr-key" or "xfr-key.")
	Algorithm string // "hmac-sha256", "hmac-sha512", ...
	Secret    string // base64
}

// String leaves the secret out, so a key printed by mistake shows none.
func (k TSIGKey) String() string { return k.Name + " (" + k.Algorithm + ")" }

// fqdnName is the key's name as TSIG records carry it.
func (k TSIGKey) fqdnName() string { return dns.Fqdn(strings.ToLower(k.Name)) }

// algorithm is the key's algorithm as TSIG records carry it.
func (k TSIGKey) algorithm() string {
	return dns.Fqdn(strings.ToLower(k.Algorithm))
}

// CheckTSIGAlgorithm says whether keys of algorithm a (any case, with or
// without the final dot) can sign transfers and NOTIFY; the error says
// what to write instead. The config check and EnableTransfer both ask it.
func CheckTSIGAlgorithm(a string) error {
	if !knownAlgorithm(dns.Fqdn(strings.ToLower(a))) {
		return fmt.Errorf("%q is not supported (write \"hmac-sha256\"; hmac-sha512, hmac-sha384, hmac-sha224 and hmac-sha1 work too)", a)
	}
	return nil
}

// minTSIGSecret is the shortest secret accepted, in bytes (RFC 8945 asks
// for at least half the hash length; 16 bytes is the floor for any).
const minTSIGSecret = 16

// CheckTSIGSecret checks a key's secret: base64 of at least 16 bytes. The
// message never contains the secret.
func CheckTSIGSecret(secret string) error {
	if b, err := base64.StdEncoding.DecodeString(secret); err != nil || len(b) < minTSIGSecret {
		return fmt.Errorf("must be base64 of at least %d bytes (make one with `openssl rand -base64 32`)", minTSIGSecret)
	}
	return nil
}

// Check checks the key's algorithm and secret, naming the field.
func (k TSIGKey) Check() error {
	if err := CheckTSIGAlgorithm(k.Algorithm); err != nil {
		return fmt.Errorf("key %s: algorithm %w", k.Name, err)
	}
	if err := CheckTSIGSecret(k.Secret); err != nil {
		return fmt.Errorf("key %s: secret %w", k.Name, err)
	}
	return nil
}

func knownAlgorithm(a string) bool {
	switch a {
	case dns.HmacSHA1, dns.HmacSHA224, dns.HmacSHA256, dns.HmacSHA384, dns.HmacSHA512:
		return true
	}
	return false
}

// TSIGSecrets maps key names to secrets, as dns.Server.TsigSecret and
// dns.Client.TsigSecret want them.
func TSIGSecrets(keys []TSIGKey) map[string]string {
	if len(keys) == 0 {
		return nil
	}
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		m[k.fqdnName()] = k.Secret
	}
	return m
}

// TransferConfig says who may transfer the zone.
type TransferConfig struct {
	// AllowFrom are the source prefixes allowed to transfer; empty: nobody.
	AllowFrom []netip.Prefix
	// Keys are the TSIG keys a transfer may be signed with. The server's
	// Listen must be given the same keys (Server.SetTSIG) to check them.
	Keys []TSIGKey
	// RequireTSIG refuses unsigned transfers.
	RequireTSIG bool
	// Quiesce, if not nil, waits (at most the given time) until every
	// write the database has accepted has reached the record source. A
	// transfer calls it first, so that a secondary never gets a serial
	// without an update that was given an older serial but reached memory
	// later (concurrent updates).
	Quiesce func(max time.Duration)
	// Observer, if not nil, is told every transfer's outcome.
	Observer TransferObserver
}

// transfer serves AXFR and IXFR and signs answers to TSIG-signed queries.
type transfer struct {
	h    *Handler
	src  ZoneSource
	cfg  TransferConfig
	keys map[string]TSIGKey // by lower-case FQDN
}

// maxXfrMsgBytes caps the uncompressed size of the records put in one
// transfer message: well inside the 64 KiB a TCP message may have, large
// enough that a million subdomains take a few thousand messages.
const maxXfrMsgBytes = 32 * 1024

// quiesceMax bounds how long a transfer waits for writes in flight: under
// unbroken load it goes ahead (the next change's transfer carries anything
// missed).
const quiesceMax = 250 * time.Millisecond

// EnableTransfer lets the zone be transferred as cfg says. The handler's
// record source must be a ZoneSource. Call it before serving.
func (h *Handler) EnableTransfer(cfg TransferConfig) error {
	src, ok := h.src.(ZoneSource)
	if !ok {
		return errors.New("dns transfer: the record source cannot enumerate the zone")
	}
	t := &transfer{h: h, src: src, cfg: cfg, keys: map[string]TSIGKey{}}
	for _, k := range cfg.Keys {
		if err := k.Check(); err != nil {
			return fmt.Errorf("dns transfer: %w", err)
		}
		t.keys[k.fqdnName()] = k
	}
	if cfg.RequireTSIG && len(t.keys) == 0 {
		return errors.New("dns transfer: TSIG required but no key given")
	}
	h.xfr = t
	return nil
}

// takes reports whether r is for the transfer side: a transfer, or any
// TSIG-signed message (its answer must be signed too).
func (t *transfer) takes(r *dns.Msg) bool {
	if len(r.Question) == 1 {
		if qt := r.Question[0].Qtype; qt == dns.TypeAXFR || qt == dns.TypeIXFR {
			return true
		}
	}
	return r.IsTsig() != nil
}

// tsig checks r's signature: the TSIG (nil if unsigned) and, when it is
// not acceptable, the TSIG error to answer with (RFC 8945 5.2): BADKEY for
// a key we do not have or an algorithm other than the one configured for
// it (the same secret under another hash must not verify), BADTIME for a
// good signature made too long ago, BADSIG for any other failure.
func (t *transfer) tsig(w dns.ResponseWriter, r *dns.Msg) (*dns.TSIG, uint16) {
	ts := r.IsTsig()
	if ts == nil {
		return nil, 0
	}
	// Without keys the dns.Server checks nothing, so an unknown name must
	// be refused here; it checks the MAC with the algorithm the request
	// names, so that must be the key's.
	k, ok := t.keys[strings.ToLower(ts.Hdr.Name)]
	if !ok || !strings.EqualFold(dns.Fqdn(ts.Algorithm), k.algorithm()) {
		return ts, dns.RcodeBadKey
	}
	switch err := w.TsigStatus(); {
	case err == nil:
		return ts, 0
	case errors.Is(err, dns.ErrTime):
		return ts, dns.RcodeBadTime
	case errors.Is(err, dns.ErrKeyAlg), errors.Is(err, dns.ErrSecret):
		return ts, dns.RcodeBadKey
	}
	return ts, dns.RcodeBadSig
}

// tsigFailure answers a request whose signature failed with tsigErr:
// NOTAUTH and a TSIG carrying the error (RFC 8945 5.2). The server's
// WriteMsg leaves BADKEY and BADSIG answers unsigned (5.3.2: we cannot
// sign for a key we do not have or the client cannot check) and signs a
// BADTIME answer, whose Other Data carries our clock (5.2.3).
func (t *transfer) tsigFailure(w dns.ResponseWriter, r *dns.Msg, ts *dns.TSIG, tsigErr uint16) {
	if _, ok := dns.IsDomainName(ts.Algorithm); !ok || ts.Algorithm == "" {
		_ = w.WriteMsg(t.h.failure(r, dns.RcodeFormatError))
		return
	}
	m := t.h.failure(r, dns.RcodeNotAuth)
	rr := &dns.TSIG{
		Hdr:       dns.RR_Header{Name: ts.Hdr.Name, Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm: ts.Algorithm, TimeSigned: ts.TimeSigned, Fudge: ts.Fudge,
		OrigId: ts.OrigId, Error: tsigErr,
	}
	if tsigErr == dns.RcodeBadTime {
		now := uint64(time.Now().Unix())
		rr.OtherLen = 6
		rr.OtherData = fmt.Sprintf("%012x", now&(1<<48-1))
	}
	m.Extra = append(m.Extra, rr) // last, as RFC 8945 requires
	_ = w.WriteMsg(m)
}

// refused answers REFUSED to r, signed when r was signed with one of our
// keys (RFC 8945 5.3: a signed request gets a signed answer, refusals
// included).
func (t *transfer) refused(w dns.ResponseWriter, r *dns.Msg, ts *dns.TSIG) {
	m := t.h.failure(r, dns.RcodeRefused)
	t.sign(m, ts)
	_ = w.WriteMsg(m)
}

func (t *transfer) serve(w dns.ResponseWriter, r *dns.Msg) {
	ts, tsigErr := t.tsig(w, r)
	xfr := false
	var qtype uint16
	if len(r.Question) == 1 {
		qtype = r.Question[0].Qtype
		xfr = qtype == dns.TypeAXFR || qtype == dns.TypeIXFR
	}
	if !xfr {
		// An ordinary query (a secondary's SOA check) signed with a key:
		// answered as usual, signed back.
		if tsigErr != 0 {
			t.h.logger.Log(context.Background(), t.refusedLevel(w), "dns refused a query with a bad signature", "remote", w.RemoteAddr().String(), "tsig_error", dns.RcodeToString[int(tsigErr)])
			t.tsigFailure(w, r, ts, tsigErr)
			return
		}
		m := t.h.AnswerTo(r, w.RemoteAddr())
		t.sign(m, ts)
		_ = w.WriteMsg(m)
		return
	}
	name := dns.TypeToString[qtype]
	result := "ok"
	defer func() {
		if o := t.cfg.Observer; o != nil {
			o.TransferServed(name, result)
		}
	}()
	if why := t.refuse(w, r, ts, tsigErr); why != "" {
		result = "refused"
		t.h.logger.Log(context.Background(), t.refusedLevel(w), "dns transfer refused", "qtype", name, "remote", w.RemoteAddr().String(), "reason", why)
		if tsigErr != 0 {
			t.tsigFailure(w, r, ts, tsigErr)
		} else {
			t.refused(w, r, ts)
		}
		return
	}
	start := time.Now()
	if t.cfg.Quiesce != nil {
		t.cfg.Quiesce(quiesceMax)
	}
	var (
		n      int
		serial uint32
		err    error
		form   = name
	)
	switch {
	case qtype == dns.TypeIXFR && !isTCP(w):
		// RFC 1995 4: over UDP only the current SOA, the client then
		// asks over TCP.
		serial = t.src.Serial()
		err = t.send(w, r, ts, [][]dns.RR{{t.h.soa(t.h.origin, t.h.cfg.SOATTL)}})
		form = "SOA"
	case qtype == dns.TypeIXFR:
		n, serial, form, err = t.ixfr(w, r, ts)
	default:
		n, serial, err = t.axfr(w, r, ts)
	}
	if err != nil {
		result = "error"
		t.h.logger.Warn("dns transfer failed", "qtype", name, "remote", w.RemoteAddr().String(), "err", err)
		return
	}
	level := slog.LevelDebug // one per change and secondary
	if form == "AXFR" {
		level = slog.LevelInfo
	}
	t.h.logger.Log(context.Background(), level, "dns transfer served", "qtype", name, "form", form, "remote", w.RemoteAddr().String(),
		"serial", serial, "records", n, "took", time.Since(start).Round(time.Millisecond))
}

// refusedLevel: a refusal over TCP is logged (the source is real: a
// misconfigured secondary shows up); over UDP anyone can forge the
// source and flood the log, so only at debug level.
func (t *transfer) refusedLevel(w dns.ResponseWriter) slog.Level {
	if isTCP(w) {
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

// refuse says why a transfer request may not be served ("" if it may).
func (t *transfer) refuse(w dns.ResponseWriter, r *dns.Msg, ts *dns.TSIG, tsigErr uint16) string {
	q := r.Question[0]
	if r.Opcode != dns.OpcodeQuery || (q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY) ||
		!strings.EqualFold(q.Name, t.h.origin) {
		return "not a transfer of this zone"
	}
	if q.Qtype == dns.TypeAXFR && !isTCP(w) {
		return "AXFR over UDP"
	}
	if !t.allowed(w.RemoteAddr()) {
		return "source not in dns.transfer.allow_from"
	}
	switch {
	case ts == nil && t.cfg.RequireTSIG:
		return "not signed with a TSIG key"
	case tsigErr != 0:
		return "TSIG " + dns.RcodeToString[int(tsigErr)] + " (unknown key, another algorithm than the key's, wrong secret, or clock skew)"
	}
	return ""
}

func (t *transfer) allowed(a net.Addr) bool {
	var ip netip.Addr
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	default:
		return false
	}
	ip = ip.Unmap()
	for _, p := range t.cfg.AllowFrom {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// sign adds a TSIG to m, with the key of the request's signature ts, for
// the dns.Server to compute when it writes m.
func (t *transfer) sign(m *dns.Msg, ts *dns.TSIG) {
	if ts != nil {
		m.SetTsig(ts.Hdr.Name, ts.Algorithm, 300, time.Now().Unix())
	}
}

// send writes the messages msgs, each holding the given records, signed
// when the request was.
func (t *transfer) send(w dns.ResponseWriter, r *dns.Msg, ts *dns.TSIG, msgs [][]dns.RR) error {
	for _, rrs := range msgs {
		if err := t.write(w, r, ts, rrs); err != nil {
			return err
		}
	}
	return nil
}

func (t *transfer) write(w dns.ResponseWriter, r *dns.Msg, ts *dns.TSIG, rrs []dns.RR) error {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	m.Compress = true
	m.Answer = rrs
	t.sign(m, ts)
	if err := w.WriteMsg(m); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	// Later messages of a signed transfer carry a MAC over the previous
	// one plus the timers (RFC 8945 5.3.1).
	w.TsigTimersOnly(true)
	return nil
}

// batcher cuts a stream of records into transfer messages.
type batcher struct {
	t    *transfer
	w    dns.ResponseWriter
	r    *dns.Msg
	ts   *dns.TSIG
	rrs  []dns.RR
	size int
	n    int
	err  error
}

func (b *batcher) add(rr dns.RR) {
	if b.err != nil {
		return
	}
	l := dns.Len(rr)
	if b.size+l > maxXfrMsgBytes && len(b.rrs) > 0 {
		b.flush()
	}
	b.rrs = append(b.rrs, rr)
	b.size += l
	b.n++
}

func (b *batcher) flush() {
	if b.err != nil || len(b.rrs) == 0 {
		return
	}
	b.err = b.t.write(b.w, b.r, b.ts, b.rrs)
	b.rrs = b.rrs[:0:0] // the message may still be referenced; start a new slice
	b.size = 0
}

// axfr sends the whole zone (RFC 5936): SOA, static records, the served
// TXT values, SOA.
func (t *transfer) axfr(w dns.ResponseWriter, r *dns.Msg, ts *dns.TSIG) (int, uint32, error) {
	walk := t.src.Walk()
	serial := walk.Serial()
	soa := t.soa(serial)
	b := &batcher{t: t, w: w, r: r, ts: ts}
	b.add(soa)
	t.static(b)
	var chunk []ZoneEntry
	for more := true; more && b.err == nil; {
		chunk, more = walk.Next(chunk[:0])
		for _, e := range chunk {
			t.txt(b, e.Name, e.Values)
		}
	}
	if err := walk.Err(); err != nil {
		return b.n, serial, err // the client sees the transfer cut short and retries
	}
	b.add(soa)
	b.flush()
	return b.n, serial, b.err
}

// static adds the configured records (and the generated apex NS).
func (t *transfer) static(b *batcher) {
	if n := t.h.static.nodes[t.h.origin]; n == nil || len(n.rrs[dns.TypeNS]) == 0 {
		for _, rr := range t.h.apexNS {
			b.add(rr)
		}
	}
	for _, rr := range t.h.cfg.Records {
		b.add(rr)
	}
}

func (t *transfer) txt(b *batcher, sub string, values []string) {
	owner := sub + "." + t.h.origin
	for _, v := range values {
		b.add(&dns.TXT{
			Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: t.h.cfg.TXTTTL},
			Txt: splitTXT(v),
		})
	}
}

func (t *transfer) soa(serial uint32) *dns.SOA {
	soa := t.h.soa(t.h.origin, t.h.cfg.SOATTL).(*dns.SOA)
	soa.Serial = serial
	return soa
}

// ixfr answers an incremental transfer (RFC 1995): one SOA when the client
// is current, the changes since its serial when the journal has them, else
// the whole zone.
func (t *transfer) ixfr(w dns.ResponseWriter, r *dns.Msg, ts *dns.TSIG) (int, uint32, string, error) {
	var from uint32
	for _, rr := range r.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			from = soa.Serial
		}
	}
	if from == 0 {
		n, serial, err := t.axfr(w, r, ts)
		return n, serial, "AXFR", err
	}
	serial, diffs, ok := t.src.Diff(from)
	if !ok {
		n, serial, err := t.axfr(w, r, ts)
		return n, serial, "AXFR", err
	}
	if !serialBefore(from, serial) {
		// Current (or ahead of us: nothing we could send).
		return 1, serial, "SOA", t.send(w, r, ts, [][]dns.RR{{t.soa(serial)}})
	}
	// Condensed: one difference sequence from the client's serial to ours.
	b := &batcher{t: t, w: w, r: r, ts: ts}
	cur := t.soa(serial)
	b.add(cur)
	b.add(t.soa(from))
	for _, d := range diffs {
		t.txt(b, d.Name, d.Del)
	}
	b.add(cur)
	for _, d := range diffs {
		t.txt(b, d.Name, d.Add)
	}
	b.add(cur)
	b.flush()
	return b.n, serial, "IXFR", b.err
}

// serialBefore compares serials in RFC 1982 arithmetic.
func serialBefore(a, b uint32) bool { return a != b && int32(b-a) > 0 }

// SetTSIG gives the server the keys that signed messages are checked
// against (TSIGSecrets of the keys in TransferConfig). Call before Serve.
func (s *Server) SetTSIG(secrets map[string]string) { s.tsig = secrets }
