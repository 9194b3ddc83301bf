package acmedns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"github.com/acmebroker/acmebroker/storage"
)

// Store is what Import needs of the broker's store (a subset of
// storage.Store).
type Store interface {
	Account(ctx context.Context, username string) (storage.Account, error)
	CreateAccount(ctx context.Context, a storage.Account) (uint32, error)
	SetTXT(ctx context.Context, subdomain, value string, at time.Time, policy storage.TXTPolicy) ([]storage.TXTRecord, uint32, error)
	Snapshot(ctx context.Context, fn func(storage.Subdomain) error) (uint32, error)
}

// Outcome is what became of one row.
type Outcome int

// Outcomes.
const (
	Imported Outcome = iota // copied (or, in a dry run, would be)
	Skipped                 // already in the broker; nothing to do
	Failed                  // not imported; Event.Detail says why
)

func (o Outcome) String() string {
	switch o {
	case Imported:
		return "imported"
	case Skipped:
		return "skipped"
	}
	return "failed"
}

// Event reports one row of the source: an account (Value empty) or a TXT
// value. Username and Subdomain identify the row as acme-dns stores it.
// No event carries a key or its hash.
type Event struct {
	Outcome   Outcome
	Username  string
	Subdomain string
	Value     string    // TXT value (public: it is served in DNS); "" for an account
	At        time.Time // TXT value's time
	AllowFrom []netip.Prefix
	Detail    string // why it failed or was skipped
}

// IsTXT says whether the event is about a TXT value rather than an account.
func (e Event) IsTXT() bool { return e.Value != "" }

// Counts counts rows by outcome.
type Counts struct{ Imported, Skipped, Failed int }

// Summary counts what Import did.
type Summary struct {
	Accounts Counts
	Values   Counts
}

// Total adds the accounts and the values.
func (s Summary) Total() Counts {
	return Counts{s.Accounts.Imported + s.Values.Imported, s.Accounts.Skipped + s.Values.Skipped, s.Accounts.Failed + s.Values.Failed}
}

// Options tune Import.
type Options struct {
	// DryRun reads the source and the broker's store but writes nothing.
	DryRun bool
	// Policy is the broker's TXT policy, applied as each value is set.
	Policy storage.TXTPolicy
	// Now gives imported accounts their creation time (acme-dns keeps none).
	Now func() time.Time
	// Report is called once per row of the source (empty TXT rows aside),
	// from one goroutine at a time, in no fixed order.
	Report func(Event)
	// Workers write accounts concurrently, so that the store can commit
	// many in one transaction (default 64).
	Workers int
}

// owner is what Import knows of a subdomain: taken in the broker before the
// import (user "") or by a row of the source.
type owner struct {
	user   string // source username that claimed it; "" = in the broker already
	values int    // TXT values the broker holds for it
}

// Import copies every account of src and its current TXT values into dst.
// An account already in dst with the same username and subdomain is
// skipped (its values too, unless dst has none for it, as after an
// interrupted import). Every row that is not imported is reported with the
// reason; the error is for failures of the databases themselves. dst may be
// nil in a dry run: the broker's store is then taken as empty.
func Import(ctx context.Context, src *Source, dst Store, opt Options) (Summary, error) {
	if dst == nil && !opt.DryRun {
		return Summary{}, errors.New("acme-dns import: no store to write to")
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Report == nil {
		opt.Report = func(Event) {}
	}
	if opt.Policy.Max < 1 {
		opt.Policy = storage.DefaultTXTPolicy
	}
	if opt.Workers < 1 {
		opt.Workers = 64
	}
	if opt.DryRun {
		opt.Workers = 1 // nothing to wait for; keep the report in source order
	}
	im := &importer{src: src, dst: dst, opt: opt, subs: map[string]*owner{}}
	if dst != nil {
		if _, err := dst.Snapshot(ctx, func(s storage.Subdomain) error {
			im.subs[s.Name] = &owner{values: len(s.Records)}
			return nil
		}); err != nil {
			return Summary{}, fmt.Errorf("acme-dns import: read the broker's store: %w", err)
		}
	}
	err := im.run(ctx)
	return im.sum, err
}

type importer struct {
	src  *Source
	dst  Store
	opt  Options
	subs map[string]*owner // the reading goroutine's only
	mu   sync.Mutex        // guards sum and calls of Report
	sum  Summary
}

func (im *importer) report(e Event) {
	im.mu.Lock()
	defer im.mu.Unlock()
	c := &im.sum.Accounts
	if e.IsTXT() {
		c = &im.sum.Values
	}
	switch e.Outcome {
	case Imported:
		c.Imported++
	case Skipped:
		c.Skipped++
	default:
		c.Failed++
	}
	im.opt.Report(e)
}

// job is the writing an account needs, decided by the reading goroutine.
type job struct {
	create *storage.Account // nil: the account is in the broker already
	ev     Event            // the account's event, reported once it is created
	r      Record
	vals   []TXTRow
}

// run reads the source in one goroutine, which decides what to do with
// each row, and writes with opt.Workers goroutines.
func (im *importer) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		once sync.Once
		werr error
		wg   sync.WaitGroup
	)
	jobs := make(chan job)
	for range im.opt.Workers {
		wg.Go(func() {
			for j := range jobs {
				if ctx.Err() != nil {
					continue // a write failed: drain
				}
				if err := im.do(ctx, j); err != nil {
					once.Do(func() { werr = err; cancel() })
				}
			}
		})
	}
	err := im.read(ctx, func(j job) error {
		select {
		case jobs <- j:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	close(jobs)
	wg.Wait()
	if werr != nil {
		return werr
	}
	return err
}

// do creates an account (unless it is there) and sets its values.
func (im *importer) do(ctx context.Context, j job) error {
	if j.create != nil {
		if !im.opt.DryRun {
			if _, err := im.dst.CreateAccount(ctx, *j.create); err != nil {
				if errors.Is(err, storage.ErrConflict) {
					im.failAccount(j.ev, j.vals, "the broker already has an account with this username or subdomain")
					return nil
				}
				return fmt.Errorf("acme-dns import: create account %s: %w", j.create.Username, err)
			}
		}
		j.ev.Outcome = Imported
		im.report(j.ev)
	}
	return im.values(ctx, j.r, strings.ToLower(strings.TrimSpace(j.r.Subdomain)), j.vals)
}

// failAccount reports an account and its values as not imported.
func (im *importer) failAccount(ev Event, vals []TXTRow, why string) {
	ev.Outcome, ev.Detail = Failed, why
	im.report(ev)
	for _, v := range vals {
		im.report(Event{Outcome: Failed, Username: ev.Username, Subdomain: ev.Subdomain, Value: v.Value,
			At: time.Unix(v.LastUpdate, 0), Detail: "its account was not imported"})
	}
}

// read merges the records and txt streams, both in byte order of
// subdomain, and hands the writing to write.
func (im *importer) read(ctx context.Context, write func(job) error) error {
	recs, err := im.src.records(ctx)
	if err != nil {
		return err
	}
	defer recs.Close()
	txts, err := im.src.txtRows(ctx)
	if err != nil {
		return err
	}
	defer txts.Close()

	var pending *TXTRow // the next txt row not yet consumed
	nextTXT := func() error {
		pending = nil
		if txts.Next() {
			t, err := scanTXT(txts)
			if err != nil {
				return err
			}
			pending = &t
		}
		return txts.Err()
	}
	if err := nextTXT(); err != nil {
		return err
	}
	orphan := func(t TXTRow) {
		im.report(Event{Outcome: Failed, Subdomain: t.Subdomain, Value: t.Value, At: time.Unix(t.LastUpdate, 0),
			Detail: "no account in the acme-dns database has this subdomain"})
	}
	for recs.Next() {
		r, err := scanRecord(recs)
		if err != nil {
			return err
		}
		var vals []TXTRow
		for pending != nil && pending.Subdomain <= r.Subdomain {
			if pending.Subdomain < r.Subdomain {
				orphan(*pending)
			} else {
				vals = append(vals, *pending)
			}
			if err := nextTXT(); err != nil {
				return err
			}
		}
		if err := im.account(ctx, r, vals, write); err != nil {
			return err
		}
	}
	if err := recs.Err(); err != nil {
		return fmt.Errorf("acme-dns database: read records: %w", err)
	}
	for pending != nil {
		orphan(*pending)
		if err := nextTXT(); err != nil {
			return err
		}
	}
	return nil
}

// account decides what to do with one record and its values.
func (im *importer) account(ctx context.Context, r Record, vals []TXTRow, write func(job) error) error {
	ev := Event{Username: r.Username, Subdomain: r.Subdomain}
	a, why := convert(r)
	if why != "" {
		im.failAccount(ev, vals, why)
		return nil
	}
	a.CreatedAt = im.opt.Now()
	ev.AllowFrom = a.AllowFrom

	if o := im.subs[a.Subdomain]; o != nil && o.user != "" {
		im.failAccount(ev, vals, fmt.Sprintf("duplicate subdomain: the row of username %s has it too", o.user))
		return nil
	}
	// Already in the broker?
	if im.dst != nil {
		have, err := im.dst.Account(ctx, a.Username)
		switch {
		case err == nil && have.Subdomain == a.Subdomain:
			ev.Outcome, ev.Detail = Skipped, "already in the broker with this username and subdomain"
			im.report(ev)
			if o := im.subs[a.Subdomain]; o == nil || o.values == 0 {
				// An interrupted import: the account got in, its values not.
				return write(job{r: r, vals: vals})
			}
			for _, v := range vals {
				e := Event{Outcome: Skipped, Username: r.Username, Subdomain: r.Subdomain, Value: v.Value,
					At: time.Unix(v.LastUpdate, 0), Detail: "its account was imported before; the broker's values are kept"}
				if !storage.IsDNS01Value(v.Value) {
					e.Outcome, e.Detail = Failed, badTXT
				}
				im.report(e)
			}
			return nil
		case err == nil:
			im.failAccount(ev, vals, fmt.Sprintf("the broker has this username with another subdomain (%s); remove one of them, then import again", have.Subdomain))
			return nil
		case !errors.Is(err, storage.ErrNotFound):
			return fmt.Errorf("acme-dns import: look up %s in the broker: %w", a.Username, err)
		}
	}
	if o := im.subs[a.Subdomain]; o != nil {
		im.failAccount(ev, vals, "the broker already has another account with this subdomain; remove one of them, then import again")
		return nil
	}
	im.subs[a.Subdomain] = &owner{user: a.Username}
	return write(job{create: &a, ev: ev, r: r, vals: vals})
}

// values sets the TXT values of an imported account, oldest first, at the
// times acme-dns recorded.
func (im *importer) values(ctx context.Context, r Record, sub string, vals []TXTRow) error {
	for _, v := range vals {
		ev := Event{Username: r.Username, Subdomain: r.Subdomain, Value: v.Value, At: time.Unix(v.LastUpdate, 0)}
		if !storage.IsDNS01Value(v.Value) {
			ev.Outcome, ev.Detail = Failed, badTXT
			im.report(ev)
			continue
		}
		if !im.opt.DryRun {
			if _, _, err := im.dst.SetTXT(ctx, sub, v.Value, ev.At, im.opt.Policy); err != nil {
				return fmt.Errorf("acme-dns import: set a TXT value of %s: %w", sub, err)
			}
		}
		ev.Outcome = Imported
		im.report(ev)
	}
	return nil
}

// convert checks a record and turns it into an account; why says what is
// wrong with it.
func convert(r Record) (a storage.Account, why string) {
	if strings.TrimSpace(r.Username) == "" {
		return a, "empty Username"
	}
	u, err := uuid.Parse(strings.TrimSpace(r.Username))
	if err != nil {
		return a, "Username is not a UUID (clients send it as X-Api-User; it could never log in)"
	}
	a.Username = u.String()

	if r.Password == "" {
		return a, "empty Password (no key hash)"
	}
	if !strings.HasPrefix(r.Password, "$2a$") && !strings.HasPrefix(r.Password, "$2b$") && !strings.HasPrefix(r.Password, "$2y$") {
		return a, "Password is not a bcrypt hash"
	}
	if _, err := bcrypt.Cost([]byte(r.Password)); err != nil || len(r.Password) != 60 {
		return a, "Password is not a valid bcrypt hash"
	}
	a.KeyHash = r.Password

	sub := strings.ToLower(strings.TrimSpace(r.Subdomain))
	if sub == "" {
		return a, "empty Subdomain"
	}
	if !storage.IsLabel(sub) {
		return a, "Subdomain is not one DNS label (1-63 letters, digits and hyphens)"
	}
	a.Subdomain = sub

	if r.AllowFromNull || strings.TrimSpace(r.AllowFrom) == "" {
		return a, "empty AllowFrom (acme-dns refuses this account's updates too); set it to '[]' for any source, or to a JSON list of CIDRs, and import again"
	}
	var list []string
	if err := json.Unmarshal([]byte(r.AllowFrom), &list); err != nil {
		return a, fmt.Sprintf("AllowFrom %q is not a JSON list of CIDRs", r.AllowFrom)
	}
	a.AllowFrom = make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		p, err := storage.ParsePrefix(s)
		if err != nil {
			return a, fmt.Sprintf("AllowFrom: %v", err)
		}
		a.AllowFrom = append(a.AllowFrom, p)
	}
	return a, ""
}

const badTXT = "not a DNS-01 value (43 characters of base64url)"

// Every storage engine can be imported into.
var _ Store = storage.Store(nil)
