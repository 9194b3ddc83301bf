package storage

import (
	"errors"
	"fmt"
	"time"
)

// Named values and leases: what the broker keeps for its own use beside the
// zone, shared by every node on one database. The API's certificate, its
// private key and the ACME account live here (internal/apitls), and so will
// DNSSEC keys. A lease lets one node of several do a job (renew the
// certificate) while the others wait for its result.
//
// Names are paths by convention ("tls/acme/<directory>/account"), compared
// bytewise; ListValues lists by prefix. Values are small blobs (at most
// MaxValueSize). Private keys are stored as they are given: an engine does
// not encrypt them (see docs/security.md).

// Value is one named value.
type Value struct {
	Name     string
	Data     []byte
	Modified time.Time // the at of the PutValue that stored it
}

// ValueInfo describes a value without its data (ListValues).
type ValueInfo struct {
	Name     string
	Size     int
	Modified time.Time
}

// MaxValueSize bounds a value's data (a certificate chain with its key is a
// few kilobytes).
const MaxValueSize = 1 << 20

// MaxValueName bounds the length of a value's or a lease's name, and of a
// lease's owner.
const MaxValueName = 255

// CheckValueName checks a value's or a lease's name in every engine: 1 to
// MaxValueName bytes of printable ASCII, no space.
func CheckValueName(name string) error {
	if name == "" {
		return errors.New("empty name")
	}
	if len(name) > MaxValueName {
		return fmt.Errorf("name is longer than %d bytes", MaxValueName)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("name %q: byte %d is not printable ASCII", name, i)
		}
	}
	return nil
}

// CheckValue checks what PutValue is given, in every engine.
func CheckValue(name string, data []byte, at time.Time) error {
	if err := CheckValueName(name); err != nil {
		return err
	}
	if len(data) > MaxValueSize {
		return fmt.Errorf("value %s: %d bytes is more than %d", name, len(data), MaxValueSize)
	}
	return ValidTime("modified time", at)
}

// CheckLease checks what TryLock is given, in every engine.
func CheckLease(name, owner string, at time.Time, ttl time.Duration) error {
	if err := CheckValueName(name); err != nil {
		return err
	}
	if owner == "" || len(owner) > MaxValueName {
		return fmt.Errorf("lease %s: the owner must be 1 to %d bytes", name, MaxValueName)
	}
	if ttl <= 0 {
		return fmt.Errorf("lease %s: ttl %s is not positive", name, ttl)
	}
	if err := ValidTime("time", at); err != nil {
		return err
	}
	return ValidTime("lease expiry", at.Add(ttl))
}
