/* lctl.c - orch.core.ctl: the control socket (core/ctl.h) and a
 * non-blocking reader of orch's own stdin, for `orch repl`.
 *
 *   ctl.socket_dir() -> dir            -- resolved, created 0700, checked
 *   ctl.check_dir(dir) -> true
 *   ctl.listen(path, function(conn) end) -> server   server:close()
 *   ctl.connect(path) -> conn          -- at once; nil, msg, "ECONNREFUSED"...
 *   conn:start(on_frame, on_close, [max])
 *       on_frame(data)                  -- one frame (a line, without '\n')
 *       on_frame(nil, "too_big", n)     -- a frame over max: reading stops
 *       on_close(errmsg | nil)          -- the peer is gone; conn is closed
 *                                          after it (queued writes flushed)
 *   conn:write(s) -> true   conn:queued() -> bytes   conn:close()
 *   ctl.stdin{on_data = fn(bytes), on_eof = fn(), on_resize = fn(cols, rows),
 *             raw = bool} -> reader     (core/term.h: raw: a TTY in raw mode;
 *       reader:close()  reader.tty  reader.raw      on_resize: SIGWINCH)
 *   ctl.tty_size() -> cols, rows   (isatty is core.isatty)
 *   ctl.total_queued() -> bytes        -- replies unwritten, every connection
 *   ctl.max_frame, ctl.limits = {max_frame=, max_conns=, total_buffered=,
 *                                write_max=, total_queued=}  (core/ctl.h)
 *
 * Errors of the system come back as nil, msg, code; every object keeps
 * itself alive while open. */
#include "lhandle.h"

#include "ctl.h"
#include "err.h"
#include "term.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <string.h>
#include <unistd.h>

#define LCTL_SERVER_MT "orch.ctl.server"
#define LCTL_CONN_MT "orch.ctl.conn"
#define LCTL_IN_MT "orch.ctl.stdin"

/* ================================================================ conn */

typedef struct lctl_conn {
    orch_ctl_conn *c;
    int frame_ref, close_ref, self_ref;
} lctl_conn;

static void lctl_conn_release(lua_State *L, lctl_conn *lc)
{
    if (lc->c) {
        orch_ctl_close(lc->c);
        lc->c = NULL;
    }
    lorch_unref(L, &lc->frame_ref);
    lorch_unref(L, &lc->close_ref);
    lorch_unref(L, &lc->self_ref);
}

static void lctl_on_frame(orch_ctl_conn *c, const char *data, size_t len,
                          int status, void *ud)
{
    lctl_conn *lc = ud;
    lua_State *L = lorch_state();
    (void)c;
    lorch_push(L, lc->frame_ref);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    if (status == ORCH_CTL_TOO_BIG) {
        lua_pushnil(L);
        lua_pushliteral(L, "too_big");
        lua_pushnumber(L, (lua_Number)len);
        lorch_call(L, 3, 0);
    } else {
        lua_pushlstring(L, data, len);
        lorch_call(L, 1, 0);
    }
}

static void lctl_on_close(orch_ctl_conn *c, int status, void *ud)
{
    lctl_conn *lc = ud;
    lua_State *L = lorch_state();
    int self = lc->self_ref;
    (void)c;
    lc->self_ref = LUA_NOREF; /* held here until the end */
    lorch_push(L, lc->close_ref);
    if (!lua_isnil(L, -1)) {
        if (status < 0)
            lua_pushstring(L, uv_strerror(status));
        else
            lua_pushnil(L);
        lorch_call(L, 1, 0);
    } else {
        lua_pop(L, 1);
    }
    lctl_conn_release(L, lc);
    lorch_unref(L, &self);
}

/* Pushes a new conn userdata owning c (kept alive until closed). */
static lctl_conn *lctl_conn_push(lua_State *L, orch_ctl_conn *c)
{
    lctl_conn *lc = lua_newuserdata(L, sizeof *lc);
    lc->c = c;
    lc->frame_ref = lc->close_ref = LUA_NOREF;
    luaL_getmetatable(L, LCTL_CONN_MT);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lc->self_ref = lorch_ref(L);
    return lc;
}

static lctl_conn *lctl_conn_check(lua_State *L)
{
    lctl_conn *lc = luaL_checkudata(L, 1, LCTL_CONN_MT);
    lorch_check_open(L, lc->c != NULL, "connection");
    return lc;
}

static int lctl_conn_start(lua_State *L)
{
    lctl_conn *lc = lctl_conn_check(L);
    orch_ctl_conn_cb cb = {lctl_on_frame, lctl_on_close};
    lua_Integer max = luaL_optinteger(L, 4, 0);
    int rc;
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TFUNCTION);
    luaL_argcheck(L, max >= 0, 4, "negative size");
    lorch_unref(L, &lc->frame_ref);
    lorch_unref(L, &lc->close_ref);
    lua_pushvalue(L, 2);
    lc->frame_ref = lorch_ref(L);
    lua_pushvalue(L, 3);
    lc->close_ref = lorch_ref(L);
    rc = orch_ctl_conn_start(lc->c, &cb, (size_t)max, lc);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushboolean(L, 1);
    return 1;
}

static int lctl_conn_write(lua_State *L)
{
    size_t len;
    const char *s;
    int rc;
    lctl_conn *lc = luaL_checkudata(L, 1, LCTL_CONN_MT);
    s = luaL_checklstring(L, 2, &len);
    if (!lc->c)
        return lorch_fail(L, -EPIPE, "connection is closed");
    rc = orch_ctl_write(lc->c, s, len);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushboolean(L, 1);
    return 1;
}

static int lctl_conn_queued(lua_State *L)
{
    lctl_conn *lc = luaL_checkudata(L, 1, LCTL_CONN_MT);
    lua_pushnumber(L, lc->c ? (lua_Number)orch_ctl_queued(lc->c) : 0);
    return 1;
}

static int lctl_conn_closed(lua_State *L)
{
    lctl_conn *lc = luaL_checkudata(L, 1, LCTL_CONN_MT);
    lua_pushboolean(L, lc->c == NULL);
    return 1;
}

static int lctl_conn_close(lua_State *L)
{
    lctl_conn_release(L, luaL_checkudata(L, 1, LCTL_CONN_MT));
    return 0;
}

static const luaL_Reg lctl_conn_methods[] = {
    {"start", lctl_conn_start},   {"write", lctl_conn_write},
    {"queued", lctl_conn_queued}, {"closed", lctl_conn_closed},
    {"close", lctl_conn_close},   {"__gc", lctl_conn_close},
    {NULL, NULL},
};

static int lctl_connect(lua_State *L)
{
    orch_ctl_conn *c;
    int rc = orch_ctl_connect(lorch_loop(), luaL_checkstring(L, 1), &c);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lctl_conn_push(L, c);
    return 1;
}

/* ================================================================ server */

typedef struct lctl_server {
    orch_ctl_server *s;
    int fn_ref, self_ref;
} lctl_server;

static void lctl_on_accept(orch_ctl_server *s, orch_ctl_conn *c, void *ud)
{
    lctl_server *ls = ud;
    lua_State *L = lorch_state();
    lctl_conn *lc;
    (void)s;
    lorch_push(L, ls->fn_ref);
    lc = lctl_conn_push(L, c);
    if (lorch_call(L, 1, 0) < 0)
        lctl_conn_release(L, lc);
}

static void lctl_server_release(lua_State *L, lctl_server *ls)
{
    if (ls->s) {
        orch_ctl_server_close(ls->s);
        ls->s = NULL;
    }
    lorch_unref(L, &ls->fn_ref);
    lorch_unref(L, &ls->self_ref);
}

static int lctl_listen(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lctl_server *ls;
    int rc;
    luaL_checktype(L, 2, LUA_TFUNCTION);
    ls = lua_newuserdata(L, sizeof *ls);
    ls->s = NULL;
    ls->fn_ref = ls->self_ref = LUA_NOREF;
    luaL_getmetatable(L, LCTL_SERVER_MT);
    lua_setmetatable(L, -2);
    rc = orch_ctl_listen(lorch_loop(), path, lctl_on_accept, ls, &ls->s);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushvalue(L, 2);
    ls->fn_ref = lorch_ref(L);
    lua_pushvalue(L, -1);
    ls->self_ref = lorch_ref(L);
    return 1;
}

static int lctl_server_close(lua_State *L)
{
    lctl_server_release(L, luaL_checkudata(L, 1, LCTL_SERVER_MT));
    return 0;
}

static const luaL_Reg lctl_server_methods[] = {
    {"close", lctl_server_close},
    {"__gc", lctl_server_close},
    {NULL, NULL},
};

/* ================================================================ places */

static int lctl_socket_dir(lua_State *L)
{
    char dir[4096];
    int rc = orch_ctl_socket_dir(dir, sizeof dir);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushstring(L, dir);
    return 1;
}

static int lctl_check_dir(lua_State *L)
{
    int rc = orch_ctl_check_dir(luaL_checkstring(L, 1));
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushboolean(L, 1);
    return 1;
}

/* ================================================================ stdin */

/* ctl.stdin{...}: orch's own stdin through core/term.h, as a handle
 * (lhandle.h) that keeps itself alive until closed. */

enum { LCTL_IN_DATA, LCTL_IN_EOF, LCTL_IN_RESIZE };

typedef struct lctl_in {
    lorch_handle base;
    orch_term *term;
} lctl_in;

static void lctl_in_on_data(const char *data, size_t n, void *arg)
{
    lctl_in *in = arg;
    lua_State *L = lorch_state();
    if (n > 0) {
        lorch_handle_push(L, &in->base, LCTL_IN_DATA);
        lua_pushlstring(L, data, n);
        lorch_call(L, 1, 0);
        return;
    }
    lorch_handle_push(L, &in->base, LCTL_IN_EOF);
    if (lua_isnil(L, -1))
        lua_pop(L, 1);
    else
        lorch_call(L, 0, 0);
}

static void lctl_in_on_resize(int cols, int rows, void *arg)
{
    lctl_in *in = arg;
    lua_State *L = lorch_state();
    lorch_handle_push(L, &in->base, LCTL_IN_RESIZE);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    lua_pushinteger(L, cols);
    lua_pushinteger(L, rows);
    lorch_call(L, 2, 0);
}

static void lctl_in_close(lorch_handle *base)
{
    lctl_in *in = (lctl_in *)base;
    orch_term_close(in->term); /* no callback after this; it frees itself */
    free(in);
}

static int lctl_stdin(lua_State *L)
{
    lctl_in *in;
    orch_term_opts o = {0};
    int rc, udx;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "on_data");
    luaL_checktype(L, -1, LUA_TFUNCTION);
    lua_pop(L, 1);
    in = lorch_handle_new(L, LCTL_IN_MT, sizeof *in, lctl_in_close);
    udx = lua_gettop(L);
    lua_getfield(L, 1, "on_data");
    lorch_handle_ref(L, &in->base, LCTL_IN_DATA, -1);
    lua_getfield(L, 1, "on_eof");
    lorch_handle_ref(L, &in->base, LCTL_IN_EOF, -1);
    lua_getfield(L, 1, "on_resize");
    lorch_handle_ref(L, &in->base, LCTL_IN_RESIZE, -1);
    lua_pop(L, 3);
    o.fd = 0;
    o.raw = lorch_opt_bool_field(L, 1, "raw", 0);
    o.on_data = lctl_in_on_data;
    o.on_resize = in->base.refs[LCTL_IN_RESIZE] != LUA_NOREF ? lctl_in_on_resize : NULL;
    o.arg = in;
    rc = orch_term_open(lorch_loop(), &o, &in->term);
    if (rc < 0) {
        lorch_handle_close(L, udx, LCTL_IN_MT);
        return lorch_fail(L, rc, uv_strerror(rc));
    }
    lorch_handle_keep(L, &in->base, udx);
    lua_settop(L, udx);
    return 1;
}

static int lctl_in_m_close(lua_State *L)
{
    lorch_handle_close(L, 1, LCTL_IN_MT);
    return 0;
}

static int lctl_in_m_index(lua_State *L)
{
    lctl_in *in = lorch_handle_get(L, 1, LCTL_IN_MT);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "tty") == 0) {
        lua_pushboolean(L, in && in->term && orch_term_is_tty(in->term));
        return 1;
    }
    if (strcmp(k, "raw") == 0) {
        lua_pushboolean(L, in && in->term && orch_term_is_raw(in->term));
        return 1;
    }
    if (strcmp(k, "close") == 0) {
        lua_pushcfunction(L, lctl_in_m_close);
        return 1;
    }
    return 0;
}

static const luaL_Reg lctl_in_methods[] = {
    {"__index", lctl_in_m_index},
    {"__gc", lctl_in_m_close},
    {NULL, NULL},
};

/* ctl.tty_size() -> columns, rows of stdout's terminal (80, 24 if none). */
static int lctl_tty_size(lua_State *L)
{
    int w, h;
    orch_term_size(1, &w, &h);
    lua_pushinteger(L, w);
    lua_pushinteger(L, h);
    return 2;
}

/* ================================================================ open */

/* ctl.clear_stale(path) -> true, or nil, msg, code (a live socket, or a
 * path that is not a socket, is left alone) */
static int lctl_clear_stale(lua_State *L)
{
    int rc = orch_ctl_clear_stale(luaL_checkstring(L, 1));
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushboolean(L, 1);
    return 1;
}

static int lctl_total_queued(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)orch_ctl_total_queued());
    return 1;
}

static void lctl_limit(lua_State *L, const char *name, size_t v)
{
    lua_pushnumber(L, (lua_Number)v);
    lua_setfield(L, -2, name);
}

int lorch_open_ctl(lua_State *L)
{
    lorch_class(L, LCTL_CONN_MT, lctl_conn_methods);
    lua_pop(L, 1);
    lorch_class(L, LCTL_SERVER_MT, lctl_server_methods);
    lua_pop(L, 1);
    if (luaL_newmetatable(L, LCTL_IN_MT))
        luaL_register(L, NULL, lctl_in_methods);
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, lctl_listen);
    lua_setfield(L, -2, "listen");
    lua_pushcfunction(L, lctl_connect);
    lua_setfield(L, -2, "connect");
    lua_pushcfunction(L, lctl_socket_dir);
    lua_setfield(L, -2, "socket_dir");
    lua_pushcfunction(L, lctl_check_dir);
    lua_setfield(L, -2, "check_dir");
    lua_pushcfunction(L, lctl_stdin);
    lua_setfield(L, -2, "stdin");
    lua_pushcfunction(L, lctl_clear_stale);
    lua_setfield(L, -2, "clear_stale");
    lua_pushcfunction(L, lctl_tty_size);
    lua_setfield(L, -2, "tty_size");
    lua_pushcfunction(L, lctl_total_queued);
    lua_setfield(L, -2, "total_queued");
    lua_pushnumber(L, (lua_Number)ORCH_CTL_MAX_FRAME);
    lua_setfield(L, -2, "max_frame");
    lua_newtable(L);
    lctl_limit(L, "max_frame", ORCH_CTL_MAX_FRAME);
    lctl_limit(L, "max_conns", ORCH_CTL_MAX_CONNS);
    lctl_limit(L, "total_buffered", ORCH_CTL_TOTAL_BUFFERED);
    lctl_limit(L, "write_max", ORCH_CTL_WRITE_MAX);
    lctl_limit(L, "total_queued", ORCH_CTL_TOTAL_QUEUED);
    lua_setfield(L, -2, "limits");
    return 1;
}
