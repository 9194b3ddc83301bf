// Package client is acmebroker's bundled ACME client: it registers with a
// broker, tells the user the CNAME to add and checks the whole path the CA
// will take, and obtains, renews and revokes certificates (wildcards too)
// through DNS challenges (dns-01, dns-account-01 and dns-persist-01, each a
// DNSChallenge), setting the TXT values through the broker's HTTP API in
// batches the broker can serve at once, or, for dns-persist-01, one
// standing record that renewals use without writing to the broker. The host it runs on needs no inbound traffic
// and no credentials for the primary DNS.
//
// It talks to the broker over HTTP only (BrokerClient), to the CA through
// github.com/mholt/acmez/v3 (Issuer, acme.go), and to DNS directly
// (Checker), and keeps its state in a directory (State) that concurrent
// runs share safely through lock files (lock.go).
package client
