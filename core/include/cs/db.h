/* The store: one small interface over the database (SQLite now; PostgreSQL
 * for multi-site deployments later, behind the same calls).
 *
 * cs_db_open() applies the schema migrations embedded in the binary,
 * forward-only, each in its own transaction, recorded in
 * schema_migrations(version, checksum, applied_at); a database newer than
 * the binary is refused. SQLite runs in WAL mode with synchronous=FULL, so a
 * write that returned 0 is on disk: acknowledge only after that.
 *
 * Statements use PostgreSQL-style $1..$n parameters (SQLite accepts them).
 * The audit table is append-only: the schema refuses UPDATE and DELETE.
 *
 * Thread-safety: a cs_db and its statements are used by one thread at a
 * time; open one handle per thread (WAL lets readers and a writer overlap). */
#ifndef CS_DB_H
#define CS_DB_H

#include <stdint.h>

#include "cs/common.h"

typedef struct cs_db cs_db;
typedef struct cs_db_stmt cs_db_stmt;

/** Open (creating if needed) the database file and migrate it.
 *  @return 0, CS_EIO (cannot open, not a database, or corrupt),
 *  CS_EFORMAT (the schema is newer than this binary). */
CS_API int cs_db_open(cs_db **out, const char *path);
CS_API void cs_db_close(cs_db *db);

/** The latest migration applied. */
CS_API int cs_db_schema_version(cs_db *db);

/** Run SQL without parameters (several statements allowed). */
CS_API int cs_db_exec(cs_db *db, const char *sql);
CS_API int cs_db_begin(cs_db *db);
CS_API int cs_db_commit(cs_db *db);
CS_API int cs_db_rollback(cs_db *db);

CS_API int cs_db_prepare(cs_db *db, cs_db_stmt **out, const char *sql);
/** Bind parameter $@p n (1-based). The text is copied. */
CS_API int cs_db_bind_text(cs_db_stmt *st, int n, const char *value);
CS_API int cs_db_bind_int(cs_db_stmt *st, int n, int64_t value);
CS_API int cs_db_bind_real(cs_db_stmt *st, int n, double value);
/** @return CS_DB_ROW while rows come, 0 when done, or an error code. */
CS_API int cs_db_step(cs_db_stmt *st);
/** Column @p i of the current row; text is borrowed until the next step. */
CS_API const char *cs_db_column_text(cs_db_stmt *st, int i);
CS_API int64_t cs_db_column_int(cs_db_stmt *st, int i);
CS_API int cs_db_reset(cs_db_stmt *st);
CS_API void cs_db_finalize(cs_db_stmt *st);

#define CS_DB_ROW 1

/** One audit record (DICOM/IHE ATNA event code, e.g. "110103"). */
typedef struct {
    const char *code;   /**< ATNA event code */
    const char *event;  /**< short text */
    int outcome;        /**< 0 success, 4 minor failure, 8 serious, 12 major */
    const char *user;   /**< who (never a secret) */
    const char *client; /**< network address */
    const char *object; /**< what was touched (slide id, study UID...) */
} cs_db_audit;

/** Append an audit record, committed before return; its row id in @p id
 *  when not NULL. */
CS_API int cs_db_audit_append(cs_db *db, const cs_db_audit *rec, int64_t *id);

#endif
