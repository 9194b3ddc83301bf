package broker

import (
	"log/slog"

	"github.com/acmebroker/acmebroker/internal/config"
)

// fdReserve is how many file descriptors are kept from the API: DNS over
// TCP at its limit on every listen address, and room for the database,
// the UDP and listening sockets, the metrics listener and log files.
func fdReserve(c config.DNS) int {
	perListener := c.TCPMaxConnections
	if perListener == 0 { // no limit configured: keep room for a busy day
		perListener = 1024
	}
	return 256 + perListener*len(c.Listen)
}

// apiConnections is the most API connections to hold open at once:
// api.max_connections, lowered when the process's open-files limit
// (raised to its hard limit first) cannot hold that many besides the
// reserve. A flood of idle API connections then runs into the API's own
// limit, never into the process's: DNS over TCP and the database keep the
// descriptors they need (issue 12: 20,000 idle connections used them all).
func apiConnections(c config.Config, logger *slog.Logger) int {
	want := c.API.MaxConnections
	limit, err := raiseOpenFiles()
	if err != nil {
		logger.Warn("cannot read the open-files limit; api.max_connections applies as it is", "err", err)
		return want
	}
	if limit == 0 { // no such limit on this system
		return want
	}
	reserve := fdReserve(c.DNS)
	fit := fitConnections(want, limit, reserve)
	if fit < want {
		logger.Warn("api.max_connections lowered to fit the open-files limit; raise it (LimitNOFILE= in the systemd unit, ulimit -n) to allow more",
			"max_connections", want, "lowered_to", fit, "open_files_limit", limit, "kept_for_dns_and_database", reserve)
	}
	return fit
}

// fitConnections is want, or what an open-files limit of limit holds
// besides reserve; on a tiny limit at least a quarter of it (and 16), so
// the API still works.
func fitConnections(want int, limit uint64, reserve int) int {
	room := int(min(limit, 1<<30)) - reserve
	if room >= want {
		return want
	}
	return min(want, max(room, 16, int(min(limit, 1<<30)/4)))
}
