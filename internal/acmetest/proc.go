package acmetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// process is a program run in its own process group with its output in a
// file, so that stopping it also stops anything it started and its output
// can be shown when a test fails.
type process struct {
	name string
	cmd  *exec.Cmd
	out  string        // path of the file holding stdout and stderr
	done chan struct{} // closed once the process has been waited for
	err  error         // from cmd.Wait; read only after done is closed
}

func startProcess(name, dir, outPath string, env []string, bin string, args ...string) (*process, error) {
	f, err := os.OpenFile(outPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: open output file: %w", name, err)
	}
	// The child holds its own descriptor; ours is not needed after Start.
	defer f.Close()

	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", name, bin, err)
	}
	p := &process{name: name, cmd: cmd, out: outPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the process group, then SIGKILL if it is still there
// after grace, and waits for the process to be reaped.
func (p *process) stop(grace time.Duration) error {
	if done, _ := p.exited(); done {
		return nil
	}
	pgid := p.cmd.Process.Pid // Setpgid: the group id is the leader's pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	t.Reset(5 * time.Second)
	select {
	case <-p.done:
		return fmt.Errorf("%s: did not stop within %s of SIGTERM; killed", p.name, grace)
	case <-t.C:
		return fmt.Errorf("%s: pid %d still running 5s after SIGKILL", p.name, pgid)
	}
}

// tail returns the last lines of the process's output.
func (p *process) tail() string { return tailFile(p.out, 60) }

const noOutput = "(no output)"

func tailFile(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	const maxBytes = 16 << 10
	if len(b) > maxBytes {
		b = b[len(b)-maxBytes:]
	}
	b = bytes.TrimRight(b, "\n")
	all := strings.Split(string(b), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	if len(all) == 1 && all[0] == "" {
		return noOutput
	}
	return strings.Join(all, "\n")
}

// runCommand runs a short-lived helper program and returns its combined
// output.
func runCommand(ctx context.Context, timeout time.Duration, env []string, dir, bin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.WaitDelay = 2 * time.Second
	return cmd.CombinedOutput()
}

// poll calls check every interval until it returns done or an error, ctx is
// done, or timeout has passed. It returns the last "not yet" reason on
// timeout so the failure says what was still wrong.
func poll(ctx context.Context, timeout, interval time.Duration, check func() (done bool, notYet string, err error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	last := "not checked yet"
	for {
		done, notYet, err := check()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		last = notYet
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("not ready after %s: %s", timeout, last)
			}
			return fmt.Errorf("gave up waiting (%w): %s", ctx.Err(), last)
		case <-tick.C:
		}
	}
}
