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
    /* Annotations: the current version of each (a tombstone once deleted),
     * and the op log every live event comes from (seq = WebSocket resume
     * point). Plugin key/value storage. */
    {2, "CREATE TABLE annotations ("
        "  id TEXT PRIMARY KEY,"
        "  slide TEXT NOT NULL,"
        "  rev INTEGER NOT NULL,"
        "  deleted INTEGER NOT NULL DEFAULT 0,"
        "  x0 REAL NOT NULL, y0 REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL,"
        "  body TEXT NOT NULL"
        ") STRICT;"
        "CREATE INDEX annotations_slide ON annotations (slide, deleted);"
        "CREATE TABLE annotation_events ("
        "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  slide TEXT NOT NULL,"
        "  event TEXT NOT NULL,"
        "  origin TEXT NOT NULL,"
        "  aid TEXT NOT NULL,"
        "  rev INTEGER NOT NULL,"
        "  body TEXT NOT NULL"
        ");"
        "CREATE INDEX annotation_events_slide ON annotation_events (slide, seq);"
        "CREATE TABLE plugin_storage ("
        "  plugin TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
        "  PRIMARY KEY (plugin, key)"
        ") STRICT;"},
};

#define CS_MIGRATION_COUNT ((int)(sizeof(cs_migrations) / sizeof(cs_migrations[0])))

#endif
