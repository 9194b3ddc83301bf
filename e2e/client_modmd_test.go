package e2e_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/internal/acmetest"
	"github.com/acmebroker/acmebroker/internal/testenv"
)

const (
	apacheBin  = "/usr/sbin/apache2"
	apacheMods = "/usr/lib/apache2/modules"
)

// TestApacheModMDThroughBroker: Debian's Apache with mod_md gets
// example.test + *.example.test from Pebble, its MDChallengeDns01 program
// being `acmebroker client hook mod_md`, then serves the certificate after
// a graceful restart. Apache runs on a loopback high port with its own
// ServerRoot in a temporary directory and is stopped at the end.
func TestApacheModMDThroughBroker(t *testing.T) {
	t.Parallel()
	for _, p := range []string{apacheBin, filepath.Join(apacheMods, "mod_md.so"), filepath.Join(apacheMods, "mod_ssl.so")} {
		if _, err := os.Stat(p); err != nil {
			testenv.Skip(t, p+" is missing: install Debian's Apache with apt-get install -y apache2-bin (mod_md ships in it)")
		}
	}
	e := startExistingClientEnv(t, acmetest.Options{})

	// Apache's children run as www-data when the test runs as root: what
	// they read and run must be theirs (or world-readable) and reachable.
	root := worldDir(t)
	run := func(elem ...string) string { return filepath.Join(append([]string{root}, elem...)...) }
	for _, d := range []string{"run", "state", "md", "logs"} {
		if err := os.Mkdir(run(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self := run("acmebroker")
	copyFile(t, e.self, self, 0o755)
	copyFile(t, e.env.CARootPEM, run("pebble-ca.pem"), 0o644)
	copyFile(t, filepath.Join(e.state, "accounts.json"), run("state", "accounts.json"), 0o600)
	userLine := ""
	if os.Geteuid() == 0 {
		u, err := user.Lookup("www-data")
		if err != nil {
			testenv.Skip(t, "running as root, Apache needs an unprivileged user for its children: www-data is missing")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, p := range []string{run("state"), run("state", "accounts.json"), run("logs")} {
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		userLine = "User www-data\nGroup www-data\n"
	}

	port := acmetest.FreePort(t)
	// mod_md takes the rest of the directive's line as it is (quotes
	// included), appends "setup NAME TOKEN" (or "teardown NAME") and
	// splits it at spaces: so no quotes around it; the flags come first.
	hookCmd := strings.Join([]string{self, "client", "hook", "mod_md", "--state-dir", run("state"),
		"--resolver", e.env.ResolverAddr, "--nameserver", e.brokerNS, "--propagation-timeout", "30s"}, " ")
	conf := fmt.Sprintf(`ServerRoot %[1]q
DefaultRuntimeDir %[2]q
PidFile %[3]q
Mutex file:%[2]s default
ErrorLog %[4]q
LogLevel warn md:debug ssl:warn
%[5]sListen 127.0.0.1:%[6]d
ServerName localhost
LoadModule mpm_event_module %[7]s/mod_mpm_event.so
LoadModule authz_core_module %[7]s/mod_authz_core.so
LoadModule ssl_module %[7]s/mod_ssl.so
LoadModule md_module %[7]s/mod_md.so

MDStoreDir %[8]q
MDCertificateAuthority %[9]s
MDCACertificateFile %[10]q
MDCertificateAgreement accepted
MDContactEmail ops@example.test
MDCAChallenges dns-01
MDChallengeDns01 %[11]s
MDRetryDelay 2s
MDomain example.test *.example.test

<VirtualHost 127.0.0.1:%[6]d>
    ServerName example.test
    ServerAlias *.example.test
    SSLEngine on
</VirtualHost>
`, root, run("run"), run("run", "httpd.pid"), run("logs", "error.log"), userLine, port, apacheMods,
		run("md"), e.env.CAURL, run("pebble-ca.pem"), hookCmd)
	confPath := run("httpd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(cleanEnv(), asCLIEnv+"=1")
	if out, err := exec.CommandContext(t.Context(), apacheBin, "-t", "-f", confPath).CombinedOutput(); err != nil {
		t.Fatalf("apache2 -t: %v\n%s", err, out)
	}

	start := time.Now()
	httpd := startApache(t, env, confPath, run("logs", "error.log"))
	// mod_md obtains the certificate in the background (its watchdog) and
	// stages it for the next graceful restart.
	staged := filepath.Join(run("md"), "staging", "example.test", "pubcert.pem")
	waitFile(t, staged, 2*time.Minute, run("logs", "error.log"))
	t.Logf("mod_md staged the certificate %s after Apache started", time.Since(start).Round(time.Millisecond))
	if err := httpd.Process.Signal(syscall.SIGUSR1); err != nil { // graceful restart
		t.Fatal(err)
	}
	roots := e.env.IssuerRoot(t)
	var leaf *x509.Certificate
	var last error
	for deadline := time.Now().Add(30 * time.Second); leaf == nil; time.Sleep(100 * time.Millisecond) { // polling with a deadline
		if time.Now().After(deadline) {
			t.Fatalf("after the graceful restart Apache does not serve the certificate: %v\nerror.log (tail):\n%s", last, tail(run("logs", "error.log")))
		}
		leaf, last = handshake(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), "www.example.test", roots)
	}
	if !sameSet(leaf.DNSNames, []string{"example.test", "*.example.test"}) {
		t.Fatalf("Apache serves a certificate for %v", leaf.DNSNames)
	}
	t.Logf("Apache serves the wildcard %s after it started", time.Since(start).Round(time.Millisecond))
}

// worldDir is a temporary directory Apache's unprivileged children can
// reach (t.TempDir's parent is private to the test's user).
func worldDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "acmebroker-apache-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func copyFile(t *testing.T, from, to string, mode fs.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(to, mode); err != nil { // whatever the umask
		t.Fatal(err)
	}
}

// startApache runs Apache in the foreground until the test ends; its
// children (and the hooks they run) are in its process group.
func startApache(t *testing.T, env []string, confPath, errorLog string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(apacheBin, "-f", confPath, "-D", "FOREGROUND")
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // Apache stops its children
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			t.Errorf("Apache did not stop within 10 s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("apache2 output:\n%s\nerror.log (tail):\n%s", out.String(), tail(errorLog))
		}
	})
	return cmd
}

// waitFile polls until path exists, failing with the log's tail.
func waitFile(t *testing.T, path string, within time.Duration, log string) {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) { // polling with a deadline
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %s\nerror.log (tail):\n%s", path, within, tail(log))
		}
	}
}

func handshake(addr, serverName string, roots *x509.CertPool) (*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	d := &tls.Dialer{Config: &tls.Config{ServerName: serverName, RootCAs: roots}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, errors.New("no certificate")
	}
	return certs[0], nil
}

func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}
