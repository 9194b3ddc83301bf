-- 0003_disabled: an admin can disable an account (`acmebroker account
-- disable`); the API then refuses its credentials. 0 = enabled, 1 = disabled.
-- Existing accounts stay enabled.
ALTER TABLE accounts ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1));
