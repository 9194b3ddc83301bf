# bench/lib.sh: what the bench scripts share; sourced, not run.

# broker_binary DIR ENVFILE: puts the acmebroker binary to measure in
# DIR/acmebroker: $ACMEBROKER_BIN when set (an older build, for a
# before/after; noted in ENVFILE), else a build of this tree. Needs die.
broker_binary() {
  if [ -n "${ACMEBROKER_BIN:-}" ]; then
    [ -x "$ACMEBROKER_BIN" ] || die "ACMEBROKER_BIN=$ACMEBROKER_BIN is not an executable"
    cp "$ACMEBROKER_BIN" "$1/acmebroker"
    echo "acmebroker: $ACMEBROKER_BIN (not built from this tree)" >>"$2"
  else
    go build -o "$1/acmebroker" ./cmd/acmebroker || die "go build ./cmd/acmebroker failed"
  fi
}
