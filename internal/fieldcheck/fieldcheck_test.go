package fieldcheck

import (
	"errors"
	"slices"
	"testing"
)

// TestList: every field added comes back from the joined error, in order,
// with its message; an empty list is no error.
func TestList(t *testing.T) {
	var l List
	if l.Err() != nil {
		t.Fatal("an empty list is an error")
	}
	l.Add("slip", "%d is out of range: 0 to 10", 11)
	l.Add("window", "too short")
	err := l.Err()
	var got []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *Error
		if !errors.As(e, &fe) {
			t.Fatalf("%v is not a field error", e)
		}
		got = append(got, fe.Field+"|"+fe.Msg)
	}
	want := []string{"slip|11 is out of range: 0 to 10", "window|too short"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if s := err.Error(); s != "slip: 11 is out of range: 0 to 10\nwindow: too short" {
		t.Fatalf("joined message %q", s)
	}
}
