// Command dnsload is the DNS load generator of bench/run.sh for what
// dnsperf does not measure here: latency percentiles at a fixed query
// rate over UDP, and throughput over TCP (dnsperf's TCP mode does not work
// with this setup). It asks the names of a dnsperf query file ("name TYPE"
// lines) in turn and prints one JSON line:
//
//	{"proto":"udp","sent":..,"answered":..,"lost":..,"qps":..,"p50_ms":..,"p99_ms":..,"p999_ms":..,"max_ms":..,"rcodes":{..}}
//
// UDP: -rate queries per second spread over -sockets sockets, each with
// its own sender and reader; an answer is matched to its query by ID, and
// a query unanswered after -timeout is lost. A latency runs from just
// before the query is written to the time the kernel received the answer
// on this host (SO_TIMESTAMPNS, Linux; "clock":"kernel"), so that the time
// this process took to get the CPU and read it (it shares one core among
// its senders and readers) is not counted as the server's; p99_user_ms is
// p99 to the moment this process read the answer, as before.
//
// TCP: -conns connections, each keeping -inflight queries outstanding
// (pipelined, RFC 7766) and sending the next as each answer arrives; with
// -per-conn N each connection is closed and opened again after N queries
// (N=1: a connection per query, as a resolver falling back to TCP after a
// truncated answer does).
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

type result struct {
	Proto    string         `json:"proto"`
	Sent     int64          `json:"sent"`
	Answered int64          `json:"answered"`
	Lost     int64          `json:"lost"`
	QPS      float64        `json:"qps"`
	P50      float64        `json:"p50_ms"`
	P99      float64        `json:"p99_ms"`
	P999     float64        `json:"p999_ms"`
	Max      float64        `json:"max_ms"`
	Clock    string         `json:"clock,omitempty"`       // udp: "kernel" (receive timestamps) or "user"
	P99User  float64        `json:"p99_user_ms,omitempty"` // udp, kernel clock: p99 to the read`
	Rcodes   map[string]int `json:"rcodes"`
	Errors   int64          `json:"errors"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dnsload:", err)
		os.Exit(1)
	}
}

func run() error {
	server := flag.String("s", "127.0.0.1:53", "server address")
	file := flag.String("d", "", `dnsperf query file ("name TYPE" lines)`)
	proto := flag.String("proto", "udp", "udp or tcp")
	rate := flag.Int("rate", 10000, "udp: queries per second")
	sockets := flag.Int("sockets", 4, "udp: sockets (each a source port)")
	conns := flag.Int("conns", 8, "tcp: connections")
	inflight := flag.Int("inflight", 16, "tcp: queries outstanding per connection")
	perConn := flag.Int("per-conn", 0, "tcp: queries per connection before it is opened again (0: no limit)")
	count := flag.Int64("count", 0, "tcp: stop after this many queries (0: at -duration); -count LINES asks every name once")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	timeout := flag.Duration("timeout", time.Second, "an answer later than this is lost")
	edns := flag.Bool("edns", true, "send EDNS (1232 bytes, DO clear), as dnsperf -e")
	series := flag.String("series", "", "udp: write the latency over time to this file (per 10 ms of sending: answers, p99, max), to see when the tail happens")
	flag.Parse()
	if *file == "" || *duration <= 0 || *rate < 1 || *sockets < 1 || *conns < 1 || *inflight < 1 || *perConn < 0 {
		return errors.New("usage: dnsload -s ADDR -d FILE [-proto udp -rate N -sockets N | -proto tcp -conns N -inflight N -per-conn N] [-duration D]")
	}
	queries, err := load(*file, *edns)
	if err != nil {
		return err
	}
	var res result
	switch *proto {
	case "udp":
		res, err = runUDP(*server, queries, *rate, *sockets, *duration, *timeout, *series)
	case "tcp":
		res, err = runTCP(*server, queries, *conns, *inflight, *perConn, *count, *duration, *timeout)
	default:
		return fmt.Errorf("-proto %q: udp or tcp", *proto)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// queryList is every query of the file packed once (ID 0; set when sent),
// end to end in one buffer: a million queries are two allocations, not a
// million, so that this process's garbage collector (which scans every
// pointer) does not stall the readers that time the answers.
type queryList struct {
	buf []byte
	end []int32 // end[i]: where query i ends in buf
}

func (l *queryList) len() int { return len(l.end) }

// at returns query i mod len.
func (l *queryList) at(i int) []byte {
	i %= len(l.end)
	start := int32(0)
	if i > 0 {
		start = l.end[i-1]
	}
	return l.buf[start:l.end[i]]
}

// load packs every query of the file once.
func load(path string, edns bool) (*queryList, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := &queryList{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		t, ok := dns.StringToType[strings.ToUpper(fields[1])]
		if !ok {
			return nil, fmt.Errorf("%s: unknown type %q", path, fields[1])
		}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(fields[0]), t)
		m.RecursionDesired = false
		if edns {
			m.SetEdns0(1232, false)
		}
		b, err := m.Pack()
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, fields[0], err)
		}
		out.buf = append(out.buf, b...)
		out.end = append(out.end, int32(len(out.buf)))
	}
	if out.len() == 0 {
		return nil, fmt.Errorf("%s: no queries", path)
	}
	return out, sc.Err()
}

// stats gathers latencies and rcodes from several goroutines.
type stats struct {
	mu       sync.Mutex
	lat      []time.Duration
	user     []time.Duration // udp with kernel timestamps: the latencies to the read
	rcodes   map[int]int
	sent     atomic.Int64
	answered atomic.Int64
	errors   atomic.Int64
}

func (s *stats) add(lat, user []time.Duration, rcodes map[int]int) {
	s.mu.Lock()
	s.lat = append(s.lat, lat...)
	s.user = append(s.user, user...)
	if s.rcodes == nil {
		s.rcodes = map[int]int{}
	}
	for k, v := range rcodes {
		s.rcodes[k] += v
	}
	s.mu.Unlock()
}

func (s *stats) result(proto string, elapsed time.Duration) result {
	slices.Sort(s.lat)
	slices.Sort(s.user)
	at := func(l []time.Duration, p float64) float64 {
		if len(l) == 0 {
			return 0
		}
		i := min(len(l)-1, int(p*float64(len(l))))
		return float64(l[i].Microseconds()) / 1000
	}
	pct := func(p float64) float64 { return at(s.lat, p) }
	r := result{Proto: proto, Sent: s.sent.Load(), Answered: s.answered.Load(), Errors: s.errors.Load(),
		QPS: float64(s.answered.Load()) / elapsed.Seconds(),
		P50: pct(0.5), P99: pct(0.99), P999: pct(0.999), Max: pct(1), Rcodes: map[string]int{}}
	r.Lost = r.Sent - r.Answered
	if len(s.user) > 0 {
		r.P99User = at(s.user, 0.99)
	}
	for k, v := range s.rcodes {
		r.Rcodes[dns.RcodeToString[k]] = v
	}
	return r
}

func runUDP(server string, queries *queryList, rate, sockets int, duration, timeout time.Duration, seriesFile string) (result, error) {
	var st stats
	var wg sync.WaitGroup
	start := time.Now()
	perSocket := float64(rate) / float64(sockets)
	expect := int(perSocket*duration.Seconds()*1.05) + 1024 // answers per reader, room made once
	var ser *series
	if seriesFile != "" {
		ser = newSeries(start, duration+timeout)
	}
	errc := make(chan error, sockets)
	clock := "user"
	for s := range sockets {
		conn, err := net.Dial("udp", server)
		if err != nil {
			return result{}, err
		}
		// Room for the answers of a burst while this process waits for
		// the CPU (capped by net.core.rmem_max).
		uc := conn.(*net.UDPConn)
		_ = uc.SetReadBuffer(4 << 20)
		kernel := rxClock(uc)
		if kernel {
			clock = "kernel"
		}
		var sentAt [65536]atomic.Int64 // ns since start; 0: not outstanding
		wg.Go(func() {                 // reader
			buf := make([]byte, 65535)
			oob := make([]byte, 128)
			lat := make([]time.Duration, 0, expect)
			var user []time.Duration
			if kernel {
				user = make([]time.Duration, 0, expect)
			}
			var sentNs []int64
			if ser != nil {
				sentNs = make([]int64, 0, expect)
			}
			rcodes := map[int]int{}
			defer func() {
				st.add(lat, user, rcodes)
				ser.add(sentNs, lat)
			}()
			for {
				_ = conn.SetReadDeadline(start.Add(duration + timeout))
				n, oobn, _, _, err := uc.ReadMsgUDPAddrPort(buf, oob)
				if err != nil {
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						errc <- err
					}
					return
				}
				if n < 12 {
					continue
				}
				id := binary.BigEndian.Uint16(buf)
				t := sentAt[id].Swap(0)
				if t == 0 {
					continue // late or duplicate
				}
				d := time.Since(start) - time.Duration(t)
				if d > timeout {
					continue
				}
				if kernel {
					user = append(user, d)
					if rx := rxTime(oob[:oobn]); !rx.IsZero() {
						d = min(d, max(0, rx.Sub(start)-time.Duration(t)))
					}
				}
				lat = append(lat, d)
				if ser != nil {
					sentNs = append(sentNs, t)
				}
				rcodes[int(buf[3]&0x0f)]++
				st.answered.Add(1)
			}
		})
		wg.Go(func() { // sender: what is due every 200 µs (sleeping less costs more than it evens out)
			defer func() { _ = conn.SetReadDeadline(time.Now().Add(timeout)) }()
			b := make([]byte, 0, 512)
			var id uint16
			sent := 0
			q := s
			for {
				el := time.Since(start)
				if el >= duration {
					return
				}
				due := int(perSocket * el.Seconds())
				for ; sent < due; sent++ {
					b = append(b[:0], queries.at(q)...)
					q += sockets
					id++
					binary.BigEndian.PutUint16(b, id)
					sentAt[id].Store(int64(time.Since(start)) | 1)
					if _, err := conn.Write(b); err != nil {
						st.errors.Add(1)
						continue
					}
					st.sent.Add(1)
				}
				time.Sleep(200 * time.Microsecond)
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errc:
		return result{}, err
	default:
	}
	if ser != nil {
		if err := ser.write(seriesFile); err != nil {
			return result{}, err
		}
	}
	r := st.result("udp", duration)
	r.Clock = clock
	return r, nil
}

// series gathers latencies by when their queries were sent, in 10 ms
// slots, to show when the slow answers happen (against a server's GC log,
// say).
type series struct {
	mu    sync.Mutex
	start time.Time
	slots [][]time.Duration
}

const seriesSlot = 10 * time.Millisecond

func newSeries(start time.Time, span time.Duration) *series {
	return &series{start: start, slots: make([][]time.Duration, span/seriesSlot+1)}
}

// add files lat[i], of a query sent sent[i] ns after the start.
func (s *series) add(sent []int64, lat []time.Duration) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, t := range sent {
		if k := int(time.Duration(t) / seriesSlot); k < len(s.slots) {
			s.slots[k] = append(s.slots[k], lat[i])
		}
	}
}

// write writes one line per slot: its start as Unix time (s), answers,
// p99 and max latency (ms).
func (s *series) write(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "# unix_s\tanswers\tp99_ms\tmax_ms")
	for k, l := range s.slots {
		if len(l) == 0 {
			continue
		}
		slices.Sort(l)
		at := s.start.Add(time.Duration(k) * seriesSlot)
		fmt.Fprintf(w, "%.3f\t%d\t%.3f\t%.3f\n", float64(at.UnixNano())/1e9, len(l),
			float64(l[min(len(l)-1, len(l)*99/100)].Microseconds())/1000, float64(l[len(l)-1].Microseconds())/1000)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func runTCP(server string, queries *queryList, conns, inflight, perConn int, count int64, duration, timeout time.Duration) (result, error) {
	var st stats
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(duration)
	var next atomic.Int64
	if count == 0 {
		count = math.MaxInt64
	}
	for range conns {
		wg.Go(func() {
			var lat []time.Duration
			rcodes := map[int]int{}
			defer func() { st.add(lat, nil, rcodes) }()
			for time.Now().Before(end) {
				n := perConn
				if n == 0 {
					n = -1
				}
				if next.Load() >= count {
					return
				}
				if err := tcpSession(server, queries, &next, count, inflight, n, end, timeout, &st, &lat, rcodes); err != nil {
					st.errors.Add(1)
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	return st.result("tcp", time.Since(start)), nil
}

// tcpSession runs one connection: up to limit queries (-1: until end),
// inflight of them outstanding at a time.
func tcpSession(server string, queries *queryList, next *atomic.Int64, count int64, inflight, limit int, end time.Time, timeout time.Duration,
	st *stats, lat *[]time.Duration, rcodes map[int]int) error {
	conn, err := net.DialTimeout("tcp", server, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(end.Add(timeout))
	r := bufio.NewReaderSize(conn, 64<<10)
	w := bufio.NewWriterSize(conn, 64<<10)
	var sentAt [65536]time.Time
	var id uint16
	sent, got := 0, 0
	send := func() error {
		i := next.Add(1) - 1
		q := queries.at(int(i))
		id++
		var hdr [4]byte
		binary.BigEndian.PutUint16(hdr[:], uint16(len(q)))
		binary.BigEndian.PutUint16(hdr[2:], id)
		sentAt[id] = time.Now()
		if _, err := w.Write(hdr[:]); err != nil {
			return err
		}
		if _, err := w.Write(q[2:]); err != nil {
			return err
		}
		sent++
		st.sent.Add(1)
		return nil
	}
	more := func() bool { return (limit < 0 || sent < limit) && next.Load() < count && time.Now().Before(end) }
	for sent < inflight && more() {
		if err := send(); err != nil {
			return err
		}
	}
	buf := make([]byte, 65535)
	for got < sent {
		if r.Buffered() < 2 { // no answer waiting: send what is queued first
			if err := w.Flush(); err != nil {
				return err
			}
		}
		var l [2]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return err
		}
		n := int(binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return err
		}
		got++
		if n >= 12 {
			*lat = append(*lat, time.Since(sentAt[binary.BigEndian.Uint16(buf)]))
			rcodes[int(buf[3]&0x0f)]++
			st.answered.Add(1)
		}
		if more() {
			if err := send(); err != nil {
				return err
			}
		}
	}
	return w.Flush()
}
