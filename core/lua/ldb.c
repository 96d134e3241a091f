/* ldb.c - orch.core.db: SQLite for Lua (see docs/api/db.md).
 *
 *   local h, msg, code = db.open(path, {readonly = false})
 *   h:exec(sql)                 -- one or more statements, no parameters
 *   h:run(sql, ...)             -- one statement, positional ?; -> changes
 *   for row in h:rows(sql, ...) -- row tables keyed by column name
 *   h:first(sql, ...)           -- the first row, or nil
 *   h:last_insert_id(), h:transaction(fn), h:close(), db.now()
 *
 * SQLite errors raise "MESSAGE [SQLITE_CODE] in: SQL"; a failed open
 * returns nil, msg, code. Statements are cached by SQL text (core/db.c). */
#include "db.h"
#include "dbckpt.h"
#include "err.h"
#include "lorch.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define LDB_HANDLE "orch.db"
#define LDB_CURSOR "orch.db.cursor"

typedef struct {
    orch_db *db;
    orch_dbckpt *ckpt; /* background checkpoints (writers that asked) */
} ldb_handle;

typedef struct {
    ldb_handle *h; /* kept alive through the cursor's environment */
    sqlite3_stmt *stmt;
    int slot;
} ldb_cursor;

static ldb_handle *ldb_check(lua_State *L, int idx)
{
    ldb_handle *h = luaL_checkudata(L, idx, LDB_HANDLE);
    lorch_check_open(L, h->db != NULL, "database handle");
    return h;
}

static int ldb_raise(lua_State *L)
{
    return luaL_error(L, "%s", orch_err_msg());
}

/* Binds the Lua values at [first, top] to stmt's parameters. Returns 0, or
 * the stack index of a value that cannot be bound (with a message on
 * failure of SQLite itself recorded and -1 returned). */
static int ldb_bind(lua_State *L, orch_db *db, sqlite3_stmt *stmt, int first)
{
    int top = lua_gettop(L), i, n, src = SQLITE_OK;
    size_t len;
    const char *s;
    lua_Number d;

    n = sqlite3_bind_parameter_count(stmt);
    if (top - first + 1 != n) {
        orch_err_set(-EINVAL, "%d parameter(s) given, %d expected in: %s",
                     top - first + 1, n, sqlite3_sql(stmt));
        return -1;
    }
    for (i = first; i <= top; i++) {
        int p = i - first + 1;
        switch (lua_type(L, i)) {
        case LUA_TNIL:
            src = sqlite3_bind_null(stmt, p);
            break;
        case LUA_TBOOLEAN:
            src = sqlite3_bind_int(stmt, p, lua_toboolean(L, i));
            break;
        case LUA_TNUMBER:
            d = lua_tonumber(L, i);
            if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 &&
                d == (lua_Number)(int64_t)d)
                src = sqlite3_bind_int64(stmt, p, (sqlite3_int64)d);
            else
                src = sqlite3_bind_double(stmt, p, d);
            break;
        case LUA_TSTRING:
            s = lua_tolstring(L, i, &len);
            if (memchr(s, '\0', len))
                src = sqlite3_bind_blob64(stmt, p, s, len, SQLITE_TRANSIENT);
            else
                src = sqlite3_bind_text64(stmt, p, s, len, SQLITE_TRANSIENT,
                                          SQLITE_UTF8);
            break;
        default:
            return i;
        }
        if (src != SQLITE_OK) {
            orch_db_fail(db, stmt, src);
            return -1;
        }
    }
    return 0;
}

/* Prepares sql (argument 2) and binds arguments 3..top; raises on error. */
static sqlite3_stmt *ldb_prepare(lua_State *L, ldb_handle *h, int *slot)
{
    size_t len;
    const char *sql = luaL_checklstring(L, 2, &len);
    sqlite3_stmt *stmt = NULL;
    int bad;

    if (orch_db_prepare(h->db, sql, len, &stmt, slot, NULL) < 0)
        ldb_raise(L);
    bad = ldb_bind(L, h->db, stmt, 3);
    if (bad != 0) {
        orch_db_release(h->db, stmt, *slot);
        if (bad < 0)
            ldb_raise(L);
        luaL_argerror(L, bad, "nil, boolean, number or string expected");
    }
    return stmt;
}

static void ldb_push_row(lua_State *L, sqlite3_stmt *stmt)
{
    int i, n = sqlite3_column_count(stmt);

    lua_createtable(L, 0, n);
    for (i = 0; i < n; i++) {
        switch (sqlite3_column_type(stmt, i)) {
        case SQLITE_INTEGER:
            lua_pushnumber(L, (lua_Number)sqlite3_column_int64(stmt, i));
            break;
        case SQLITE_FLOAT:
            lua_pushnumber(L, sqlite3_column_double(stmt, i));
            break;
        case SQLITE_TEXT:
            lua_pushlstring(L, (const char *)sqlite3_column_text(stmt, i),
                            (size_t)sqlite3_column_bytes(stmt, i));
            break;
        case SQLITE_BLOB: {
            const void *b = sqlite3_column_blob(stmt, i);
            lua_pushlstring(L, b ? b : "", (size_t)sqlite3_column_bytes(stmt, i));
            break;
        }
        default:
            continue; /* NULL: the key stays absent */
        }
        lua_setfield(L, -2, sqlite3_column_name(stmt, i));
    }
}

static int ldb_open(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int flags = 0, src = 0, ckpt_pages = 0;
    orch_db *db = NULL;
    ldb_handle *h;

    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        if (lorch_opt_bool_field(L, 2, "readonly", 0))
            flags |= ORCH_DB_READONLY;
        ckpt_pages = (int)lorch_opt_int_field(L, 2, "background_checkpoint", 0);
    }
    if (orch_db_open(&db, path, flags, &src) < 0) {
        lua_pushnil(L);
        lua_pushstring(L, orch_err_msg());
        lua_pushstring(L, orch_db_code_name(src));
        return 3;
    }
    h = lua_newuserdata(L, sizeof *h);
    h->db = db;
    h->ckpt = NULL;
    if (ckpt_pages > 0 && !(flags & ORCH_DB_READONLY))
        orch_dbckpt_start(orch_db_sqlite(db), path, lorch_loop(), ckpt_pages, &h->ckpt);
    luaL_getmetatable(L, LDB_HANDLE);
    lua_setmetatable(L, -2);
    return 1;
}

static int ldb_exec(lua_State *L)
{
    ldb_handle *h = ldb_check(L, 1);
    if (orch_db_exec(h->db, luaL_checkstring(L, 2), NULL) < 0)
        return ldb_raise(L);
    return 0;
}

static int ldb_run(lua_State *L)
{
    ldb_handle *h = ldb_check(L, 1);
    int slot, src;
    sqlite3_stmt *stmt = ldb_prepare(L, h, &slot);

    while ((src = sqlite3_step(stmt)) == SQLITE_ROW)
        ;
    if (src != SQLITE_DONE) {
        orch_db_fail(h->db, stmt, src);
        orch_db_release(h->db, stmt, slot);
        return ldb_raise(L);
    }
    orch_db_release(h->db, stmt, slot);
    lua_pushnumber(L, sqlite3_changes(orch_db_sqlite(h->db)));
    return 1;
}

static int ldb_first(lua_State *L)
{
    ldb_handle *h = ldb_check(L, 1);
    int slot, src;
    sqlite3_stmt *stmt = ldb_prepare(L, h, &slot);

    src = sqlite3_step(stmt);
    if (src == SQLITE_ROW)
        ldb_push_row(L, stmt);
    else if (src == SQLITE_DONE)
        lua_pushnil(L);
    else {
        orch_db_fail(h->db, stmt, src);
        orch_db_release(h->db, stmt, slot);
        return ldb_raise(L);
    }
    orch_db_release(h->db, stmt, slot);
    return 1;
}

/* Gives the cursor's statement back (unless its handle closed, which
 * finalized it already). */
static void ldb_cursor_release(ldb_cursor *c)
{
    if (c->stmt && c->h->db)
        orch_db_release(c->h->db, c->stmt, c->slot);
    c->stmt = NULL;
}

static int ldb_rows(lua_State *L)
{
    ldb_handle *h = ldb_check(L, 1);
    int slot;
    sqlite3_stmt *stmt = ldb_prepare(L, h, &slot);
    ldb_cursor *c = lua_newuserdata(L, sizeof *c);

    c->h = h;
    c->stmt = stmt;
    c->slot = slot;
    luaL_getmetatable(L, LDB_CURSOR);
    lua_setmetatable(L, -2);
    lua_createtable(L, 1, 0); /* the environment keeps the handle alive */
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    lua_setfenv(L, -2);
    return 1;
}

/* cursor() for the generic for: the next row table, or nil at the end. */
static int ldb_cursor_next(lua_State *L)
{
    ldb_cursor *c = luaL_checkudata(L, 1, LDB_CURSOR);
    int src;

    if (!c->stmt)
        return 0;
    lorch_check_open(L, c->h->db != NULL, "database handle");
    src = sqlite3_step(c->stmt);
    if (src == SQLITE_ROW) {
        ldb_push_row(L, c->stmt);
        return 1;
    }
    if (src != SQLITE_DONE) {
        orch_db_fail(c->h->db, c->stmt, src);
        ldb_cursor_release(c);
        return ldb_raise(L);
    }
    ldb_cursor_release(c);
    return 0;
}

static int ldb_cursor_close(lua_State *L)
{
    ldb_cursor_release(luaL_checkudata(L, 1, LDB_CURSOR));
    return 0;
}

static int ldb_last_insert_id(lua_State *L)
{
    ldb_handle *h = ldb_check(L, 1);
    lua_pushnumber(L, (lua_Number)sqlite3_last_insert_rowid(
                          orch_db_sqlite(h->db)));
    return 1;
}

/* BEGIN IMMEDIATE .. COMMIT around fn (a SAVEPOINT when already inside a
 * transaction); on error ROLLBACK and rethrow the error value. */
static int ldb_transaction(lua_State *L)
{
    ldb_handle *h = ldb_check(L, 1);
    sqlite3 *s = orch_db_sqlite(h->db);
    int nested, status;

    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    nested = !sqlite3_get_autocommit(s);
    if (orch_db_exec(h->db, nested ? "SAVEPOINT orch_tx" : "BEGIN IMMEDIATE",
                     NULL) < 0)
        return ldb_raise(L);
    lua_pushvalue(L, 2);
    status = lua_pcall(L, 0, LUA_MULTRET, 0);
    if (!h->db) {
        if (status != 0)
            return lua_error(L);
        return luaL_error(L, "database handle closed inside its transaction");
    }
    if (status == 0) {
        if (orch_db_exec(h->db, nested ? "RELEASE orch_tx" : "COMMIT", NULL) ==
            0)
            return lua_gettop(L) - 2;
        lua_pushstring(L, orch_err_msg());
    }
    /* an error may have ended the transaction already (SQLITE_FULL etc.) */
    if (!sqlite3_get_autocommit(s))
        orch_db_exec(h->db,
                     nested ? "ROLLBACK TO orch_tx; RELEASE orch_tx"
                            : "ROLLBACK",
                     NULL);
    return lua_error(L);
}

static int ldb_close(lua_State *L)
{
    ldb_handle *h = luaL_checkudata(L, 1, LDB_HANDLE);
    orch_dbckpt_stop(h->ckpt);
    h->ckpt = NULL;
    orch_db_close(h->db);
    h->db = NULL;
    return 0;
}

static int ldb_is_open(lua_State *L)
{
    ldb_handle *h = luaL_checkudata(L, 1, LDB_HANDLE);
    lua_pushboolean(L, h->db != NULL);
    return 1;
}

static int ldb_readonly(lua_State *L)
{
    lua_pushboolean(L, orch_db_readonly(ldb_check(L, 1)->db));
    return 1;
}

static int ldb_in_transaction(lua_State *L)
{
    ldb_handle *h = ldb_check(L, 1);
    lua_pushboolean(L, !sqlite3_get_autocommit(orch_db_sqlite(h->db)));
    return 1;
}

static int ldb_cached(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)orch_db_cached(ldb_check(L, 1)->db));
    return 1;
}

static int ldb_tostring(lua_State *L)
{
    ldb_handle *h = luaL_checkudata(L, 1, LDB_HANDLE);
    const char *f = h->db ? sqlite3_db_filename(orch_db_sqlite(h->db), "main")
                          : NULL;
    lua_pushfstring(L, "orch.db: %s", h->db ? (f ? f : "") : "(closed)");
    return 1;
}

/* db.now(): wall-clock time as unix seconds with sub-millisecond digits. */
static int ldb_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

static const luaL_Reg ldb_methods[] = {
    {"exec", ldb_exec},
    {"run", ldb_run},
    {"rows", ldb_rows},
    {"first", ldb_first},
    {"last_insert_id", ldb_last_insert_id},
    {"transaction", ldb_transaction},
    {"in_transaction", ldb_in_transaction},
    {"readonly", ldb_readonly},
    {"is_open", ldb_is_open},
    {"cached", ldb_cached},
    {"close", ldb_close},
    {"__gc", ldb_close},
    {"__tostring", ldb_tostring},
    {NULL, NULL},
};

static const luaL_Reg ldb_cursor_methods[] = {
    {"close", ldb_cursor_close},
    {"__call", ldb_cursor_next},
    {"__gc", ldb_cursor_close},
    {NULL, NULL},
};

static const luaL_Reg ldb_funcs[] = {
    {"open", ldb_open},
    {"now", ldb_now},
    {NULL, NULL},
};

int lorch_open_db(lua_State *L)
{
    lorch_class(L, LDB_HANDLE, ldb_methods);
    lua_pop(L, 1);
    lorch_class(L, LDB_CURSOR, ldb_cursor_methods);
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_register(L, NULL, ldb_funcs);
    lua_pushstring(L, sqlite3_libversion());
    lua_setfield(L, -2, "sqlite_version");
    return 1;
}
