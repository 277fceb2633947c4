/* core/store: the database behind cs/db.h, on SQLite.
 *
 * Open: WAL, synchronous=FULL (a returned write is durable), foreign keys,
 * a busy timeout; then the embedded migrations, each in one transaction,
 * recorded with an FNV-1a checksum of its SQL so an edited released
 * migration is noticed. */
#include "cs/db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "cs/err.h"

#include "migrations.h"

struct cs_db {
    sqlite3 *h;
    int version;
};

struct cs_db_stmt {
    cs_db *db;
    sqlite3_stmt *s;
};

static int fail(cs_db *db, int code, const char *what)
{
    return cs_error_set(code, "database: %s: %s", what, db && db->h ? sqlite3_errmsg(db->h) : "");
}

static unsigned long long checksum(const char *s)
{
    unsigned long long h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

int cs_db_exec(cs_db *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db->h, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int r = cs_error_set(CS_EIO, "database: %s", msg ? msg : sqlite3_errmsg(db->h));
        sqlite3_free(msg);
        return r;
    }
    return 0;
}

int cs_db_begin(cs_db *db)
{
    return cs_db_exec(db, "BEGIN IMMEDIATE");
}

int cs_db_commit(cs_db *db)
{
    return cs_db_exec(db, "COMMIT");
}

int cs_db_rollback(cs_db *db)
{
    return cs_db_exec(db, "ROLLBACK");
}

static int migrate(cs_db *db)
{
    int r = cs_db_exec(db, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                           " version INTEGER PRIMARY KEY, checksum TEXT NOT NULL,"
                           " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ')))");
    cs_db_stmt *st;
    if (r < 0 || (r = cs_db_prepare(db, &st,
                                    "SELECT version, checksum FROM schema_migrations "
                                    "ORDER BY version")) < 0)
        return r;
    db->version = 0;
    while ((r = cs_db_step(st)) == CS_DB_ROW) {
        int v = (int)cs_db_column_int(st, 0);
        const char *sum = cs_db_column_text(st, 1);
        if (v > CS_MIGRATION_COUNT) {
            cs_db_finalize(st);
            return cs_error_set(CS_EFORMAT,
                                "database schema version %d is newer than this program (%d)", v,
                                CS_MIGRATION_COUNT);
        }
        char want[32];
        snprintf(want, sizeof(want), "%016llx", checksum(cs_migrations[v - 1].sql));
        if (!sum || strcmp(sum, want) != 0) {
            cs_db_finalize(st);
            return cs_error_set(CS_EFORMAT, "database migration %d differs from this program's", v);
        }
        db->version = v;
    }
    cs_db_finalize(st);
    if (r < 0)
        return r;
    for (int i = db->version; i < CS_MIGRATION_COUNT; i++) {
        const cs_migration *m = &cs_migrations[i];
        char sum[32];
        snprintf(sum, sizeof(sum), "%016llx", checksum(m->sql));
        if ((r = cs_db_begin(db)) < 0)
            return r;
        if ((r = cs_db_exec(db, m->sql)) == 0 &&
            (r = cs_db_prepare(db, &st,
                               "INSERT INTO schema_migrations (version, checksum) "
                               "VALUES ($1, $2)")) == 0) {
            cs_db_bind_int(st, 1, m->version);
            cs_db_bind_text(st, 2, sum);
            r = cs_db_step(st);
            cs_db_finalize(st);
        }
        if (r == 0)
            r = cs_db_commit(db);
        if (r < 0) {
            cs_db_rollback(db);
            return r;
        }
        db->version = m->version;
    }
    return 0;
}

int cs_db_open(cs_db **out, const char *path)
{
    cs_db *db = calloc(1, sizeof(*db));
    if (!db)
        return cs_error_set(CS_ENOMEM, "out of memory");
    int r = 0;
    if (sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK)
        r = fail(db, CS_EIO, path);
    if (r == 0) {
        sqlite3_busy_timeout(db->h, 5000);
        r = cs_db_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                           " PRAGMA foreign_keys=ON");
    }
    if (r == 0)
        r = migrate(db);
    if (r < 0) {
        cs_db_close(db);
        return r;
    }
    *out = db;
    return 0;
}

void cs_db_close(cs_db *db)
{
    if (!db)
        return;
    sqlite3_close_v2(db->h);
    free(db);
}

int cs_db_schema_version(cs_db *db)
{
    return db->version;
}

int cs_db_prepare(cs_db *db, cs_db_stmt **out, const char *sql)
{
    cs_db_stmt *st = calloc(1, sizeof(*st));
    if (!st)
        return cs_error_set(CS_ENOMEM, "out of memory");
    st->db = db;
    if (sqlite3_prepare_v2(db->h, sql, -1, &st->s, NULL) != SQLITE_OK) {
        free(st);
        return fail(db, CS_EINVAL, "bad statement");
    }
    *out = st;
    return 0;
}

/* $n binds by name: SQLite numbers parameters by first appearance. */
static int param(cs_db_stmt *st, int n)
{
    char name[16];
    snprintf(name, sizeof(name), "$%d", n);
    int i = sqlite3_bind_parameter_index(st->s, name);
    return i > 0 ? i : cs_error_set(CS_EINVAL, "database: no parameter %s", name);
}

int cs_db_bind_text(cs_db_stmt *st, int n, const char *value)
{
    int i = param(st, n);
    if (i < 0)
        return i;
    int rc = value ? sqlite3_bind_text(st->s, i, value, -1, SQLITE_TRANSIENT)
                   : sqlite3_bind_null(st->s, i);
    return rc == SQLITE_OK ? 0 : fail(st->db, CS_EINVAL, "bind");
}

int cs_db_bind_int(cs_db_stmt *st, int n, int64_t value)
{
    int i = param(st, n);
    if (i < 0)
        return i;
    return sqlite3_bind_int64(st->s, i, value) == SQLITE_OK ? 0 : fail(st->db, CS_EINVAL, "bind");
}

int cs_db_bind_real(cs_db_stmt *st, int n, double value)
{
    int i = param(st, n);
    if (i < 0)
        return i;
    return sqlite3_bind_double(st->s, i, value) == SQLITE_OK ? 0 : fail(st->db, CS_EINVAL, "bind");
}

int cs_db_step(cs_db_stmt *st)
{
    int rc = sqlite3_step(st->s);
    if (rc == SQLITE_ROW)
        return CS_DB_ROW;
    if (rc == SQLITE_DONE)
        return 0;
    return fail(st->db, rc == SQLITE_CONSTRAINT ? CS_EPERM : CS_EIO, "step");
}

const char *cs_db_column_text(cs_db_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st->s, i);
}

int64_t cs_db_column_int(cs_db_stmt *st, int i)
{
    return sqlite3_column_int64(st->s, i);
}

int cs_db_reset(cs_db_stmt *st)
{
    sqlite3_clear_bindings(st->s);
    return sqlite3_reset(st->s) == SQLITE_OK ? 0 : fail(st->db, CS_EIO, "reset");
}

void cs_db_finalize(cs_db_stmt *st)
{
    if (!st)
        return;
    sqlite3_finalize(st->s);
    free(st);
}

int cs_db_audit_append(cs_db *db, const cs_db_audit *rec, int64_t *id)
{
    cs_db_stmt *st;
    int r = cs_db_prepare(db, &st,
                          "INSERT INTO audit (code, event, outcome, user, client, object) "
                          "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id");
    if (r < 0)
        return r;
    cs_db_bind_text(st, 1, rec->code);
    cs_db_bind_text(st, 2, rec->event);
    cs_db_bind_int(st, 3, rec->outcome);
    cs_db_bind_text(st, 4, rec->user ? rec->user : "anonymous");
    cs_db_bind_text(st, 5, rec->client ? rec->client : "local");
    cs_db_bind_text(st, 6, rec->object);
    r = cs_db_step(st);
    if (r == CS_DB_ROW) {
        if (id)
            *id = cs_db_column_int(st, 0);
        r = cs_db_step(st); /* runs to completion: the autocommit ends here */
    } else if (r == 0) {
        r = cs_error_set(CS_EIO, "database: audit insert returned no id");
    }
    cs_db_finalize(st);
    return r;
}
