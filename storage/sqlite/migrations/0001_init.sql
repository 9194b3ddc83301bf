-- 0001_init: accounts, their TXT values and the zone serial.
--
-- Times are INTEGER Unix nanoseconds (UTC). Tables are STRICT so a wrong
-- type is an error, not a silent conversion.

-- accounts is keyed by username (the X-Api-User header). WITHOUT ROWID: the
-- table is its primary-key b-tree, so the only other b-tree is the UNIQUE
-- index on subdomain, which also covers the snapshot's walk in subdomain
-- order. allow_from is a JSON array of CIDR strings ('[]' = anywhere), the
-- format acme-dns uses, so its databases import unchanged.
CREATE TABLE accounts (
    username   TEXT    NOT NULL PRIMARY KEY,
    key_hash   TEXT    NOT NULL,
    subdomain  TEXT    NOT NULL UNIQUE,
    allow_from TEXT    NOT NULL DEFAULT '[]',
    created_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- txt_records holds the values kept for each subdomain. The foreign key
-- costs one probe of the accounts.subdomain index per inserted value (noise
-- next to the commit's fsync) and guarantees no value outlives or predates
-- its account; SetTXT maps a violation to storage.ErrNotFound.
CREATE TABLE txt_records (
    subdomain  TEXT    NOT NULL REFERENCES accounts (subdomain) ON UPDATE CASCADE ON DELETE CASCADE,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (subdomain, value)
) STRICT, WITHOUT ROWID;

-- Newest first per subdomain. In a WITHOUT ROWID table the index also holds
-- value, so reads of a subdomain's values never touch the table.
CREATE INDEX txt_records_newest ON txt_records (subdomain, updated_at DESC);

-- zone_meta has exactly one row: the SOA serial of the zone, a uint32.
CREATE TABLE zone_meta (
    id     INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    serial INTEGER NOT NULL CHECK (serial BETWEEN 0 AND 4294967295)
) STRICT;

INSERT INTO zone_meta (id, serial) VALUES (1, 0);
