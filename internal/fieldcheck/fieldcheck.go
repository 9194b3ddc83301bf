// Package fieldcheck lets a component say everything that is wrong with
// its settings, one error per field, each named by its key in config.toml.
// The range of a setting is then written once, in the component's Check,
// and the config loader reports every error under the full key
// (dns.rrl.slip) by adding the table's name in front of Error.Field.
package fieldcheck

import (
	"errors"
	"fmt"
)

// Error is one invalid field.
type Error struct {
	// Field is the key in its table of config.toml (slip, tcp_max_queries).
	Field string
	// Msg says what is wrong and what is allowed.
	Msg string
}

func (e *Error) Error() string { return e.Field + ": " + e.Msg }

// List gathers the errors of one Check.
type List struct{ errs []error }

// Add records that field is invalid.
func (l *List) Add(field, format string, args ...any) {
	l.errs = append(l.errs, &Error{Field: field, Msg: fmt.Sprintf(format, args...)})
}

// Err returns the errors joined (errors.Join), or nil when there are none.
func (l *List) Err() error { return errors.Join(l.errs...) }
