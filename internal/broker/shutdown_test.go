package broker_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/acmebroker/acmebroker/internal/broker"
)

// A stop asked for while the broker is still starting (a long load) is not
// a failure: Run returns nil without serving.
func TestStopDuringStartIsClean(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	served := false
	if err := broker.Run(ctx, metricsConfig(t, ""), slog.New(slog.DiscardHandler), func(broker.Ready) { served = true }); err != nil || served {
		t.Fatalf("Run with a stopped context = %v (served %v), want nil without serving", err, served)
	}
}
