package dnssec

import (
	"errors"
	"fmt"
	"time"
)

// Timing is what a rollover's waits are computed from (RFC 7583). The
// durations are kept with the rollover, so every node follows the plan of
// the node that started it.
type Timing struct {
	// DNSKEYTTL is the TTL of the DNSKEY, CDS and CDNSKEY RRsets.
	DNSKEYTTL time.Duration `json:"dnskey_ttl"`
	// MaxTTL is the longest TTL of any other signed RRset, negative
	// answers included (the SOA and its NSEC).
	MaxTTL time.Duration `json:"max_ttl"`
	// ParentDSTTL is the TTL of the DS RRset at the parent.
	ParentDSTTL time.Duration `json:"parent_ds_ttl"`
	// Propagation is how long a change of the key set takes to reach every
	// node's answers: two key refresh intervals.
	Propagation time.Duration `json:"propagation"`
	// Safety is added to every wait (RFC 7583's publish and retire
	// safety margins): for secondaries of the parent that lag, clocks a
	// little apart, resolvers that hold records a little longer.
	Safety time.Duration `json:"safety"`
}

// Rollover is a key rollover in progress (or the last one finished).
//
// A CSK or KSK rollover is a double-signature (double-KSK) rollover: the
// new key is published and signs beside the old one (step 1); once every
// cache can hold the new DNSKEY set, CDS and CDNSKEY name the new key
// only and the parent must change its DS (step 2, which waits for it to be
// seen there); once every cache has dropped the old DS, the old key goes
// (step 3). A ZSK rollover is a pre-publish rollover: the new key is
// published (step 1), takes over the signing once every cache can hold
// it (step 2), and the old key goes once every signature it made has
// expired from caches (step 3).
type Rollover struct {
	Role Role   `json:"role"`
	Old  string `json:"old"` // key IDs
	New  string `json:"new"`
	// OldTag and NewTag are the keys' tags, to name them once gone.
	OldTag uint16 `json:"old_tag"`
	NewTag uint16 `json:"new_tag"`
	// Step is 1, 2 or 3 (done).
	Step    int       `json:"step"`
	Started time.Time `json:"started"`
	// Since is when the current step began.
	Since time.Time `json:"since"`
	// NotBefore is when the next step may begin; zero while a CSK or KSK
	// rollover waits for the parent's DS.
	NotBefore time.Time `json:"not_before,omitzero"`
	// WaitingForDS: step 2 of a CSK or KSK rollover, until ConfirmDS.
	WaitingForDS bool `json:"waiting_for_ds,omitempty"`
	// DSSeen is when the parent was seen to hold the new DS.
	DSSeen time.Time `json:"ds_seen,omitzero"`
	// Done is when the rollover finished.
	Done   time.Time `json:"done,omitzero"`
	Timing Timing    `json:"timing"`
}

// Steps in the life of a rollover.
const (
	stepPublish = 1
	stepSwitch  = 2 // DS change (CSK, KSK) or signing switch (ZSK)
	stepDone    = 3
)

// ErrRolloverInProgress: a rollover was asked for while one runs.
var ErrRolloverInProgress = errors.New("a key rollover is in progress")

// StartRollover begins a rollover of the key with role (CSK in a zone with
// a combined key; KSK or ZSK in a split zone) to a new key of algorithm
// alg, at now, and returns the plan.
func (ks *Keyset) StartRollover(role Role, alg uint8, t Timing, now time.Time) (*Rollover, error) {
	if ks.Rollover != nil {
		return nil, ErrRolloverInProgress
	}
	var old *Key
	for _, k := range ks.Keys {
		if k.Role == role && k.Sign {
			if old != nil {
				return nil, fmt.Errorf("dnssec: two %s keys sign; the key set is not in a state a rollover starts from", role)
			}
			old = k
		}
	}
	if old == nil {
		if ks.Split() {
			return nil, fmt.Errorf("dnssec: the zone has a KSK and a ZSK, no %s; roll the ksk or the zsk", role)
		}
		return nil, fmt.Errorf("dnssec: the zone has one combined key (csk), no %s; roll the csk", role)
	}
	if alg != old.Algorithm() {
		// An algorithm rollover needs signatures of the new algorithm on
		// every RRset before its DNSKEY appears (RFC 6781 4.1.4); not
		// offered. Keep the algorithm the keys have.
		return nil, fmt.Errorf("dnssec: the zone's keys use %s; a rollover to %s (an algorithm rollover) is not offered: set dns.dnssec.algorithm back to %q",
			AlgorithmName(old.Algorithm()), AlgorithmName(alg), AlgorithmName(old.Algorithm()))
	}
	var nk *Key
	for range 8 { // a key tag already in use would make validators try both keys
		k, err := NewKey(ks.Zone, alg, role, now)
		if err != nil {
			return nil, err
		}
		if !ks.tagInUse(k.Tag()) {
			nk = k
			break
		}
	}
	if nk == nil {
		return nil, errors.New("dnssec: could not make a key with an unused key tag")
	}
	nk.Publish = true
	nk.Sign = role != ZSK // a new ZSK is published first, signs from step 2
	ks.Keys = append(ks.Keys, nk)
	r := &Rollover{Role: role, Old: old.ID, New: nk.ID, OldTag: old.Tag(), NewTag: nk.Tag(), Step: stepPublish, Started: now.UTC(), Since: now.UTC(), Timing: t}
	r.NotBefore = r.Since.Add(r.publishWait())
	ks.Rollover = r
	return r, ks.check()
}

func (ks *Keyset) tagInUse(tag uint16) bool {
	for _, k := range ks.Keys {
		if k.Tag() == tag {
			return true
		}
	}
	return false
}

// publishWait: after the new key appears, until every cache can hold the
// new DNSKEY set (and, for a CSK, until no cached RRset is signed by the
// old key alone, which the old key's retirement needs).
func (r *Rollover) publishWait() time.Duration {
	t := r.Timing
	w := t.DNSKEYTTL
	if r.Role == CSK {
		w = max(w, t.MaxTTL)
	}
	return t.Propagation + w + t.Safety
}

// switchWait: after the parent's DS changed (CSK, KSK), until no cache
// holds the old DS; after a ZSK takes over, until no cache holds a
// signature of the old one.
func (r *Rollover) switchWait() time.Duration {
	t := r.Timing
	if r.Role == ZSK {
		return t.Propagation + t.MaxTTL + t.Safety
	}
	return t.Propagation + t.ParentDSTTL + t.Safety
}

// Advance takes the rollover in progress to its next step if that is due
// at now, and reports whether the key set changed.
func (ks *Keyset) Advance(now time.Time) bool {
	r := ks.Rollover
	if r == nil || r.WaitingForDS || r.NotBefore.IsZero() || now.Before(r.NotBefore) {
		return false
	}
	old, nk := ks.Key(r.Old), ks.Key(r.New)
	switch r.Step {
	case stepPublish:
		r.Step, r.Since = stepSwitch, now.UTC()
		if r.Role == ZSK {
			nk.Sign, old.Sign = true, false
			r.NotBefore = r.Since.Add(r.switchWait())
		} else {
			nk.DS, old.DS = true, false
			r.WaitingForDS, r.NotBefore = true, time.Time{}
		}
	case stepSwitch:
		ks.remove(old.ID)
		r.Step, r.Since, r.Done, r.NotBefore = stepDone, now.UTC(), now.UTC(), time.Time{}
		ks.Last, ks.Rollover = r, nil
	default:
		return false
	}
	return true
}

// ConfirmDS records that the parent serves the new key's DS: the old key
// goes once every cache has dropped the old DS.
func (ks *Keyset) ConfirmDS(now time.Time) error {
	r := ks.Rollover
	if r == nil || !r.WaitingForDS {
		return errors.New("no rollover is waiting for the parent's DS")
	}
	r.WaitingForDS = false
	r.DSSeen = now.UTC()
	r.NotBefore = r.DSSeen.Add(r.switchWait())
	return nil
}

func (ks *Keyset) remove(id string) {
	out := ks.Keys[:0]
	for _, k := range ks.Keys {
		if k.ID != id {
			out = append(out, k)
		}
	}
	ks.Keys = out
}

// Describe says where the rollover stands and what happens next, in
// words for an operator.
func (r *Rollover) Describe() string {
	name := func(tag uint16) string { return fmt.Sprintf("%s %d", r.Role, tag) }
	at := func(t time.Time) string { return t.Local().Format(time.DateTime) }
	switch {
	case r.Step == stepDone:
		return fmt.Sprintf("rollover %s -> %s finished at %s", name(r.OldTag), name(r.NewTag), at(r.Done))
	case r.Step == stepPublish && r.Role == ZSK:
		return fmt.Sprintf("step 1/3: %s published beside %s; it takes over the signing at %s", name(r.NewTag), name(r.OldTag), at(r.NotBefore))
	case r.Step == stepPublish:
		return fmt.Sprintf("step 1/3: %s published and signing beside %s; the parent's DS changes from %s", name(r.NewTag), name(r.OldTag), at(r.NotBefore))
	case r.Role == ZSK:
		return fmt.Sprintf("step 2/3: %s signs; %s is removed at %s", name(r.NewTag), name(r.OldTag), at(r.NotBefore))
	case r.WaitingForDS:
		return fmt.Sprintf("step 2/3: waiting for the parent to serve the DS of %s (CDS and CDNSKEY name it); then %s is removed after the parent's DS TTL", name(r.NewTag), name(r.OldTag))
	default:
		return fmt.Sprintf("step 2/3: the parent serves the DS of %s since %s; %s is removed at %s", name(r.NewTag), at(r.DSSeen), name(r.OldTag), at(r.NotBefore))
	}
}
