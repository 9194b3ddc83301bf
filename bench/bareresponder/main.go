// Command bareresponder is the speed baseline for the DNS benchmark: the least
// a miekg/dns server can do to answer TXT queries from memory. It has no zone
// logic, no SOA, no case handling; acmebroker is measured against it.
package main

import (
	"bufio"
	"flag"
	"log"
	"os"
	"strings"

	"github.com/miekg/dns"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:5353", "address to serve on, UDP and TCP")
	names := flag.String("names", "names.txt", `file of "fqdn. value" lines`)
	flag.Parse()

	f, err := os.Open(*names)
	if err != nil {
		log.Fatal(err)
	}
	answers := map[string][]dns.RR{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if !ok {
			continue
		}
		name = dns.CanonicalName(name)
		hdr := dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 1}
		answers[name] = append(answers[name], &dns.TXT{Hdr: hdr, Txt: []string{value}})
	}
	if err := sc.Err(); err != nil {
		log.Fatal(err)
	}
	f.Close()

	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if len(r.Question) == 1 {
			m.Answer = append(m.Answer, answers[strings.ToLower(r.Question[0].Name)]...)
		}
		w.WriteMsg(m)
	})
	tcp := &dns.Server{Addr: *listen, Net: "tcp", Handler: handler, MaxTCPQueries: -1}
	go func() { log.Fatal(tcp.ListenAndServe()) }()
	srv := &dns.Server{Addr: *listen, Net: "udp", Handler: handler}
	log.Printf("bareresponder: %d names, udp and tcp %s", len(answers), *listen)
	log.Fatal(srv.ListenAndServe())
}
