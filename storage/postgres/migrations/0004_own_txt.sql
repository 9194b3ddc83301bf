-- 0004_own_txt: TXT values the broker serves for itself, at own names
-- (storage.IsOwnName, e.g. "_acme-challenge" for the dns-01 challenges of
-- the API's own certificate). No account holds these names (their first
-- label starts with an underscore), so they live apart from txt_records and
-- its foreign key; the columns are the same, so the same code trims them.
CREATE TABLE own_txt (
    subdomain  text   NOT NULL,
    value      text   NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (subdomain, value)
);
