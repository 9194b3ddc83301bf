// Command dnsprofile runs a broker in this process (broker.Run, exactly what
// `acmebroker serve` runs) with the Go CPU profiler on, until SIGINT or
// SIGTERM, then writes the profile. bench/profile.sh drives it with dnsperf
// so that the profile shows the DNS server under load, not a client.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"syscall"

	"github.com/acmebroker/acmebroker/internal/broker"
	"github.com/acmebroker/acmebroker/internal/config"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dnsprofile:", err)
		os.Exit(1)
	}
}

func run() error {
	cfgPath := flag.String("config", "", "broker config file (TOML)")
	cpu := flag.String("cpuprofile", "cpu.pprof", "where the CPU profile goes")
	mem := flag.String("memprofile", "", "where an allocation profile goes at the end (empty: none)")
	tr := flag.String("trace", "", "where an execution trace goes: started on SIGUSR1, stopped on SIGUSR2 or at the end (empty: none)")
	flag.Parse()
	if *cfgPath == "" {
		return fmt.Errorf("usage: dnsprofile -config FILE [-cpuprofile FILE] [-memprofile FILE] [-trace FILE]")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if *mem != "" {
		runtime.MemProfileRate = 4096
	}
	f, err := os.Create(*cpu)
	if err != nil {
		return err
	}
	defer f.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *tr != "" {
		stopTrace, err := traceOnSignal(*tr)
		if err != nil {
			return err
		}
		defer stopTrace()
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	runErr := broker.Run(ctx, cfg, logger, func(r broker.Ready) {
		fmt.Printf("ready dns %v\n", r.DNS)
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "dnsprofile: cpu profile:", err)
		}
	})
	pprof.StopCPUProfile()
	if *mem != "" {
		m, err := os.Create(*mem)
		if err != nil {
			return err
		}
		defer m.Close()
		if err := pprof.Lookup("allocs").WriteTo(m, 0); err != nil {
			return err
		}
	}
	return runErr
}

// traceOnSignal writes an execution trace to path between SIGUSR1 and
// SIGUSR2 (or the returned stop), so that a trace covers one load run and
// not the start-up. go tool trace reads it.
func traceOnSignal(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				if s == syscall.SIGUSR1 {
					if err := trace.Start(f); err != nil {
						fmt.Fprintln(os.Stderr, "dnsprofile: trace:", err)
					}
				} else {
					trace.Stop()
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
		trace.Stop()
		f.Close()
	}, nil
}
