/* Private to core/store: the schema migrations embedded in the binary.
 * Append only: a released migration never changes (its checksum is kept in
 * the database and checked). */
#ifndef CS_MIGRATIONS_H
#define CS_MIGRATIONS_H

typedef struct {
    int version;
    const char *sql;
} cs_migration;

static const cs_migration cs_migrations[] = {
    {1, "CREATE TABLE audit ("
        "  id INTEGER PRIMARY KEY,"
        "  at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),"
        "  code TEXT NOT NULL,"
        "  event TEXT NOT NULL,"
        "  outcome INTEGER NOT NULL CHECK (outcome IN (0, 4, 8, 12)),"
        "  user TEXT NOT NULL,"
        "  client TEXT NOT NULL,"
        "  object TEXT"
        ") STRICT;"
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
        "  BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;"
        "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
        "  BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;"},
};

#define CS_MIGRATION_COUNT ((int)(sizeof(cs_migrations) / sizeof(cs_migrations[0])))

#endif
