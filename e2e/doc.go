// Package e2e holds the end-to-end tests: a real broker (in process, on
// loopback) and the bundled client, or the ACME clients people already
// run, against real peers: Pebble as the CA, unbound as the resolver the CA
// asks, NSD, Knot and BIND as secondaries, certbot, dehydrated, lego,
// Apache's mod_md. It has no code of its own; `go test ./e2e/` runs them
// (each fails under CI, and skips elsewhere, when a program it needs is
// missing: see internal/testenv).
package e2e
