# Multi-stage build of a static acmebroker binary (cgo for SQLite, linked
# statically) on a minimal non-root image.
#   docker build -t acmebroker .
#   docker run -d --name acmebroker -p 53:53/udp -p 53:53/tcp -p 8080:8080 \
#     -v acmebroker-data:/var/lib/acmebroker -v $PWD/config.toml:/etc/acmebroker/config.toml:ro acmebroker
# In the container's config: [dns] listen = ["0.0.0.0:53"], [api] listen = "0.0.0.0:8080",
# [storage] dsn = "/var/lib/acmebroker/acmebroker.db".
FROM golang:1.26-bookworm AS build
# The same fixed toolchain as CI (.ci/run): go1.26.8's standard library has
# vulnerabilities govulncheck finds on this code's paths. The go command
# fetches it through the module proxy.
ENV GOTOOLCHAIN=go1.27.3
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath \
      -tags 'osusergo netgo sqlite_omit_load_extension' \
      -ldflags '-s -w -linkmode external -extldflags "-static"' \
      -o /out/acmebroker ./cmd/acmebroker \
 && mkdir -p /out/var/lib/acmebroker /out/etc/acmebroker

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/acmebroker /usr/local/bin/acmebroker
COPY --from=build --chown=65532:65532 /out/var/lib/acmebroker /var/lib/acmebroker
COPY config.toml /etc/acmebroker/config.toml
WORKDIR /var/lib/acmebroker
USER 65532:65532
# Port 53 needs CAP_NET_BIND_SERVICE, which Docker grants by default (and
# net.ipv4.ip_unprivileged_port_start=0 is Docker's default since 20.10).
EXPOSE 53/udp 53/tcp 8080/tcp
VOLUME ["/var/lib/acmebroker"]
ENTRYPOINT ["/usr/local/bin/acmebroker"]
CMD ["serve", "-config", "/etc/acmebroker/config.toml"]
