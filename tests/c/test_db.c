/* test_db.c - core/db.c: settings, the statement cache, errors naming SQL. */
#include "db.h"
#include "err.h"
#include "t.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static long long one_int(orch_db *db, const char *sql)
{
    sqlite3_stmt *st;
    int slot;
    long long v = -1;
    if (orch_db_prepare(db, sql, strlen(sql), &st, &slot, NULL) < 0)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    orch_db_release(db, st, slot);
    return v;
}

int main(void)
{
    char dir[] = "/tmp/orch-test-db.XXXXXX";
    char path[256], cmd[300];
    orch_db *db = NULL, *ro = NULL;
    sqlite3_stmt *a, *b, *c;
    int sa, sb, sc, src, i;
    size_t base;
    const char *ins = "INSERT INTO t VALUES (?)";

    T_CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/t.db", dir);

    /* read-only open of a missing file fails without creating it */
    T_EQ_INT(orch_db_open(&ro, path, ORCH_DB_READONLY, &src), -ENOENT);
    T_CHECK(ro == NULL);
    T_CHECK(access(path, F_OK) != 0);

    T_EQ_INT(orch_db_open(&db, path, 0, NULL), 0);
    T_EQ_INT(orch_db_exec(db, "CREATE TABLE t (v INTEGER)", NULL), 0);
    T_EQ_INT(one_int(db, "PRAGMA foreign_keys"), 1);
    T_EQ_INT(one_int(db, "PRAGMA synchronous"), 1);
    T_EQ_INT(one_int(db, "PRAGMA busy_timeout"), 5000);

    /* the same text comes back from the cache, reset and unbound */
    base = orch_db_cached(db);
    for (i = 0; i < 10; i++) {
        T_EQ_INT(orch_db_prepare(db, ins, strlen(ins), &a, &sa, NULL), 0);
        T_CHECK(sa >= 0);
        sqlite3_bind_int(a, 1, i);
        T_EQ_INT(sqlite3_step(a), SQLITE_DONE);
        orch_db_release(db, a, sa);
    }
    T_EQ_INT(one_int(db, "SELECT count(*) FROM t"), 10);
    T_EQ_INT(orch_db_cached(db), base + 2);

    /* a text in use gets a private statement, finalized on release */
    T_EQ_INT(orch_db_prepare(db, ins, strlen(ins), &a, &sa, NULL), 0);
    T_EQ_INT(orch_db_prepare(db, ins, strlen(ins), &b, &sb, NULL), 0);
    T_CHECK(a != b);
    T_EQ_INT(sb, -1);
    orch_db_release(db, b, sb);
    orch_db_release(db, a, sa);
    T_EQ_INT(orch_db_prepare(db, ins, strlen(ins), &b, &sb, NULL), 0);
    T_CHECK(a == b);
    orch_db_release(db, b, sb);

    /* errors name the SQL and SQLite's code */
    T_EQ_INT(orch_db_prepare(db, "SELECT * FROM nope", 18, &c, &sc, &src), -EIO);
    T_EQ_INT(src, SQLITE_ERROR);
    T_CHECK(strstr(orch_err_msg(), "no such table: nope") != NULL);
    T_CHECK(strstr(orch_err_msg(), "in: SELECT * FROM nope") != NULL);
    T_CHECK(strstr(orch_err_msg(), "[SQLITE_ERROR]") != NULL);
    T_EQ_INT(orch_db_prepare(db, "SELECT 1; SELECT 2", 18, &c, &sc, NULL), -EINVAL);
    T_CHECK(strstr(orch_err_msg(), "more than one statement") != NULL);
    T_EQ_INT(orch_db_prepare(db, "SELECT 1;  \n", 12, &c, &sc, NULL), 0);
    orch_db_release(db, c, sc);
    T_EQ_INT(orch_db_exec(db, "INSERT INTO t VALUES (1); BOGUS", NULL), -EIO);
    T_CHECK(strstr(orch_err_msg(), "BOGUS") != NULL);
    T_EQ_STR(orch_db_code_name(SQLITE_CONSTRAINT_UNIQUE), "SQLITE_CONSTRAINT");

    /* a reader sees committed rows while the writer holds a transaction */
    T_EQ_INT(orch_db_open(&ro, path, ORCH_DB_READONLY, NULL), 0);
    T_EQ_INT(orch_db_exec(db, "BEGIN IMMEDIATE; INSERT INTO t VALUES (99)", NULL), 0);
    T_EQ_INT(one_int(ro, "SELECT count(*) FROM t"), 11);
    T_EQ_INT(orch_db_exec(db, "COMMIT", NULL), 0);
    T_EQ_INT(one_int(ro, "SELECT count(*) FROM t"), 12);
    T_EQ_INT(orch_db_exec(ro, "INSERT INTO t VALUES (1)", &src), -EROFS);

    /* close finalizes statements still out (cached or not) */
    T_EQ_INT(orch_db_prepare(db, "SELECT v FROM t", 15, &a, &sa, NULL), 0);
    T_EQ_INT(sqlite3_step(a), SQLITE_ROW);
    T_EQ_INT(orch_db_prepare(db, "SELECT v FROM t", 15, &b, &sb, NULL), 0);
    T_EQ_INT(sqlite3_step(b), SQLITE_ROW);
    orch_db_close(db);
    orch_db_close(ro);
    orch_db_close(NULL);

    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    T_EQ_INT(system(cmd), 0);
    T_DONE();
}
