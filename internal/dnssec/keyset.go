package dnssec

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/miekg/dns"
)

// Keyset is the zone's keys and the rollover in progress, as stored in the
// database (one value, so that every change to it is atomic).
type Keyset struct {
	Zone     string // FQDN, lower case
	Keys     []*Key
	Rollover *Rollover // nil: none in progress
	Last     *Rollover // the last rollover finished, for status
}

// NewKeyset makes the keys of a newly signed zone: one CSK, or a KSK and a
// ZSK when split, published, signing, and with their DS wanted at the
// parent.
func NewKeyset(zone string, alg uint8, split bool, now time.Time) (*Keyset, error) {
	ks := &Keyset{Zone: dns.CanonicalName(zone)}
	roles := []Role{CSK}
	if split {
		roles = []Role{KSK, ZSK}
	}
	for _, r := range roles {
		k, err := NewKey(ks.Zone, alg, r, now)
		if err != nil {
			return nil, err
		}
		k.Publish, k.Sign, k.DS = true, true, r.signsKeys()
		ks.Keys = append(ks.Keys, k)
	}
	return ks, ks.check()
}

// Key returns the key with the given ID, or nil.
func (ks *Keyset) Key(id string) *Key {
	for _, k := range ks.Keys {
		if k.ID == id {
			return k
		}
	}
	return nil
}

// ParentKeys are the keys whose DS the parent should hold now (what CDS
// and CDNSKEY say, and what `acmebroker dnssec ds` prints).
func (ks *Keyset) ParentKeys() []*Key {
	var out []*Key
	for _, k := range ks.Keys {
		if k.DS {
			out = append(out, k)
		}
	}
	return out
}

// Split reports whether the zone has a KSK/ZSK split (rather than a CSK).
func (ks *Keyset) Split() bool {
	for _, k := range ks.Keys {
		if k.Role == CSK {
			return false
		}
	}
	return true
}

// check enforces what every stored key set must hold so that the zone
// validates: some published key signs the data, some published key signs
// the apex key sets, every signing key is published, and a key the parent
// points at is published and signs the key sets.
func (ks *Keyset) check() error {
	var data, keys, parent bool
	ids := map[string]bool{}
	for _, k := range ks.Keys {
		if ids[k.ID] {
			return fmt.Errorf("dnssec: key id %s twice", k.ID)
		}
		ids[k.ID] = true
		if k.Sign && !k.Publish {
			return fmt.Errorf("dnssec: key %s signs but is not published", k)
		}
		if k.DS && (!k.Role.signsKeys() || !k.Publish || !k.Sign) {
			return fmt.Errorf("dnssec: key %s is meant to be at the parent but does not sign the DNSKEY set", k)
		}
		data = data || (k.Sign && k.Role.signsData())
		keys = keys || (k.Sign && k.Role.signsKeys())
		parent = parent || k.DS
	}
	switch {
	case !data:
		return errors.New("dnssec: no key signs the zone's data")
	case !keys:
		return errors.New("dnssec: no key signs the DNSKEY set")
	case !parent:
		return errors.New("dnssec: no key is meant to be at the parent")
	}
	if r := ks.Rollover; r != nil {
		old, nk := ks.Key(r.Old), ks.Key(r.New)
		switch {
		case old == nil || nk == nil || old == nk:
			return errors.New("dnssec: the rollover in progress names a key that is not in the key set")
		case old.Role != r.Role || nk.Role != r.Role:
			return fmt.Errorf("dnssec: the rollover in progress is of a %s, but its keys are not", r.Role)
		case r.Step != stepPublish && r.Step != stepSwitch:
			return fmt.Errorf("dnssec: the rollover in progress is at step %d", r.Step)
		}
	}
	return nil
}

// stored is the JSON form of a key set.
type stored struct {
	Version  int         `json:"version"`
	Zone     string      `json:"zone"`
	Keys     []storedKey `json:"keys"`
	Rollover *Rollover   `json:"rollover,omitempty"`
	Last     *Rollover   `json:"last_rollover,omitempty"`
}

type storedKey struct {
	ID        string    `json:"id"`
	Role      Role      `json:"role"`
	Algorithm uint8     `json:"algorithm"`
	Flags     uint16    `json:"flags"`
	PublicKey string    `json:"public_key"`
	Private   string    `json:"private_key"`      // base64 of PKCS #8 DER, or of the sealed DER
	Sealed    bool      `json:"sealed,omitempty"` // Private is AES-256-GCM sealed with the key file
	Created   time.Time `json:"created"`
	Publish   bool      `json:"publish"`
	Sign      bool      `json:"sign"`
	DS        bool      `json:"ds"`
}

const storedVersion = 1

// sealAAD binds a sealed private key to its zone and key.
func sealAAD(zone, id string) string { return "acmebroker dnssec key " + zone + " " + id }

// Marshal encodes the key set for storage, sealing the private keys when
// s is not nil.
func (ks *Keyset) Marshal(s *Sealer) ([]byte, error) {
	if err := ks.check(); err != nil {
		return nil, err
	}
	out := stored{Version: storedVersion, Zone: ks.Zone, Rollover: ks.Rollover, Last: ks.Last}
	for _, k := range ks.Keys {
		der, err := k.privateDER()
		if err != nil {
			return nil, fmt.Errorf("dnssec: encode key %s: %w", k, err)
		}
		sk := storedKey{ID: k.ID, Role: k.Role, Algorithm: k.Algorithm(), Flags: k.dnskey.Flags, PublicKey: k.dnskey.PublicKey,
			Created: k.Created, Publish: k.Publish, Sign: k.Sign, DS: k.DS}
		if s != nil {
			der, err = s.seal(der, sealAAD(ks.Zone, k.ID))
			if err != nil {
				return nil, fmt.Errorf("dnssec: seal key %s: %w", k, err)
			}
			sk.Sealed = true
		}
		sk.Private = base64.StdEncoding.EncodeToString(der)
		out.Keys = append(out.Keys, sk)
	}
	return json.Marshal(out)
}

// ParseKeyset decodes a stored key set of zone, opening sealed private
// keys with s. plain reports whether any private key was stored
// unsealed (to be sealed once a key file is configured). Errors never
// quote key material.
func ParseKeyset(b []byte, zone string, s *Sealer) (ks *Keyset, plain bool, err error) {
	var in stored
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, false, fmt.Errorf("dnssec: stored keys do not decode: %w", err)
	}
	if in.Version != storedVersion {
		return nil, false, fmt.Errorf("dnssec: stored keys have version %d; this program reads version %d (a newer broker wrote them?)", in.Version, storedVersion)
	}
	zone = dns.CanonicalName(zone)
	if in.Zone != zone {
		return nil, false, fmt.Errorf("dnssec: the stored keys are for zone %q, not %q", in.Zone, zone)
	}
	ks = &Keyset{Zone: zone, Rollover: in.Rollover, Last: in.Last}
	for i, sk := range in.Keys {
		if !sk.Role.valid() || sk.ID == "" {
			return nil, false, fmt.Errorf("dnssec: stored key %d: no id or an unknown role %q", i, sk.Role)
		}
		if sk.Flags != sk.Role.flags() {
			return nil, false, fmt.Errorf("dnssec: stored key %s: flags %d do not fit its role %s", sk.ID, sk.Flags, sk.Role)
		}
		der, err := base64.StdEncoding.DecodeString(sk.Private)
		if err != nil {
			return nil, false, fmt.Errorf("dnssec: stored key %s: private key is not base64", sk.ID)
		}
		switch {
		case sk.Sealed && s == nil:
			return nil, false, errors.New("dnssec: the keys in the database are encrypted: set dns.dnssec.key_file to the key file they were encrypted with")
		case sk.Sealed:
			if der, err = s.open(der, sealAAD(zone, sk.ID)); err != nil {
				return nil, false, fmt.Errorf("dnssec: stored key %s: %w", sk.ID, err)
			}
		default:
			plain = true
		}
		dk, priv, err := loadKey(zone, sk.Algorithm, sk.Flags, sk.PublicKey, der)
		if err != nil {
			return nil, false, fmt.Errorf("dnssec: stored key %s: %w", sk.ID, err)
		}
		ks.Keys = append(ks.Keys, &Key{ID: sk.ID, Role: sk.Role, Created: sk.Created, Publish: sk.Publish, Sign: sk.Sign, DS: sk.DS, dnskey: dk, priv: priv})
	}
	if err := ks.check(); err != nil {
		return nil, false, err
	}
	return ks, plain, nil
}
