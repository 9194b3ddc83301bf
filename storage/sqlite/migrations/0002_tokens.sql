-- 0002_tokens: registration tokens (registration = "token").
--
-- secret_hash is a hash of the secret part only; the ID is public. Times are
-- Unix nanoseconds, 0 = not set (never expires, not revoked).
CREATE TABLE tokens (
    id           TEXT    NOT NULL PRIMARY KEY,
    secret_hash  TEXT    NOT NULL,
    comment      TEXT    NOT NULL DEFAULT '',
    max_accounts INTEGER NOT NULL DEFAULT 0 CHECK (max_accounts >= 0),
    accounts     INTEGER NOT NULL DEFAULT 0 CHECK (accounts >= 0),
    allow_from   TEXT    NOT NULL DEFAULT '[]',
    expires_at   INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;
