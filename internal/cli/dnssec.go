package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/internal/broker"
	"github.com/acmebroker/acmebroker/internal/config"
	"github.com/acmebroker/acmebroker/internal/dnssec"
)

const dnssecUsage = `acmebroker dnssec: the zone's DNSSEC keys ([dns.dnssec], docs/dnssec.md).
Works on the database named in the config, also while the broker runs
(every node reads the keys again within dns.dnssec.key_refresh).

Usage:
  acmebroker dnssec ds       [-config FILE]
  acmebroker dnssec status   [-config FILE]
  acmebroker dnssec rollover [-config FILE] [--key csk|ksk|zsk] [--resolver HOST:PORT] [--ds-published] [--no-wait]

Examples:
  # the DS records to give the parent zone (keys are made if there are none yet)
  acmebroker dnssec ds -config /etc/acmebroker/config.toml
  acmebroker dnssec status -config /etc/acmebroker/config.toml
  # roll the signing key, checking the parent's DS through a resolver
  acmebroker dnssec rollover -config /etc/acmebroker/config.toml --resolver 192.0.2.53:53
`

func runDNSSEC(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runGroup(ctx, "dnssec", dnssecUsage, map[string]subcommand{
		"ds":       dnssecDS,
		"status":   dnssecStatus,
		"rollover": dnssecRollover,
	}, args, stdout, stderr)
}

// dnssecEnv is what the dnssec commands work with: the config, the
// database and the zone's key store.
type dnssecEnv struct {
	cfg   config.Config
	store *dnssec.Store
	close func()
}

func openDNSSEC(ctx context.Context, path string, stderr io.Writer) (*dnssecEnv, error) {
	st, err := openAdminStore(ctx, path, false, stderr)
	if err != nil {
		return nil, err
	}
	if !st.cfg.DNS.DNSSEC.Enabled {
		st.Close()
		return nil, badConfig{errors.New("signing is off (dns.dnssec.enabled = false): a DS at the parent of an unsigned zone makes it fail validation everywhere; set enabled = true in [dns.dnssec] and restart the broker first")}
	}
	logger := newLogger(config.Log{Level: "warn", Format: st.cfg.Log.Format}, stderr)
	ks, err := broker.DNSSECStore(st.cfg.DNS, st, logger)
	if err != nil {
		st.Close()
		var ce *broker.ConfigError
		if errors.As(err, &ce) {
			return nil, badConfig{err}
		}
		return nil, err
	}
	return &dnssecEnv{cfg: st.cfg, store: ks, close: func() { st.Close() }}, nil
}

// dnssecCommand parses the flags of a dnssec command that takes only
// -config and opens what it works on.
func dnssecCommand(ctx context.Context, name, synopsis string, args []string, stderr io.Writer) (*dnssecEnv, error) {
	fs := newFlagSet("dnssec "+name, synopsis, "acmebroker dnssec "+name+" -config /etc/acmebroker/config.toml", stderr)
	configPath := fs.String("config", "", "the broker's config file (default: the embedded default, ./acmebroker.db)")
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	return openDNSSEC(ctx, *configPath, stderr)
}

func dnssecDS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	env, err := dnssecCommand(ctx, "ds", "acmebroker dnssec ds: print the DS records (SHA-256) the parent zone should hold, and the DNSKEYs for registrars that ask for those.", args, stderr)
	if err != nil {
		return err
	}
	defer env.close()
	ks, err := env.store.LoadOrCreate(ctx, broker.DNSSECGeneration(env.cfg.DNS.DNSSEC))
	if err != nil {
		return err
	}
	d := env.cfg.DNS.DNSSEC
	fmt.Fprintf(stdout, "; DS records for the parent of %s: add them at the parent zone (or give them to the registrar).\n", ks.Zone)
	for _, k := range ks.ParentKeys() {
		fmt.Fprintln(stdout, k.DSRecord(d.ParentDSTTL).String())
	}
	fmt.Fprintf(stdout, "; The same keys as DNSKEY records, for registrars that ask for the key itself:\n")
	for _, k := range ks.ParentKeys() {
		fmt.Fprintf(stdout, "; %s\n", k.DNSKEY(d.DNSKEYTTL).String())
	}
	if r := ks.Rollover; r != nil {
		fmt.Fprintf(stdout, "; A key rollover is in progress: %s\n", r.Describe())
	}
	return nil
}

func dnssecStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	env, err := dnssecCommand(ctx, "status", "acmebroker dnssec status: show the zone's keys, what each does, and the rollover in progress.", args, stderr)
	if err != nil {
		return err
	}
	defer env.close()
	ks, _, err := env.store.Load(ctx)
	if errors.Is(err, dnssec.ErrNoKeys) {
		fmt.Fprintln(stdout, "No keys yet: the broker makes them when it starts (or run: acmebroker dnssec ds).")
		return nil
	}
	if err != nil {
		return err
	}
	printKeys(stdout, ks)
	return nil
}

func printKeys(w io.Writer, ks *dnssec.Keyset) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tTAG\tALGORITHM\tSTATE\tCREATED")
	for _, k := range ks.Keys {
		var state []string
		if k.Publish {
			state = append(state, "published")
		}
		if k.Sign {
			state = append(state, "signing")
		}
		if k.DS {
			state = append(state, "DS at parent")
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", k.Role, k.Tag(), dnssec.AlgorithmName(k.Algorithm()), strings.Join(state, ", "), k.Created.Local().Format(time.DateTime))
	}
	tw.Flush()
	switch {
	case ks.Rollover != nil:
		fmt.Fprintf(w, "Rollover in progress: %s\n", ks.Rollover.Describe())
	case ks.Last != nil:
		fmt.Fprintf(w, "Last rollover: %s\n", ks.Last.Describe())
	}
}

func dnssecRollover(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dnssec rollover", `acmebroker dnssec rollover: replace a signing key without breaking validation.
A CSK or KSK rollover publishes the new key and signs with both, asks the
parent for the new DS (CDS and CDNSKEY name it), and removes the old key
once every cache has dropped the old DS; a ZSK rollover pre-publishes the
new key. The waits come from the TTLs ([dns.dnssec] and [dns]). Brokers
take the steps as they fall due; this command starts the rollover and
follows it. Run it again to see where it stands.`,
		"acmebroker dnssec rollover -config /etc/acmebroker/config.toml --resolver 192.0.2.53:53", stderr)
	configPath := fs.String("config", "", "the broker's config file (default: the embedded default, ./acmebroker.db)")
	role := fs.String("key", "", "the key to roll: csk (one combined key), ksk or zsk (split keys); default csk, or zsk when split")
	resolver := fs.String("resolver", "", "host:port of a resolver (or the parent's name server) to check that the parent serves the new DS; without it, confirm with --ds-published")
	dsPublished := fs.Bool("ds-published", false, "the parent serves the new key's DS now (you checked)")
	noWait := fs.Bool("no-wait", false, "start the rollover (or take the step asked for) and return; the brokers take the steps")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *resolver != "" {
		if _, _, err := net.SplitHostPort(*resolver); err != nil {
			return usageErr(fs, "--resolver %q: %v", *resolver, err)
		}
	}
	env, err := openDNSSEC(ctx, *configPath, stderr)
	if err != nil {
		return err
	}
	defer env.close()
	ks, _, err := env.store.Load(ctx)
	if errors.Is(err, dnssec.ErrNoKeys) {
		return errors.New("the zone has no keys yet: start the broker with [dns.dnssec] enabled = true first")
	}
	if err != nil {
		return err
	}
	now := time.Now
	switch {
	case *dsPublished:
		if ks, err = env.store.Update(ctx, func(cur *dnssec.Keyset) (*dnssec.Keyset, error) {
			return cur, cur.ConfirmDS(now())
		}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "The parent's DS is noted as changed. %s\n", ks.Rollover.Describe())
	case ks.Rollover == nil:
		r, err := rolloverRole(*role, ks)
		if err != nil {
			return usageErr(fs, "%v", err)
		}
		static, _ := dnsserver.ParseRecords(env.cfg.DNS.Zone, env.cfg.DNS.Records)
		alg := broker.DNSSECGeneration(env.cfg.DNS.DNSSEC).Algorithm
		timing := broker.RolloverTiming(env.cfg.DNS, static)
		if ks, err = env.store.Update(ctx, func(cur *dnssec.Keyset) (*dnssec.Keyset, error) {
			_, err := cur.StartRollover(r, alg, timing, now())
			return cur, err
		}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Rollover started. %s\n", ks.Rollover.Describe())
	case *role != "" && dnssec.Role(*role) != ks.Rollover.Role:
		return fmt.Errorf("a %s rollover is in progress (%s); it must finish before a %s rollover", ks.Rollover.Role, ks.Rollover.Describe(), *role)
	default:
		fmt.Fprintf(stdout, "A rollover is in progress. %s\n", ks.Rollover.Describe())
	}
	if *noWait {
		return nil
	}
	return followRollover(ctx, env, ks.Rollover.New, *resolver, stdout)
}

// rolloverRole is the key to roll: asked for, or the zone's signing key
// (CSK; ZSK when split, the routine one).
func rolloverRole(asked string, ks *dnssec.Keyset) (dnssec.Role, error) {
	switch dnssec.Role(asked) {
	case "":
		if ks.Split() {
			return dnssec.ZSK, nil
		}
		return dnssec.CSK, nil
	case dnssec.CSK:
		if ks.Split() {
			return "", errors.New("--key csk: the zone has a KSK and a ZSK; roll the ksk or the zsk")
		}
		return dnssec.CSK, nil
	case dnssec.KSK, dnssec.ZSK:
		if !ks.Split() {
			return "", fmt.Errorf("--key %s: the zone has one combined key; roll the csk", asked)
		}
		return dnssec.Role(asked), nil
	}
	return "", fmt.Errorf("--key %q: one of csk, ksk, zsk", asked)
}

// followRollover takes the steps of the rollover to the key newID as they
// fall due (brokers take them too; the lease makes each happen once),
// checks the parent's DS through resolver when a step waits for it, and
// returns when the rollover is done, or when it waits for the parent and
// there is no resolver to check with.
func followRollover(ctx context.Context, env *dnssecEnv, newID, resolver string, stdout io.Writer) error {
	poll := min(env.cfg.DNS.DNSSEC.KeyRefresh.Duration, 10*time.Second)
	last := ""
	for {
		ks, err := env.store.Update(ctx, func(cur *dnssec.Keyset) (*dnssec.Keyset, error) {
			if cur.Advance(time.Now()) {
				return cur, nil
			}
			return nil, nil
		})
		if err != nil {
			return err
		}
		r := ks.Rollover
		if r == nil || r.New != newID {
			if ks.Last != nil && ks.Last.New == newID {
				fmt.Fprintf(stdout, "Done: %s.\n", ks.Last.Describe())
				printKeys(stdout, ks)
				return nil
			}
			return errors.New("the rollover was replaced by another")
		}
		if d := r.Describe(); d != last {
			fmt.Fprintf(stdout, "%s %s\n", time.Now().Format(time.TimeOnly), d)
			last = d
		}
		if r.WaitingForDS {
			if resolver == "" {
				fmt.Fprintf(stdout, "\nThe parent must now serve this DS (and no longer the old one):\n")
				for _, k := range ks.ParentKeys() {
					fmt.Fprintln(stdout, k.DSRecord(env.cfg.DNS.DNSSEC.ParentDSTTL).String())
				}
				fmt.Fprintf(stdout, "When it does, run: acmebroker dnssec rollover -config FILE --ds-published\n(or run this command with --resolver HOST:PORT to have it checked).\n")
				return nil
			}
			ok, err := parentHasDS(ctx, resolver, ks)
			if err != nil {
				fmt.Fprintf(stdout, "checking the parent's DS at %s: %v\n", resolver, err)
			} else if ok {
				if _, err := env.store.Update(ctx, func(cur *dnssec.Keyset) (*dnssec.Keyset, error) {
					return cur, cur.ConfirmDS(time.Now())
				}); err != nil {
					return err
				}
				continue
			}
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			fmt.Fprintln(stdout, "Stopped following; the rollover goes on (the brokers take its steps). Run this command again to follow it.")
			return nil
		case <-t.C:
		}
	}
}

// parentHasDS asks resolver for the zone's DS and reports whether it is
// exactly the DS the key set wants at the parent (SHA-256 digests; other
// digest types are ignored).
func parentHasDS(ctx context.Context, resolver string, ks *dnssec.Keyset) (bool, error) {
	q := new(dns.Msg)
	q.SetQuestion(ks.Zone, dns.TypeDS)
	q.SetEdns0(1232, false)
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	r, _, err := c.ExchangeContext(ctx, q, resolver)
	if err != nil {
		return false, err
	}
	if r.Rcode != dns.RcodeSuccess {
		return false, fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	have := map[string]bool{}
	for _, rr := range r.Answer {
		if ds, ok := rr.(*dns.DS); ok && ds.DigestType == dns.SHA256 && strings.EqualFold(ds.Hdr.Name, ks.Zone) {
			have[fmt.Sprintf("%d %d %s", ds.KeyTag, ds.Algorithm, strings.ToUpper(ds.Digest))] = true
		}
	}
	want := map[string]bool{}
	for _, k := range ks.ParentKeys() {
		ds := k.DSRecord(0)
		want[fmt.Sprintf("%d %d %s", ds.KeyTag, ds.Algorithm, strings.ToUpper(ds.Digest))] = true
	}
	if len(have) != len(want) {
		return false, nil
	}
	for k := range want {
		if !have[k] {
			return false, nil
		}
	}
	return true, nil
}
