-- 0007_persist: dns-persist-01 records (draft-ietf-acme-dns-persist), served
-- as TXT at the account's subdomain beside its challenge values: at most
-- storage.MaxPersistRecords per account, one per CA (issuer-domain-name).
--
-- policy is '' or 'wildcard'; persist_until is Unix seconds, 0 = no end;
-- set_at is Unix nanoseconds. The foreign key deletes them with the account,
-- and the primary key (subdomain, issuer) serves every read of one
-- account's records and that cascade. Few accounts have any: the snapshot
-- reads this table in one pass beside the accounts.
CREATE TABLE persist_records (
    subdomain     TEXT    NOT NULL REFERENCES accounts (subdomain) ON UPDATE CASCADE ON DELETE CASCADE,
    issuer        TEXT    NOT NULL,
    account_uri   TEXT    NOT NULL,
    policy        TEXT    NOT NULL DEFAULT '' CHECK (policy IN ('', 'wildcard')),
    persist_until INTEGER NOT NULL DEFAULT 0 CHECK (persist_until >= 0),
    set_at        INTEGER NOT NULL,
    PRIMARY KEY (subdomain, issuer)
) STRICT, WITHOUT ROWID;
