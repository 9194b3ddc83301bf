package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/acmebroker/acmebroker/internal/syncbuf"
	"github.com/acmebroker/acmebroker/internal/testenv"
)

// Server is a private PostgreSQL server on loopback that a test may stop
// and start again (the shared one must never be restarted: other tests use
// it). Its data lives in a temporary directory removed when the test ends.
type Server struct {
	t       testing.TB
	bin     string // directory of initdb and postgres
	dir     string // data directory
	sock    string // Unix socket directory
	port    int
	cred    *syscall.Credential // run as this user (postgres refuses root)
	uid     int
	gid     int
	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	log     *syncbuf.Buffer
	running bool
}

// StartServer initialises and starts a private server, or skips t when
// ACMEBROKER_TEST_POSTGRES is unset (the same switch as the other
// PostgreSQL tests) or no PostgreSQL server binaries are installed. The
// server is stopped when t ends.
func StartServer(t testing.TB) *Server {
	t.Helper()
	BaseDSN(t)
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		testenv.Skip(t, "no /usr/lib/postgresql/*/bin/initdb: install the PostgreSQL server package (.ci/run does)")
	}
	sort.Slice(bins, func(i, j int) bool { return version(bins[i]) < version(bins[j]) })
	s := &Server{t: t, bin: filepath.Dir(bins[len(bins)-1]), log: &syncbuf.Buffer{}}

	// Not t.TempDir(): its parents are private to root, and postgres must
	// run as another user.
	root, err := os.MkdirTemp("", "acmebroker-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	s.dir = filepath.Join(root, "data")
	s.sock = filepath.Join(root, "sock")
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			testenv.Skip(t, "running as root and there is no postgres user to run PostgreSQL as")
		}
		s.uid, _ = strconv.Atoi(u.Uid)
		s.gid, _ = strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(s.uid), Gid: uint32(s.gid)}
	}
	for _, d := range []string{root, s.sock} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if s.cred != nil {
			if err := os.Chown(d, s.uid, s.gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	initdb := exec.Command(filepath.Join(s.bin, "initdb"), "-D", s.dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

func version(initdb string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return v
}

// DSN of the server's postgres database.
func (s *Server) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

// Start starts the server and waits (at most 30s) until it accepts
// connections.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return
	}
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", s.dir, "-k", s.sock,
		"-p", strconv.Itoa(s.port), "-h", "127.0.0.1",
		"-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=50", "-c", "shared_buffers=16MB")
	// Its own process group, so Stop can kill the postmaster and its
	// backends at once, as a crash would.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start postgres: %v", err)
	}
	s.cmd, s.done, s.running = cmd, make(chan struct{}), true
	done := s.done
	go func() { cmd.Wait(); close(done) }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := pgx.Connect(ctx, s.DSN())
		if err == nil {
			c.Close(ctx)
			cancel()
			return
		}
		cancel()
		select {
		case <-done:
			s.t.Fatalf("postgres exited at start: %s", s.log.String())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("postgres did not accept connections within 30s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server and all its processes at once (SIGKILL to its
// process group): clients see their connections drop, as in a crash. The
// next Start runs crash recovery.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
	s.running = false
	// Backends may outlive the postmaster by a moment; wait (bounded)
	// until the port is free so Start can bind it again.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), 100*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
}
