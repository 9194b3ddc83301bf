// Package fieldcheck lets a component say everything that is wrong with
// its settings, one error per field, each named by its key in config.toml.
// The range of a setting is then written once, in the component's Check,
// and the config loader reports every error under the full key
// (dns.rrl.slip) by adding the table's name in front.
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

// Each calls f with the field and message of every error in err (joined
// by List.Err or errors.Join); an error that names no field is passed with
// field "".
func Each(err error, f func(field, msg string)) {
	if err == nil {
		return
	}
	list := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	}
	for _, e := range list {
		if fe := (*Error)(nil); errors.As(e, &fe) {
			f(fe.Field, fe.Msg)
		} else {
			f("", e.Error())
		}
	}
}
