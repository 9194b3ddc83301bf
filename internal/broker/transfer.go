package broker

import (
	"fmt"
	"time"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/internal/config"
	"github.com/acmebroker/acmebroker/internal/records"
	"github.com/acmebroker/acmebroker/storage"
)

// setupTransfer enables zone transfers and NOTIFY as [dns.transfer] says.
// It returns a function that starts the notifier and returns its stop
// (which waits for it); both are no-ops when nothing is to be notified.
func setupTransfer(c config.Transfer, idx *records.Index, h *dnsserver.Handler, srv *dnsserver.Server, quiesce func(time.Duration), obs dnsserver.TransferObserver) (func() func(), error) {
	keys := make([]dnsserver.TSIGKey, len(c.Keys))
	byName := map[string]*dnsserver.TSIGKey{}
	for i, k := range c.Keys {
		keys[i] = dnsserver.TSIGKey{Name: k.Name, Algorithm: k.Algorithm, Secret: k.Secret}
		byName[k.Name] = &keys[i]
	}
	srv.SetTSIG(dnsserver.TSIGSecrets(keys))
	if len(c.AllowFrom) > 0 || len(c.Notify) > 0 {
		idx.EnableJournal(c.JournalSize())
	}
	if len(c.AllowFrom) > 0 {
		if err := h.EnableTransfer(dnsserver.TransferConfig{
			AllowFrom: storage.ParsePrefixes(c.AllowFrom), Keys: keys, RequireTSIG: c.TSIGRequired(), Quiesce: quiesce, Observer: obs,
		}); err != nil {
			return nil, &ConfigError{fmt.Errorf("dns.transfer: %w", err)}
		}
	}
	if len(c.Notify) == 0 {
		return func() func() { return func() {} }, nil
	}
	var targets []dnsserver.NotifyTarget
	for _, t := range c.NotifyTargets() {
		targets = append(targets, dnsserver.NotifyTarget{Addr: t.Addr, Key: byName[t.Key]})
	}
	n, err := h.NewNotifier(dnsserver.NotifyConfig{Targets: targets, Observer: obs})
	if err != nil {
		return nil, &ConfigError{fmt.Errorf("dns.transfer.notify: %w", err)}
	}
	return func() func() { return background(n.Run) }, nil
}

// transferObserver is where transfer and NOTIFY outcomes are counted (nil
// when metrics are off).
func (in *instruments) transferObserver() dnsserver.TransferObserver {
	if in == nil {
		return nil
	}
	return in.m
}
