-- 0006_values: named values and leases the broker keeps for its own use
-- beside the zone (storage/values.go): the API's ACME certificate, its key
-- and account; later DNSSEC keys. A lease lets one holder do a job at a
-- time. Times are Unix nanoseconds given by the caller.
CREATE TABLE kv_values (
    name        TEXT    NOT NULL PRIMARY KEY,
    data        BLOB    NOT NULL,
    modified_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE leases (
    name       TEXT    NOT NULL PRIMARY KEY,
    owner      TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
