-- 0001_init: accounts, their TXT values, the zone serial and registration
-- tokens.
--
-- Portable SQL: plain tables, text/bigint/boolean columns, B-tree primary
-- and unique keys, one foreign key. It runs unchanged on PostgreSQL and on
-- PostgreSQL-compatible distributed databases (CockroachDB, YugabyteDB).
-- Times are bigint Unix nanoseconds (UTC), as in the SQLite engine: no time
-- zone settings to get wrong, and full precision. Columns use the database's
-- default collation (CockroachDB has no column collation "C"); the engine
-- orders values in Go and lists accounts with an expression COLLATE "C".

-- accounts is keyed by username (the X-Api-User header). allow_from is a
-- JSON array of CIDR strings ('[]' = anywhere), the format acme-dns uses.
CREATE TABLE accounts (
    username   text    NOT NULL PRIMARY KEY,
    key_hash   text    NOT NULL,
    subdomain  text    NOT NULL UNIQUE,
    allow_from text    NOT NULL DEFAULT '[]',
    created_at bigint  NOT NULL,
    disabled   boolean NOT NULL DEFAULT false
);

-- txt_records holds the values kept for each subdomain. The primary key
-- (subdomain, value) also serves every read of one subdomain's values.
CREATE TABLE txt_records (
    subdomain  text   NOT NULL REFERENCES accounts (subdomain) ON DELETE CASCADE,
    value      text   NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (subdomain, value)
);

-- zone_meta has exactly one row: the SOA serial of the zone, a uint32. Every
-- change of the zone updates it in its own transaction, so the row lock
-- orders changes: serial order is commit order, on every node.
CREATE TABLE zone_meta (
    id     integer NOT NULL PRIMARY KEY CHECK (id = 1),
    serial bigint  NOT NULL CHECK (serial BETWEEN 0 AND 4294967295)
);

INSERT INTO zone_meta (id, serial) VALUES (1, 0);

-- tokens: registration tokens (registration = "token"). secret_hash is a
-- hash of the secret part only. Times are Unix nanoseconds, 0 = not set.
CREATE TABLE tokens (
    id           text    NOT NULL PRIMARY KEY,
    secret_hash  text    NOT NULL,
    comment      text    NOT NULL DEFAULT '',
    max_accounts integer NOT NULL DEFAULT 0 CHECK (max_accounts >= 0),
    accounts     integer NOT NULL DEFAULT 0 CHECK (accounts >= 0),
    allow_from   text    NOT NULL DEFAULT '[]',
    expires_at   bigint  NOT NULL DEFAULT 0,
    created_at   bigint  NOT NULL,
    revoked_at   bigint  NOT NULL DEFAULT 0
);
