/* Unit tests of core/store: migrations, WAL, parameters, the append-only
 * audit table, refusing newer or edited schemas and non-databases. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
// clang-format on
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cs/db.h"
#include "cs/err.h"

/* The migrations core/store/migrations.h embeds. */
/* The newest migration embedded in the binary. */
#include "../../core/store/migrations.h"
#define CS_SCHEMA_LATEST                                                                           \
    (cs_migrations[sizeof(cs_migrations) / sizeof(cs_migrations[0]) - 1].version)

static char path[64];

static int setup(void **state)
{
    snprintf(path, sizeof(path), "/tmp/cs-db-test-XXXXXX");
    int fd = mkstemp(path);
    close(fd);
    unlink(path); /* let SQLite create it */
    return 0;
}

static int teardown(void **state)
{
    char p[80];
    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
    return 0;
}

static int64_t count(cs_db *db, const char *sql)
{
    cs_db_stmt *st;
    assert_int_equal(cs_db_prepare(db, &st, sql), 0);
    assert_int_equal(cs_db_step(st), CS_DB_ROW);
    int64_t n = cs_db_column_int(st, 0);
    cs_db_finalize(st);
    return n;
}

static void db__open_migrates_once_in_wal(void **state)
{
    cs_db *db;
    assert_int_equal(cs_db_open(&db, path), 0);
    assert_int_equal(cs_db_schema_version(db), CS_SCHEMA_LATEST);
    cs_db_stmt *st;
    assert_int_equal(cs_db_prepare(db, &st, "PRAGMA journal_mode"), 0);
    assert_int_equal(cs_db_step(st), CS_DB_ROW);
    assert_string_equal(cs_db_column_text(st, 0), "wal");
    cs_db_finalize(st);
    cs_db_close(db);
    assert_int_equal(cs_db_open(&db, path), 0); /* again: nothing to apply */
    assert_int_equal(cs_db_schema_version(db), CS_SCHEMA_LATEST);
    assert_int_equal(count(db, "SELECT count(*) FROM schema_migrations"), CS_SCHEMA_LATEST);
    cs_db_close(db);
}

static void db__parameters_and_rows(void **state)
{
    cs_db *db;
    assert_int_equal(cs_db_open(&db, path), 0);
    assert_int_equal(cs_db_exec(db, "CREATE TABLE t (a TEXT, b INTEGER)"), 0);
    cs_db_stmt *st;
    assert_int_equal(cs_db_prepare(db, &st, "INSERT INTO t VALUES ($2, $1)"), 0);
    for (int i = 0; i < 3; i++) {
        char v[8];
        snprintf(v, sizeof(v), "r%d", i);
        assert_int_equal(cs_db_bind_int(st, 1, i * 10), 0);
        assert_int_equal(cs_db_bind_text(st, 2, v), 0);
        assert_int_equal(cs_db_step(st), 0);
        assert_int_equal(cs_db_reset(st), 0);
    }
    assert_int_equal(cs_db_bind_int(st, 3, 1), CS_EINVAL); /* no $3 */
    cs_db_finalize(st);
    assert_int_equal(cs_db_prepare(db, &st, "SELECT a, b FROM t WHERE b >= $1 ORDER BY b"), 0);
    cs_db_bind_int(st, 1, 10);
    assert_int_equal(cs_db_step(st), CS_DB_ROW);
    assert_string_equal(cs_db_column_text(st, 0), "r1");
    assert_int_equal(cs_db_column_int(st, 1), 10);
    assert_int_equal(cs_db_step(st), CS_DB_ROW);
    assert_int_equal(cs_db_step(st), 0);
    cs_db_finalize(st);
    assert_int_equal(cs_db_prepare(db, &st, "SELEKT nonsense"), CS_EINVAL);
    cs_db_close(db);
}

static void db__audit_is_append_only_and_durable(void **state)
{
    cs_db *db, *other;
    assert_int_equal(cs_db_open(&db, path), 0);
    cs_db_audit rec = {"110103", "slide accessed", 0, "token#1234", "127.0.0.1", "CMU-1"};
    int64_t id1, id2;
    assert_int_equal(cs_db_audit_append(db, &rec, &id1), 0);
    rec.code = "110114";
    rec.outcome = 4;
    assert_int_equal(cs_db_audit_append(db, &rec, &id2), 0);
    assert_true(id2 > id1);
    /* committed before return: another connection sees both */
    assert_int_equal(cs_db_open(&other, path), 0);
    assert_int_equal(count(other, "SELECT count(*) FROM audit"), 2);
    cs_db_close(other);
    assert_int_not_equal(cs_db_exec(db, "UPDATE audit SET outcome = 0"), 0);
    assert_non_null(strstr(cs_error_last(), "append-only"));
    assert_int_not_equal(cs_db_exec(db, "DELETE FROM audit"), 0);
    assert_int_equal(count(db, "SELECT count(*) FROM audit WHERE outcome = 4"), 1);
    rec.outcome = 5; /* not an ATNA outcome */
    assert_int_equal(cs_db_audit_append(db, &rec, NULL), CS_EPERM);
    cs_db_close(db);
}

static void db__newer_or_edited_schema_refused(void **state)
{
    cs_db *db;
    assert_int_equal(cs_db_open(&db, path), 0);
    assert_int_equal(cs_db_exec(db, "UPDATE schema_migrations SET checksum = 'x'"), 0);
    cs_db_close(db);
    assert_int_equal(cs_db_open(&db, path), CS_EFORMAT);
    assert_non_null(strstr(cs_error_last(), "differs"));
    teardown(state);
    assert_int_equal(cs_db_open(&db, path), 0);
    assert_int_equal(cs_db_exec(db, "INSERT INTO schema_migrations VALUES (99, 'y', 'now')"), 0);
    cs_db_close(db);
    assert_int_equal(cs_db_open(&db, path), CS_EFORMAT);
    assert_non_null(strstr(cs_error_last(), "newer"));
}

static void db__not_a_database(void **state)
{
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < 4096; i++)
        fputc((i * 7) & 0xff, f);
    fclose(f);
    cs_db *db;
    assert_int_equal(cs_db_open(&db, path), CS_EIO);
    assert_true(strlen(cs_error_last()) > 0);
    assert_int_equal(cs_db_open(&db, "/nonexistent-dir/x.db"), CS_EIO);
    cs_db_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(db__open_migrates_once_in_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(db__parameters_and_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(db__audit_is_append_only_and_durable, setup, teardown),
        cmocka_unit_test_setup_teardown(db__newer_or_edited_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(db__not_a_database, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
