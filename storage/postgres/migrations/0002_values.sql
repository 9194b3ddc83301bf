-- 0002_values: named values and leases the broker keeps for its own use
-- beside the zone (storage/values.go): the API's ACME certificate, its key
-- and account; later DNSSEC keys. A lease lets one node of several do a job
-- (renew the certificate) while the others wait. Times are bigint Unix
-- nanoseconds given by the caller, as everywhere in this schema. The tables
-- are tiny (a handful of rows); a prefix listing scans them.
CREATE TABLE kv_values (
    name        text   NOT NULL PRIMARY KEY,
    data        bytea  NOT NULL,
    modified_at bigint NOT NULL
);

CREATE TABLE leases (
    name       text   NOT NULL PRIMARY KEY,
    owner      text   NOT NULL,
    expires_at bigint NOT NULL
);
