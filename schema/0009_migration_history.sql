-- Which migration files made this warehouse, by content. GRDB's grdb_migrations records only a
-- migration's name, so a warehouse made by an earlier version of a file (0008_viewer.sql was
-- edited after it landed) looked up to date to later binaries. From here on every migration
-- is recorded with the SHA-256 of the file's bytes when it is applied, and opening a warehouse
-- compares the records with the files in the binary: a difference is reported with the command
-- that repairs it (`rollout db repair`), never used silently. Landed files in schema/ are never
-- edited again (Tests/RolloutKitTests/MigrationHistoryTests.swift pins their hashes); a change
-- is a new migration.
--
-- Before this file runs, the binary brings the warehouse to the shape that 0001-0008 as they
-- stand today make (Sources/RolloutKit/Store/SchemaRepair.swift): tables of an older shape
-- are rebuilt with their rows, missing tables, indexes, views and triggers created, changed
-- ones replaced, derived data (counters, the search index) recounted or reset. Then every
-- applied migration is recorded here with the hash of today's file.
CREATE TABLE schema_migrations (
    identifier TEXT PRIMARY KEY,
    sha256     TEXT NOT NULL,
    applied_at TEXT NOT NULL
) STRICT, WITHOUT ROWID;
