/* ltcp.c - orch.core.tcp_listen / tcp_connect: TCP sockets (core/tcp.h).
 *
 *   local srv = core.tcp_listen{host = '127.0.0.1', port = 0,
 *                               on_connection = function(conn) end}
 *   srv:port()  srv:close()
 *   core.tcp_free_port([host]) -> a port free now (bound, read, released)
 *   local conn = core.tcp_connect{host = '127.0.0.1', port = N,
 *                                 on_connect = function(conn, err) end}
 *   conn:on_data(fn(bytes))  -- starts reading (nil: pauses)
 *   conn:on_close(fn(err))   -- the peer is gone (err nil at end of stream);
 *                               the connection is closed after it returns
 *   conn:write(s) -> true | nil, msg, code   -- ENOBUFS over the bound
 *   conn:queued() -> bytes   conn:closed() -> bool
 *   conn:close()             -- flushes what is queued, then FIN
 *   conn:abort()             -- drops what is queued, the peer sees a reset
 *
 * Errors of the system come back as nil, msg, code; every object keeps
 * itself alive while open; callbacks run through lorch_call. */
#include "lorch.h"

#include "err.h"
#include "tcp.h"

#include <errno.h>
#include <stdlib.h>

#define LTCP_SERVER_MT "orch.tcp.server"
#define LTCP_CONN_MT "orch.tcp.conn"

/* ================================================================ conn */

typedef struct ltcp_conn {
    orch_tcp_conn *c; /* NULL once closed */
    int data_ref, close_ref, connect_ref, self_ref;
} ltcp_conn;

static void ltcp_conn_release(lua_State *L, ltcp_conn *lc, int abort)
{
    if (lc->c) {
        if (abort)
            orch_tcp_abort(lc->c);
        else
            orch_tcp_close(lc->c);
        lc->c = NULL;
    }
    lorch_unref(L, &lc->data_ref);
    lorch_unref(L, &lc->close_ref);
    lorch_unref(L, &lc->connect_ref);
    lorch_unref(L, &lc->self_ref);
}

static void ltcp_on_data(orch_tcp_conn *c, const char *data, size_t len,
                         void *ud)
{
    ltcp_conn *lc = ud;
    lua_State *L = lorch_state();
    (void)c;
    lorch_push(L, lc->data_ref);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    lua_pushlstring(L, data, len);
    lorch_call(L, 1, 0);
}

static void ltcp_on_close(orch_tcp_conn *c, int status, void *ud)
{
    ltcp_conn *lc = ud;
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
    ltcp_conn_release(L, lc, 0);
    lorch_unref(L, &self);
}

static const orch_tcp_conn_cb ltcp_cb = {ltcp_on_data, ltcp_on_close};

/* Pushes a new conn userdata owning c (kept alive until closed). */
static ltcp_conn *ltcp_conn_push(lua_State *L, orch_tcp_conn *c)
{
    ltcp_conn *lc = lua_newuserdata(L, sizeof *lc);
    lc->c = c;
    lc->data_ref = lc->close_ref = lc->connect_ref = LUA_NOREF;
    luaL_getmetatable(L, LTCP_CONN_MT);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lc->self_ref = lorch_ref(L);
    return lc;
}

static ltcp_conn *ltcp_conn_check(lua_State *L)
{
    ltcp_conn *lc = luaL_checkudata(L, 1, LTCP_CONN_MT);
    lorch_check_open(L, lc->c != NULL, "connection");
    return lc;
}

static int ltcp_conn_on_data(lua_State *L)
{
    ltcp_conn *lc = ltcp_conn_check(L);
    int rc;
    if (lua_isnoneornil(L, 2)) {
        orch_tcp_pause(lc->c);
        lorch_unref(L, &lc->data_ref);
        return 0;
    }
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lorch_unref(L, &lc->data_ref);
    lua_pushvalue(L, 2);
    lc->data_ref = lorch_ref(L);
    rc = orch_tcp_conn_start(lc->c, &ltcp_cb, lc);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushboolean(L, 1);
    return 1;
}

static int ltcp_conn_on_close(lua_State *L)
{
    ltcp_conn *lc = ltcp_conn_check(L);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TFUNCTION);
    lorch_unref(L, &lc->close_ref);
    lua_pushvalue(L, 2);
    lc->close_ref = lorch_ref(L);
    return 0;
}

static int ltcp_conn_write(lua_State *L)
{
    ltcp_conn *lc = luaL_checkudata(L, 1, LTCP_CONN_MT);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    int rc;
    if (!lc->c)
        return lorch_fail(L, -EPIPE, "connection is closed");
    rc = orch_tcp_write(lc->c, s, len);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushboolean(L, 1);
    return 1;
}

static int ltcp_conn_queued(lua_State *L)
{
    ltcp_conn *lc = luaL_checkudata(L, 1, LTCP_CONN_MT);
    lua_pushnumber(L, lc->c ? (lua_Number)orch_tcp_queued(lc->c) : 0);
    return 1;
}

static int ltcp_conn_closed(lua_State *L)
{
    ltcp_conn *lc = luaL_checkudata(L, 1, LTCP_CONN_MT);
    lua_pushboolean(L, lc->c == NULL);
    return 1;
}

static int ltcp_conn_close(lua_State *L)
{
    ltcp_conn_release(L, luaL_checkudata(L, 1, LTCP_CONN_MT), 0);
    return 0;
}

static int ltcp_conn_abort(lua_State *L)
{
    ltcp_conn_release(L, luaL_checkudata(L, 1, LTCP_CONN_MT), 1);
    return 0;
}

static const luaL_Reg ltcp_conn_methods[] = {
    {"on_data", ltcp_conn_on_data}, {"on_close", ltcp_conn_on_close},
    {"write", ltcp_conn_write},     {"queued", ltcp_conn_queued},
    {"closed", ltcp_conn_closed},   {"close", ltcp_conn_close},
    {"abort", ltcp_conn_abort},     {"__gc", ltcp_conn_close},
    {NULL, NULL},
};

/* ================================================================ connect */

static void ltcp_on_connect(orch_tcp_conn *c, int status, void *ud)
{
    ltcp_conn *lc = ud;
    lua_State *L = lorch_state();
    int self = lc->self_ref, fn = lc->connect_ref;
    (void)c;
    lc->connect_ref = LUA_NOREF;
    if (status < 0) {
        lc->c = NULL; /* the module drops it after this call */
        lc->self_ref = LUA_NOREF;
    }
    lorch_push(L, fn);
    if (status < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "connect: %s", uv_strerror(status));
        lorch_call(L, 2, 0);
        ltcp_conn_release(L, lc, 0);
        lorch_unref(L, &self);
    } else {
        lorch_push(L, self);
        lorch_call(L, 1, 0);
    }
    lorch_unref(L, &fn);
}

static int ltcp_connect(lua_State *L)
{
    const char *host;
    lua_Integer port;
    orch_tcp_conn *c;
    ltcp_conn *lc;
    int rc;

    luaL_checktype(L, 1, LUA_TTABLE);
    host = lorch_opt_str_field(L, 1, "host", "127.0.0.1");
    port = lorch_opt_int_field(L, 1, "port", -1);
    luaL_argcheck(L, port > 0 && port < 65536, 1, "port must be 1..65535");
    lua_getfield(L, 1, "on_connect");
    luaL_argcheck(L, lua_isfunction(L, -1), 1, "on_connect must be a function");
    lc = lua_newuserdata(L, sizeof *lc);
    lc->c = NULL;
    lc->data_ref = lc->close_ref = lc->connect_ref = lc->self_ref = LUA_NOREF;
    luaL_getmetatable(L, LTCP_CONN_MT);
    lua_setmetatable(L, -2);
    rc = orch_tcp_connect(lorch_loop(), host, (int)port, ltcp_on_connect, lc,
                          &c);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lc->c = c;
    lua_pushvalue(L, -2);
    lc->connect_ref = lorch_ref(L);
    lua_pushvalue(L, -1);
    lc->self_ref = lorch_ref(L);
    return 1;
}

/* ================================================================ server */

typedef struct ltcp_server {
    orch_tcp_server *s;
    int fn_ref, self_ref;
} ltcp_server;

static void ltcp_on_accept(orch_tcp_server *s, orch_tcp_conn *c, void *ud)
{
    ltcp_server *ls = ud;
    lua_State *L = lorch_state();
    ltcp_conn *lc;
    (void)s;
    lorch_push(L, ls->fn_ref);
    lc = ltcp_conn_push(L, c);
    if (lorch_call(L, 1, 0) < 0)
        ltcp_conn_release(L, lc, 0);
}

static void ltcp_server_release(lua_State *L, ltcp_server *ls)
{
    if (ls->s) {
        orch_tcp_server_close(ls->s);
        ls->s = NULL;
    }
    lorch_unref(L, &ls->fn_ref);
    lorch_unref(L, &ls->self_ref);
}

static int ltcp_listen(lua_State *L)
{
    const char *host;
    lua_Integer port;
    ltcp_server *ls;
    int rc;

    luaL_checktype(L, 1, LUA_TTABLE);
    host = lorch_opt_str_field(L, 1, "host", "127.0.0.1");
    port = lorch_opt_int_field(L, 1, "port", 0);
    luaL_argcheck(L, port >= 0 && port < 65536, 1, "port must be 0..65535");
    lua_getfield(L, 1, "on_connection");
    luaL_argcheck(L, lua_isfunction(L, -1), 1,
                  "on_connection must be a function");
    ls = lua_newuserdata(L, sizeof *ls);
    ls->s = NULL;
    ls->fn_ref = ls->self_ref = LUA_NOREF;
    luaL_getmetatable(L, LTCP_SERVER_MT);
    lua_setmetatable(L, -2);
    rc = orch_tcp_listen(lorch_loop(), host, (int)port, ltcp_on_accept, ls,
                         &ls->s);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushvalue(L, -2);
    ls->fn_ref = lorch_ref(L);
    lua_pushvalue(L, -1);
    ls->self_ref = lorch_ref(L);
    return 1;
}

static int ltcp_free_port(lua_State *L)
{
    int port = orch_tcp_free_port(luaL_optstring(L, 1, "127.0.0.1"));
    if (port < 0)
        return lorch_fail(L, port, orch_err_msg());
    lua_pushinteger(L, port);
    return 1;
}

static int ltcp_server_port(lua_State *L)
{
    ltcp_server *ls = luaL_checkudata(L, 1, LTCP_SERVER_MT);
    lorch_check_open(L, ls->s != NULL, "server");
    lua_pushinteger(L, orch_tcp_server_port(ls->s));
    return 1;
}

static int ltcp_server_close(lua_State *L)
{
    ltcp_server_release(L, luaL_checkudata(L, 1, LTCP_SERVER_MT));
    return 0;
}

static const luaL_Reg ltcp_server_methods[] = {
    {"port", ltcp_server_port},
    {"close", ltcp_server_close},
    {"__gc", ltcp_server_close},
    {NULL, NULL},
};

/* ================================================================ open */

int lorch_open_tcp(lua_State *L)
{
    lorch_class(L, LTCP_CONN_MT, ltcp_conn_methods);
    lua_pop(L, 1);
    lorch_class(L, LTCP_SERVER_MT, ltcp_server_methods);
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, ltcp_listen);
    lua_setfield(L, -2, "tcp_listen");
    lua_pushcfunction(L, ltcp_connect);
    lua_setfield(L, -2, "tcp_connect");
    lua_pushcfunction(L, ltcp_free_port);
    lua_setfield(L, -2, "tcp_free_port");
    lua_pushnumber(L, (lua_Number)ORCH_TCP_MAX_QUEUED);
    lua_setfield(L, -2, "tcp_max_queued");
    return 1;
}
