package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// decode reads a TOML document over c one key at a time, so that every key
// with a value of the wrong type or form, and every unknown key, is
// reported, not only the first the decoder meets. Only a syntax error stops
// it (nothing after it can be read). A key that fails keeps its default.
// failed are the keys reported, for Validate's errors to skip.
func decode(b []byte, c *Config) (errs []error, failed []string) {
	var top map[string]toml.Primitive
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&top)
	if err != nil {
		return []error{tomlError("", err)}, nil
	}
	d := &decoder{md: md}
	d.table(top, reflect.ValueOf(c).Elem(), "")
	// Keys inside arrays of tables ([[dns.transfer.keys]]) are checked by
	// the decoder's own bookkeeping: what it never used is unknown.
	for _, k := range md.Undecoded() {
		d.unknown(k.String())
	}
	slices.SortStableFunc(d.unknowns, strings.Compare)
	for _, k := range d.unknowns {
		d.errs = append(d.errs, &KeyError{Key: k, Unknown: true})
	}
	return d.errs, d.failed
}

type decoder struct {
	md       toml.MetaData
	errs     []error
	failed   []string // keys whose value was refused
	unknowns []string
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// table decodes the keys of tbl into the struct v, whose fields carry toml
// tags, in the order of the fields (so errors come in a stable order).
func (d *decoder) table(tbl map[string]toml.Primitive, v reflect.Value, prefix string) {
	known := map[string]bool{}
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		known[name] = true
		prim, ok := tbl[name]
		if !ok {
			continue
		}
		key, f := prefix+name, v.Field(i)
		if f.Kind() == reflect.Struct && !reflect.PointerTo(f.Type()).Implements(textUnmarshaler) {
			var sub map[string]toml.Primitive
			if err := d.md.PrimitiveDecode(prim, &sub); err != nil {
				d.refuse(key, fmt.Errorf("must be a table: write [%s] and its keys below it", key))
				continue
			}
			d.table(sub, f, key+".")
			continue
		}
		// A fresh value, set only when it decodes: a list replaces the
		// default, and a refused one leaves the default whole.
		nv := reflect.New(f.Type())
		if err := d.md.PrimitiveDecode(prim, nv.Interface()); err != nil {
			d.refuse(key, err)
			continue
		}
		f.Set(nv.Elem())
	}
	for name := range tbl {
		if !known[name] {
			d.unknown(prefix + name)
		}
	}
}

func (d *decoder) refuse(key string, err error) {
	d.failed = append(d.failed, key)
	d.errs = append(d.errs, tomlError(key, err))
}

// unknown records key unless it is, or is inside, a key already reported.
func (d *decoder) unknown(key string) {
	for _, k := range slices.Concat(d.failed, d.unknowns) {
		if under(key, k) {
			return
		}
	}
	d.unknowns = append(d.unknowns, key)
}

// under says whether key is k or one of its parts (k.x, k[0]).
func under(key, k string) bool {
	return key == k || strings.HasPrefix(key, k+".") || strings.HasPrefix(key, k+"[")
}

// KeyError is a configuration value refused, with the key it was given for.
type KeyError struct {
	Key     string // e.g. "dns.txt_max"
	Line    int    // line in the file; 0 when not known
	Msg     string
	Unknown bool // the key does not exist (Msg is empty)
}

func (e *KeyError) Error() string {
	if e.Unknown {
		return "unknown key " + e.Key + " (check the spelling against config.toml)"
	}
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Key, e.Msg)
	}
	return e.Key + ": " + e.Msg
}

// The decoder's type errors are plain strings of this form.
var tomlTypeError = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

// tomlError turns the TOML decoder's error into one naming key (and the
// line where the decoder knows it).
func tomlError(key string, err error) error {
	var perr toml.ParseError
	if errors.As(err, &perr) {
		if key == "" {
			key = perr.LastKey
		}
		if key == "" {
			return fmt.Errorf("line %d: %s", perr.Position.Line, perr.Message)
		}
		return &KeyError{Key: key, Line: perr.Position.Line, Msg: perr.Message}
	}
	if m := tomlTypeError.FindStringSubmatch(err.Error()); m != nil {
		line := 0
		fmt.Sscan(m[1], &line)
		if key == "" {
			key = m[2]
		}
		return &KeyError{Key: key, Line: line, Msg: m[3]}
	}
	if key == "" {
		return err
	}
	return &KeyError{Key: key, Msg: err.Error()}
}
