package fieldcheck

import (
	"errors"
	"slices"
	"testing"
)

// TestEach: every field added comes back, in order, with its message; an
// error without a field comes back with an empty one; nil gives nothing.
func TestEach(t *testing.T) {
	var l List
	if l.Err() != nil {
		t.Fatal("an empty list is an error")
	}
	l.Add("slip", "%d is out of range: 0 to 10", 11)
	l.Add("window", "too short")
	var got []string
	each := func(err error) {
		Each(err, func(field, msg string) { got = append(got, field+"|"+msg) })
	}
	each(l.Err())
	each(errors.New("plain"))
	each(nil)
	want := []string{"slip|11 is out of range: 0 to 10", "window|too short", "|plain"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if s := l.Err().Error(); s != "slip: 11 is out of range: 0 to 10\nwindow: too short" {
		t.Fatalf("joined message %q", s)
	}
}
