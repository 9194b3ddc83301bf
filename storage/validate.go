package storage

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Times are stored as int64 Unix nanoseconds, which covers 1678 to 2262.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// ValidTime checks that t is set and storable by every engine; what names
// it in the error.
func ValidTime(what string, t time.Time) error {
	if t.IsZero() {
		return fmt.Errorf("%s is not set", what)
	}
	if t.Before(minTime) || t.After(maxTime) {
		return fmt.Errorf("%s %s is outside the years 1678-2262", what, t)
	}
	return nil
}

// CheckAt checks what SetTXT and PruneTXT are given, in every engine: a
// storable time, and a policy that keeps something (one keeping nothing
// would delete every value, the new one too).
func (p TXTPolicy) CheckAt(at time.Time) error {
	if err := ValidTime("time", at); err != nil {
		return err
	}
	if p.Max < 1 {
		return fmt.Errorf("TXT policy keeps no value (Max %d)", p.Max)
	}
	return nil
}

// Check checks what CreateToken is given, in every engine.
func (t Token) Check() error {
	switch {
	case t.ID == "":
		return errors.New("empty id")
	case t.Hash == "":
		return errors.New("empty hash")
	case t.MaxAccounts < 0:
		return errors.New("negative max accounts")
	}
	return ValidTime("created_at", t.CreatedAt)
}
