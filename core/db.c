/* db.c - a SQLite connection with a prepared-statement cache (see db.h). */
#include "db.h"

#include "err.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* The cache is an open-addressing table that never grows and never deletes,
 * so slot indices stay valid while statements are out; past ORCH_DB_MAX
 * distinct texts, statements are simply not cached. */
#define ORCH_DB_SLOTS 512
#define ORCH_DB_MAX 256
#define ORCH_DB_BUSY_MS 5000
#define ORCH_DB_SQL_SHOWN 200

struct orch_db_entry {
    char *sql;
    size_t len;
    uint32_t hash;
    int busy;
    sqlite3_stmt *stmt;
};

struct orch_db {
    sqlite3 *db;
    int readonly;
    size_t count;
    struct orch_db_entry slots[ORCH_DB_SLOTS];
};

static const struct {
    int rc;
    const char *name;
} orch_db_codes[] = {
    {SQLITE_ERROR, "SQLITE_ERROR"},
    {SQLITE_INTERNAL, "SQLITE_INTERNAL"},
    {SQLITE_PERM, "SQLITE_PERM"},
    {SQLITE_ABORT, "SQLITE_ABORT"},
    {SQLITE_BUSY, "SQLITE_BUSY"},
    {SQLITE_LOCKED, "SQLITE_LOCKED"},
    {SQLITE_NOMEM, "SQLITE_NOMEM"},
    {SQLITE_READONLY, "SQLITE_READONLY"},
    {SQLITE_INTERRUPT, "SQLITE_INTERRUPT"},
    {SQLITE_IOERR, "SQLITE_IOERR"},
    {SQLITE_CORRUPT, "SQLITE_CORRUPT"},
    {SQLITE_NOTFOUND, "SQLITE_NOTFOUND"},
    {SQLITE_FULL, "SQLITE_FULL"},
    {SQLITE_CANTOPEN, "SQLITE_CANTOPEN"},
    {SQLITE_PROTOCOL, "SQLITE_PROTOCOL"},
    {SQLITE_SCHEMA, "SQLITE_SCHEMA"},
    {SQLITE_TOOBIG, "SQLITE_TOOBIG"},
    {SQLITE_CONSTRAINT, "SQLITE_CONSTRAINT"},
    {SQLITE_MISMATCH, "SQLITE_MISMATCH"},
    {SQLITE_MISUSE, "SQLITE_MISUSE"},
    {SQLITE_NOLFS, "SQLITE_NOLFS"},
    {SQLITE_AUTH, "SQLITE_AUTH"},
    {SQLITE_RANGE, "SQLITE_RANGE"},
    {SQLITE_NOTADB, "SQLITE_NOTADB"},
};

const char *orch_db_code_name(int rc)
{
    size_t i;
    for (i = 0; i < sizeof orch_db_codes / sizeof orch_db_codes[0]; i++)
        if (orch_db_codes[i].rc == (rc & 0xff))
            return orch_db_codes[i].name;
    return "SQLITE_ERROR";
}

static int orch_db_errno(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_CANTOPEN:
        return -ENOENT;
    default:
        return -EIO;
    }
}

/* Records "MSG [CODE] in: SQL" with SQL shortened to a readable length. */
static int orch_db_fail_sql(orch_db *db, int rc, const char *sql, size_t len)
{
    int shown = len > ORCH_DB_SQL_SHOWN ? ORCH_DB_SQL_SHOWN : (int)len;
    const char *msg = db && db->db ? sqlite3_errmsg(db->db) : sqlite3_errstr(rc);
    return orch_err_set(orch_db_errno(rc), "%s [%s] in: %.*s%s", msg,
                        orch_db_code_name(rc), shown, sql ? sql : "",
                        (size_t)shown < len ? "..." : "");
}

int orch_db_fail(orch_db *db, sqlite3_stmt *stmt, int rc)
{
    const char *sql = stmt ? sqlite3_sql(stmt) : NULL;
    return orch_db_fail_sql(db, rc, sql, sql ? strlen(sql) : 0);
}

/* Runs sql again while it fails with SQLITE_BUSY, for up to the busy
 * timeout. The busy handler does not cover every case: switching a new
 * database to WAL takes an exclusive lock, and when two processes do that
 * at once SQLite returns SQLITE_BUSY to one of them at once (waiting could
 * deadlock). Sleeping and retrying is then safe. */
static int orch_db_exec_retry(orch_db *db, const char *sql, int *sqlite_rc)
{
    int src = SQLITE_OK, waited = 0;
    for (;;) {
        src = sqlite3_exec(db->db, sql, NULL, NULL, NULL);
        if ((src & 0xff) != SQLITE_BUSY || waited >= ORCH_DB_BUSY_MS)
            break;
        sqlite3_sleep(10);
        waited += 10;
    }
    if (sqlite_rc)
        *sqlite_rc = src;
    if (src != SQLITE_OK)
        return orch_db_fail_sql(db, src, sql, strlen(sql));
    return 0;
}

static int orch_db_pragmas(orch_db *db, int *sqlite_rc)
{
    sqlite3_busy_timeout(db->db, ORCH_DB_BUSY_MS);
    sqlite3_extended_result_codes(db->db, 1);
    if (db->readonly)
        return orch_db_exec_retry(db, "PRAGMA foreign_keys=ON", sqlite_rc);
    /* synchronous first: a new database's switch to WAL is a rollback
     * journal transaction, with one fsync fewer at NORMAL than at FULL */
    return orch_db_exec_retry(db,
                              "PRAGMA synchronous=NORMAL; PRAGMA journal_mode=WAL;"
                              " PRAGMA foreign_keys=ON;",
                              sqlite_rc);
}

/* The database holds plan env values and every line of task output: it is
 * created 0600, and an existing one (and its -wal, -shm, which SQLite
 * creates with the database's mode) is tightened to 0600 when its owner
 * opens it for writing. */
static int orch_db_private(const char *path)
{
    static const char *const sfx[] = {"", "-wal", "-shm"};
    char buf[4096];
    struct stat sb;
    int fd;

    if (!*path || !strcmp(path, ":memory:") || !strncmp(path, "file:", 5))
        return 0;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return 0; /* SQLite's open reports it */
    close(fd);
    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
        if (snprintf(buf, sizeof buf, "%s%s", path, sfx[i]) >= (int)sizeof buf)
            continue;
        if (lstat(buf, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_uid == geteuid() &&
            (sb.st_mode & 077) && chmod(buf, sb.st_mode & 0700) < 0)
            return orch_err_set(-errno, "chmod %s: %s", buf, strerror(errno));
    }
    return 0;
}

/* Process-wide settings, before SQLite initialises: no memory statistics
 * (they take a global mutex on every allocation, and orch never reads
 * them). Too late once another part of the process used SQLite: then
 * SQLite refuses it and nothing changes. */
static void orch_db_configure(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int orch_db_open(orch_db **out, const char *path, int flags, int *sqlite_rc)
{
    orch_db *db = NULL;
    int rc, src, oflags;
    struct stat sb;

    *out = NULL;
    if (sqlite_rc)
        *sqlite_rc = SQLITE_OK;
    if ((flags & ORCH_DB_READONLY) && stat(path, &sb) != 0) {
        if (sqlite_rc)
            *sqlite_rc = SQLITE_CANTOPEN;
        return orch_err_set(-errno, "%s: %s", path, strerror(errno));
    }
    if (!(flags & ORCH_DB_READONLY) && (rc = orch_db_private(path)) < 0)
        return rc;
    orch_db_configure();
    db = calloc(1, sizeof *db);
    if (!db)
        return orch_err_set(-ENOMEM, "out of memory");
    db->readonly = (flags & ORCH_DB_READONLY) != 0;
    oflags = db->readonly ? SQLITE_OPEN_READONLY
                          : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    src = sqlite3_open_v2(path, &db->db, oflags | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK) {
        if (sqlite_rc)
            *sqlite_rc = src;
        rc = orch_err_set(orch_db_errno(src), "%s: %s", path,
                          db->db ? sqlite3_errmsg(db->db) : sqlite3_errstr(src));
        goto cleanup;
    }
    rc = orch_db_pragmas(db, sqlite_rc);
    if (rc < 0)
        goto cleanup;
    *out = db;
    return 0;

cleanup:
    orch_db_close(db);
    return rc;
}

void orch_db_close(orch_db *db)
{
    size_t i;
    sqlite3_stmt *stmt;

    if (!db)
        return;
    for (i = 0; i < ORCH_DB_SLOTS; i++) {
        if (db->slots[i].stmt)
            sqlite3_finalize(db->slots[i].stmt);
        free(db->slots[i].sql);
    }
    if (db->db) {
        /* statements handed out and never released (an abandoned cursor) */
        while ((stmt = sqlite3_next_stmt(db->db, NULL)) != NULL)
            sqlite3_finalize(stmt);
        sqlite3_close(db->db);
    }
    free(db);
}

sqlite3 *orch_db_sqlite(orch_db *db)
{
    return db->db;
}

int orch_db_readonly(const orch_db *db)
{
    return db->readonly;
}

size_t orch_db_cached(const orch_db *db)
{
    return db->count;
}

int orch_db_exec(orch_db *db, const char *sql, int *sqlite_rc)
{
    int src = sqlite3_exec(db->db, sql, NULL, NULL, NULL);
    if (sqlite_rc)
        *sqlite_rc = src;
    if (src != SQLITE_OK)
        return orch_db_fail_sql(db, src, sql, strlen(sql));
    return 0;
}

static uint32_t orch_db_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    size_t i;
    for (i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

/* Prepares sql[0..len) and checks that nothing but blanks and ';' follow
 * the first statement. */
static int orch_db_prepare_new(orch_db *db, const char *sql, size_t len,
                               sqlite3_stmt **out, int *sqlite_rc)
{
    const char *tail = NULL, *end = sql + len;
    int src;

    *out = NULL;
    src = sqlite3_prepare_v2(db->db, sql, (int)len, out, &tail);
    if (sqlite_rc)
        *sqlite_rc = src;
    if (src != SQLITE_OK)
        return orch_db_fail_sql(db, src, sql, len);
    if (!*out) {
        if (sqlite_rc)
            *sqlite_rc = SQLITE_MISUSE;
        return orch_err_set(-EINVAL, "no statement in: %.*s",
                            (int)(len > ORCH_DB_SQL_SHOWN ? ORCH_DB_SQL_SHOWN
                                                          : len),
                            sql);
    }
    for (; tail && tail < end; tail++) {
        if (!strchr(" \t\r\n;", *tail)) {
            sqlite3_finalize(*out);
            *out = NULL;
            if (sqlite_rc)
                *sqlite_rc = SQLITE_MISUSE;
            return orch_err_set(-EINVAL,
                                "more than one statement (use exec) in: %.*s",
                                (int)(len > ORCH_DB_SQL_SHOWN
                                          ? ORCH_DB_SQL_SHOWN
                                          : len),
                                sql);
        }
    }
    return 0;
}

int orch_db_prepare(orch_db *db, const char *sql, size_t len,
                    sqlite3_stmt **out, int *slot, int *sqlite_rc)
{
    uint32_t h = orch_db_hash(sql, len);
    size_t i = h % ORCH_DB_SLOTS, n;
    struct orch_db_entry *e;
    int rc;

    *slot = -1;
    if (sqlite_rc)
        *sqlite_rc = SQLITE_OK;
    for (n = 0; n < ORCH_DB_SLOTS; n++, i = (i + 1) % ORCH_DB_SLOTS) {
        e = &db->slots[i];
        if (!e->sql)
            break;
        if (e->hash == h && e->len == len && memcmp(e->sql, sql, len) == 0) {
            if (e->busy) /* nested use of the same text: a private copy */
                return orch_db_prepare_new(db, sql, len, out, sqlite_rc);
            e->busy = 1;
            *out = e->stmt;
            *slot = (int)i;
            return 0;
        }
    }
    rc = orch_db_prepare_new(db, sql, len, out, sqlite_rc);
    if (rc < 0 || n == ORCH_DB_SLOTS || db->count >= ORCH_DB_MAX)
        return rc;
    e = &db->slots[i];
    e->sql = malloc(len + 1);
    if (!e->sql) /* not cached; the statement still works */
        return 0;
    memcpy(e->sql, sql, len);
    e->sql[len] = '\0';
    e->len = len;
    e->hash = h;
    e->busy = 1;
    e->stmt = *out;
    db->count++;
    *slot = (int)i;
    return 0;
}

void orch_db_release(orch_db *db, sqlite3_stmt *stmt, int slot)
{
    if (!stmt)
        return;
    if (slot >= 0 && slot < ORCH_DB_SLOTS && db->slots[slot].stmt == stmt) {
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);
        db->slots[slot].busy = 0;
        return;
    }
    sqlite3_finalize(stmt);
}
