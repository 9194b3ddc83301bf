// Package client is acmebroker's bundled ACME client: it registers with a
// broker, tells the user the CNAME to add and checks it, and obtains and
// renews certificates (wildcards too) through RFC 8555 dns-01 challenges,
// setting the TXT values through the broker's HTTP API. The host it runs on
// needs no inbound traffic and no credentials for the primary DNS.
//
// It talks to the broker over HTTP only (BrokerClient), to the CA through
// golang.org/x/crypto/acme (Issuer), and to DNS directly (Checker), and
// keeps its state in a directory (State).
package client
