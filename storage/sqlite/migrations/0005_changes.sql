-- 0005_changes: the subdomains whose DNS answers an admin command changed
-- (account delete, prune, create; import) while a broker may be serving from
-- the same file. The broker polls this table and re-reads each subdomain, so
-- its in-memory records follow without a restart; it deletes the rows it has
-- applied. One row per subdomain: a newer change replaces the older one with
-- a higher seq (AUTOINCREMENT never reuses a seq), so the table stays no
-- bigger than the number of subdomains changed since the broker last looked.
CREATE TABLE changes (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    subdomain TEXT NOT NULL UNIQUE
);
