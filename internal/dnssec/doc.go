// Package dnssec signs the broker's zone online: it keeps the zone's keys
// (generated at first start, stored in the database every node shares,
// encrypted at rest with a key file when one is configured), signs RRsets
// on demand with a per-RRset signature cache, and walks key rollovers whose
// waits are computed from the zone's TTLs.
//
// The DNS server (dnsserver) decides what an answer holds, including the
// denial of existence (RFC 9824 compact answers); this package only makes
// and caches signatures (Signer implements dnsserver.Signer) and manages
// keys over time (Keyset, Rollover, Node). It knows nothing of HTTP or SQL:
// keys are kept through the small Values interface, which storage.Store
// satisfies.
//
// Signatures are made when an answer first needs them, never in bulk: a
// zone of a million accounts costs no signature at start-up, and a
// signature is re-made only when the RRset it covers changes, when it is
// half-way to its expiry, or when the signing keys change.
package dnssec
