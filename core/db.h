/* db.h - a SQLite connection with orch's settings and a cache of prepared
 * statements keyed by SQL text.
 *
 * orch_db_open() opens (or creates) a database; a writer gets WAL,
 * synchronous=NORMAL, foreign_keys=ON and a busy timeout; a reader
 * (ORCH_DB_READONLY) gets the busy timeout and foreign_keys only, so it can
 * read while another process writes.
 *
 * orch_db_prepare() returns a reset statement with its bindings cleared,
 * from the cache when the same SQL text was prepared before and that
 * statement is not in use; orch_db_release() gives it back (resets it). A
 * statement asked for while its cached twin is still in use (a nested query
 * of the same SQL) is prepared fresh and finalized on release. Every failure
 * records a message naming the SQL with orch_err_set(). */
#ifndef ORCH_DB_H
#define ORCH_DB_H

#include <sqlite3.h>
#include <stddef.h>

typedef struct orch_db orch_db;

enum {
    ORCH_DB_READONLY = 1, /* open read-only, never create */
};

/* Opens path; on failure returns a negative errno-like code (-ENOENT when a
 * read-only open finds no file, -EIO otherwise), *sqlite_rc gets SQLite's
 * result code (may be NULL) and the message is recorded. */
int orch_db_open(orch_db **out, const char *path, int flags, int *sqlite_rc);

/* Finalizes every statement (cached or not) and closes. NULL is a no-op. */
void orch_db_close(orch_db *db);

sqlite3 *orch_db_sqlite(orch_db *db);
int orch_db_readonly(const orch_db *db);

/* Runs one or more statements without results. Returns 0 or -EIO with the
 * message recorded; *sqlite_rc gets SQLite's result code (may be NULL). */
int orch_db_exec(orch_db *db, const char *sql, int *sqlite_rc);

/* Prepares (or reuses) the statement for sql[0..len). The text must hold
 * exactly one statement (trailing whitespace and ';' allowed). *slot gets
 * the cache slot to give to orch_db_release (-1: not cached). */
int orch_db_prepare(orch_db *db, const char *sql, size_t len,
                    sqlite3_stmt **out, int *slot, int *sqlite_rc);

/* Gives back a statement from orch_db_prepare: resets it and clears its
 * bindings if cached (slot >= 0), finalizes it otherwise. */
void orch_db_release(orch_db *db, sqlite3_stmt *stmt, int slot);

/* Records "MSG [CODE] in: SQL" for a failed step of stmt and returns -EIO
 * (-EBUSY for SQLITE_BUSY/LOCKED, -EROFS for SQLITE_READONLY). */
int orch_db_fail(orch_db *db, sqlite3_stmt *stmt, int rc);

/* Name of an SQLite result code ("SQLITE_CONSTRAINT_UNIQUE"), never NULL. */
const char *orch_db_code_name(int rc);

/* Number of statements in the cache (for tests). */
size_t orch_db_cached(const orch_db *db);

#endif
