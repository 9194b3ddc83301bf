-- 0004_drop_newest: the txt_records_newest index goes.
--
-- It cost every update a second random page (the index entry beside the
-- table row), which with a million accounts is what SQLite writes and
-- fsyncs most. A subdomain holds at most txt_max (<= 100) values, read
-- through the primary key (subdomain, value) and put newest first in Go.
DROP INDEX IF EXISTS txt_records_newest;
