/* lhttp.c - orch.core.http: streamed HTTP requests on the loop and an SSE
 * parser (see docs/api/http.md).
 *
 *   local req = http.request{ url = ..., method = 'POST', headers = {...},
 *     body = '...', connect_timeout = ms, idle_timeout = ms, timeout = ms,
 *     on_headers = function(status, headers) end,
 *     on_chunk = function(bytes) end,
 *     sse = parser,   -- an http.sse_parser: the body is fed to it in C
 *     on_done = function(err, status, code) end }
 *   req:cancel()  req:active()
 *   local p = http.sse_parser(function(ev) end)   -- ev.event/data/id/retry
 *   p:feed(bytes)  p:reset()  p:last_id()  p:close()
 *
 * One client (one curl multi handle, one connection cache) per process,
 * created on first use and freed when the Lua state closes. A request keeps
 * itself alive (registry reference) until on_done or cancel. */
#include "lorch.h"

#include "err.h"
#include "http.h"
#include "sse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LHTTP_REQ_MT "orch.http_request"
#define LHTTP_SSE_MT "orch.sse_parser"
#define LHTTP_CLIENT_MT "orch.http_client"

static orch_http *lhttp_client;

/* ------------------------------------------------------------ requests */

typedef struct lsse lsse;
struct lhttp_req;
static void lsse_feed_from(lua_State *L, lsse *s, struct lhttp_req *h,
                           const char *b, size_t n);
static void lsse_cancelled(lua_State *L, lsse *s, struct lhttp_req *h);

typedef struct lhttp_req {
    orch_http_req *req; /* NULL once done or cancelled */
    int self_ref;
    int headers_ref;
    int chunk_ref;
    int done_ref;
    int sse_ref;        /* opts.sse: the parser, fed in C */
    lsse *sse;
    double received;    /* body bytes so far */
} lhttp_req;

static void lhttp_unref_all(lua_State *L, lhttp_req *h)
{
    lorch_unref(L, &h->headers_ref);
    lorch_unref(L, &h->chunk_ref);
    lorch_unref(L, &h->done_ref);
    lorch_unref(L, &h->sse_ref);
    h->sse = NULL;
    lorch_unref(L, &h->self_ref);
}

static void lhttp_on_headers(orch_http_req *r, long status,
                             const orch_http_header *hd, size_t n, void *ud)
{
    lhttp_req *h = ud;
    lua_State *L = lorch_state();

    if (h->headers_ref == LUA_NOREF)
        return;
    lorch_push(L, h->headers_ref);
    lua_pushinteger(L, (lua_Integer)status);
    lua_createtable(L, 0, (int)n);
    for (size_t i = 0; i < n; i++) {
        /* A repeated header is joined with ", " (RFC 9110, 5.3). */
        lua_getfield(L, -1, hd[i].name);
        if (lua_isstring(L, -1))
            lua_pushfstring(L, "%s, %s", lua_tostring(L, -1), hd[i].value);
        else
            lua_pushstring(L, hd[i].value);
        lua_setfield(L, -3, hd[i].name);
        lua_pop(L, 1);
    }
    lorch_call(L, 2, 0);
}

static void lhttp_on_chunk(orch_http_req *r, const char *data, size_t len,
                           void *ud)
{
    lhttp_req *h = ud;
    lua_State *L = lorch_state();

    h->received += (double)len;
    /* opts.sse: bytes go to the parser without becoming a Lua string. The
     * request and the parser stay on the stack meanwhile: a cancel from an
     * event callback drops their references, and h must outlive this call */
    if (h->sse) {
        int top = lua_gettop(L);
        lorch_push(L, h->self_ref);
        lorch_push(L, h->sse_ref);
        lsse_feed_from(L, h->sse, h, data, len);
        if (h->chunk_ref != LUA_NOREF && h->req) {
            lorch_push(L, h->chunk_ref);
            lua_pushlstring(L, data, len);
            lorch_call(L, 1, 0);
        }
        lua_settop(L, top);
        return;
    }
    if (h->chunk_ref == LUA_NOREF)
        return;
    lorch_push(L, h->chunk_ref);
    lua_pushlstring(L, data, len);
    lorch_call(L, 1, 0);
}

static void lhttp_on_done(orch_http_req *r, int err, const char *msg,
                          long status, void *ud)
{
    lhttp_req *h = ud;
    lua_State *L = lorch_state();
    int self = h->self_ref;
    int has_fn = h->done_ref != LUA_NOREF;

    h->req = NULL;
    if (has_fn) {
        lorch_push(L, h->done_ref);
        if (err) {
            lua_pushstring(L, msg && *msg ? msg : strerror(-err));
        } else {
            lua_pushnil(L);
        }
        lua_pushinteger(L, (lua_Integer)status);
        if (err)
            lua_pushstring(L, uv_err_name(err));
        else
            lua_pushnil(L);
    }
    /* Everything but the self reference goes now; that one after the call,
     * so that `h` stays valid while the callback may still use the handle. */
    h->self_ref = LUA_NOREF;
    lhttp_unref_all(L, h);
    if (has_fn)
        lorch_call(L, 3, 0);
    lorch_unref(L, &self);
}

static const orch_http_callbacks lhttp_cbs = {
    lhttp_on_headers, lhttp_on_chunk, lhttp_on_done};

static orch_http *lhttp_get_client(lua_State *L)
{
    if (!lhttp_client) {
        lhttp_client = orch_http_new(lorch_loop());
        if (!lhttp_client)
            luaL_error(L, "%s", orch_err_msg());
    }
    return lhttp_client;
}

static int lhttp_fn_field(lua_State *L, int idx, const char *k)
{
    lua_getfield(L, idx, k);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return LUA_NOREF;
    }
    if (lua_type(L, -1) != LUA_TFUNCTION)
        luaL_error(L, "field '%s' must be a function", k);
    return lorch_ref(L);
}

static int lhttp_request(lua_State *L)
{
    orch_http_opts o;
    lhttp_req *h;
    const char **lines = NULL;
    size_t nlines = 0, cap = 0;
    int rc, tmp, udx;

    memset(&o, 0, sizeof o);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    o.url = lorch_opt_str_field(L, 1, "url", NULL);
    if (!o.url)
        return luaL_error(L, "http.request: field 'url' is required");
    o.method = lorch_opt_str_field(L, 1, "method", NULL);
    lua_getfield(L, 1, "body");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "field 'body' must be a string");
        o.body = lua_tolstring(L, -1, &o.body_len); /* kept on the stack */
    }
    o.connect_timeout_ms = (long)lorch_opt_int_field(L, 1, "connect_timeout", 0);
    o.idle_timeout_ms = (long)lorch_opt_int_field(L, 1, "idle_timeout", 0);
    o.timeout_ms = (long)lorch_opt_int_field(L, 1, "timeout", 0);
    if (o.connect_timeout_ms < 0 || o.idle_timeout_ms < 0 || o.timeout_ms < 0)
        return luaL_error(L, "http.request: negative timeout");

    /* Header lines, kept alive in a table at `tmp` until the start. */
    lua_newtable(L);
    tmp = lua_gettop(L);
    lua_getfield(L, 1, "headers");
    if (!lua_isnil(L, -1)) {
        if (!lua_istable(L, -1))
            return luaL_error(L, "field 'headers' must be a table");
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_type(L, -2) == LUA_TSTRING && lua_isstring(L, -1))
                lua_pushfstring(L, "%s: %s", lua_tostring(L, -2),
                                lua_tostring(L, -1));
            else if (lua_type(L, -2) == LUA_TNUMBER &&
                     lua_type(L, -1) == LUA_TSTRING)
                lua_pushvalue(L, -1); /* "Name: value" */
            else
                return luaL_error(L, "http.request: bad header entry");
            lua_rawseti(L, tmp, (int)++nlines);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    if (nlines) {
        cap = nlines;
        lines = lua_newuserdata(L, cap * sizeof *lines); /* freed by the GC */
        for (size_t i = 0; i < nlines; i++) {
            lua_rawgeti(L, tmp, (int)i + 1);
            lines[i] = lua_tostring(L, -1); /* anchored in tmp */
            lua_pop(L, 1);
        }
        o.headers = lines;
        o.nheaders = nlines;
    }

    h = lua_newuserdata(L, sizeof *h);
    udx = lua_gettop(L);
    h->req = NULL;
    h->self_ref = h->headers_ref = h->chunk_ref = h->done_ref = LUA_NOREF;
    h->sse_ref = LUA_NOREF;
    h->sse = NULL;
    h->received = 0;
    luaL_getmetatable(L, LHTTP_REQ_MT);
    lua_setmetatable(L, udx);
    lua_getfield(L, 1, "sse");
    if (!lua_isnil(L, -1)) {
        h->sse = luaL_checkudata(L, -1, LHTTP_SSE_MT);
        h->sse_ref = lorch_ref(L); /* keeps the parser alive */
    } else {
        lua_pop(L, 1);
    }
    h->headers_ref = lhttp_fn_field(L, 1, "on_headers");
    h->chunk_ref = lhttp_fn_field(L, 1, "on_chunk");
    h->done_ref = lhttp_fn_field(L, 1, "on_done");

    rc = orch_http_request_start(lhttp_get_client(L), &o, &lhttp_cbs, h,
                                 &h->req);
    if (rc < 0) {
        lhttp_unref_all(L, h);
        return lorch_fail(L, rc, orch_err_msg());
    }
    lua_pushvalue(L, udx);
    h->self_ref = lorch_ref(L);
    lua_pushvalue(L, udx);
    return 1;
}

static int lhttp_req_cancel(lua_State *L)
{
    lhttp_req *h = luaL_checkudata(L, 1, LHTTP_REQ_MT);

    if (!h->req) {
        lua_pushboolean(L, 0);
        return 1;
    }
    orch_http_cancel(h->req);
    h->req = NULL;
    if (h->sse)
        lsse_cancelled(L, h->sse, h);
    lhttp_unref_all(L, h); /* the handle is on the stack: safe */
    lua_pushboolean(L, 1);
    return 1;
}

static int lhttp_req_active(lua_State *L)
{
    lhttp_req *h = luaL_checkudata(L, 1, LHTTP_REQ_MT);
    lua_pushboolean(L, h->req != NULL);
    return 1;
}

/* Only reached when the state closes (an active request is referenced). */
static int lhttp_req_gc(lua_State *L)
{
    lhttp_req *h = luaL_checkudata(L, 1, LHTTP_REQ_MT);

    if (h->req && lhttp_client)
        orch_http_cancel(h->req);
    h->req = NULL;
    /* a request refused after its callbacks were referenced */
    lhttp_unref_all(L, h);
    return 0;
}

/* req:received() -> body bytes received so far */
static int lhttp_req_received(lua_State *L)
{
    lhttp_req *h = luaL_checkudata(L, 1, LHTTP_REQ_MT);
    lua_pushnumber(L, h->received);
    return 1;
}

static const luaL_Reg lhttp_req_methods[] = {
    {"received", lhttp_req_received},
    {"cancel", lhttp_req_cancel},
    {"active", lhttp_req_active},
    {"__gc", lhttp_req_gc},
    {NULL, NULL},
};

static int lhttp_client_gc(lua_State *L)
{
    orch_http *c = lhttp_client;

    lhttp_client = NULL;
    orch_http_free(c);
    return 0;
}

/* ------------------------------------------------------------ SSE parser */

struct lsse {
    orch_sse *p;
    lua_State *L; /* the state feeding, during feed */
    int fn_ref;
    int batch_ref; /* the batch table (see lsse_drive_src) */
    int bidx;      /* its stack index during feed */
    int nbatch;    /* events waiting in it */
    int stop_set;  /* batch.stop was set */
    int feeding;
    int close_pending;
    struct lhttp_req *from; /* the request feeding it in C, during that feed */
};

/* Events are delivered in batches: the C parser's callback only stores an
 * event's fields in the parser's batch table (four slots per event: the type
 * or nil for 'message', data, id, retry), and one protected call of this Lua
 * function then hands up to LSSE_BATCH of them to the user's callback, each
 * in its own table. A table constructor with constant keys is one template
 * copy in Lua, far cheaper than lua_setfield from C, and a Lua loop calling
 * Lua is compiled by the JIT where a call from C per event is not. The loop
 * empties the slots as it goes, records in b.pos how far it got (after an
 * error in the callback the rest of the batch is still delivered) and stops
 * at once when b.stop is set (the parser closed or its request cancelled
 * from the callback). */
static const char lsse_drive_src[] =
    "return function(fn, b, i, n)\n"
    "  while i < n do\n"
    "    local k = i * 4\n"
    "    i = i + 1\n"
    "    b.pos = i\n"
    "    local event, data, id, retry = b[k + 1], b[k + 2], b[k + 3], b[k + 4]\n"
    "    b[k + 1], b[k + 2], b[k + 3], b[k + 4] = nil, nil, nil, nil\n"
    "    fn({event = event or 'message', data = data, id = id, retry = retry})\n"
    "    if b.stop then return end\n"
    "  end\n"
    "end";
static int lsse_drive_ref = LUA_NOREF;

/* Events per call of the drive function: bounds what a batch holds. */
#define LSSE_BATCH 256

/* Whether the events must stop: closed from a callback, or the request
 * feeding the parser cancelled. */
static int lsse_stopped(const lsse *s)
{
    return s->close_pending || (s->from && !s->from->req);
}

/* Hands the batched events to the callback; 1 if the events must stop. */
static int lsse_flush(lsse *s)
{
    lua_State *L = s->L;
    int n = s->nbatch, pos = 0;

    s->nbatch = 0;
    while (pos < n) {
        int next;

        lorch_push(L, lsse_drive_ref);
        lorch_push(L, s->fn_ref);
        lua_pushvalue(L, s->bidx);
        lua_pushinteger(L, pos);
        lua_pushinteger(L, n);
        if (lorch_call(L, 4, 0) == 0 || lsse_stopped(s))
            break;
        /* the callback raised (reported): go on after that event */
        lua_getfield(L, s->bidx, "pos");
        next = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (next <= pos)
            break;
        pos = next;
    }
    if (!lsse_stopped(s))
        return 0;
    /* drop what the stop left in the batch */
    for (int i = 1; i <= 4 * n; i++) {
        lua_pushnil(L);
        lua_rawseti(L, s->bidx, i);
    }
    return 1;
}

static int lsse_event(const orch_sse_event *ev, void *ud)
{
    lsse *s = ud;
    lua_State *L = s->L;
    int k = s->nbatch * 4, b = s->bidx;

    if (ev->type_len != 7 || memcmp(ev->type, "message", 7) != 0) {
        lua_pushlstring(L, ev->type, ev->type_len);
        lua_rawseti(L, b, k + 1);
    }
    lua_pushlstring(L, ev->data, ev->data_len);
    lua_rawseti(L, b, k + 2);
    if (ev->id_len) {
        lua_pushlstring(L, ev->id, ev->id_len);
        lua_rawseti(L, b, k + 3);
    }
    if (ev->retry >= 0) {
        lua_pushinteger(L, (lua_Integer)ev->retry);
        lua_rawseti(L, b, k + 4);
    }
    if (++s->nbatch < LSSE_BATCH)
        return 0;
    return lsse_flush(s);
}

/* Marks the batch being delivered as stopped (see lsse_drive_src). */
static void lsse_mark_stop(lua_State *L, lsse *s)
{
    if (s->batch_ref == LUA_NOREF)
        return;
    lorch_push(L, s->batch_ref);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "stop");
    lua_pop(L, 1);
    s->stop_set = 1;
}

static void lsse_close(lua_State *L, lsse *s)
{
    orch_sse_free(s->p);
    s->p = NULL;
    lorch_unref(L, &s->fn_ref);
    lorch_unref(L, &s->batch_ref);
}

static lsse *lsse_check(lua_State *L)
{
    lsse *s = luaL_checkudata(L, 1, LHTTP_SSE_MT);
    lorch_check_open(L, s->p != NULL && !s->close_pending, "sse parser");
    return s;
}

static int lhttp_sse_parser(lua_State *L)
{
    lsse *s;

    luaL_checktype(L, 1, LUA_TFUNCTION);
    s = lua_newuserdata(L, sizeof *s);
    memset(s, 0, sizeof *s);
    s->fn_ref = s->batch_ref = LUA_NOREF;
    luaL_getmetatable(L, LHTTP_SSE_MT);
    lua_setmetatable(L, -2);
    s->p = orch_sse_new(lsse_event, s);
    if (!s->p)
        return luaL_error(L, "%s", orch_err_msg());
    lua_pushvalue(L, 1);
    s->fn_ref = lorch_ref(L);
    lua_createtable(L, 4 * LSSE_BATCH, 2);
    s->batch_ref = lorch_ref(L);
    return 1;
}

/* Feeds bytes to s (events call back into Lua); 1 if the parser was closed
 * from a callback (or already), 0 when done, a negative errno on failure
 * (-EBUSY when called from inside the parser's own callback). Never raises:
 * it also runs from curl's write callback. */
static int lsse_feed_bytes(lua_State *L, lsse *s, const char *b, size_t n)
{
    lua_State *prev = s->L;
    int prev_bidx = s->bidx;
    int top = lua_gettop(L);
    int rc;

    if (!s->p || s->close_pending)
        return 1;
    if (s->feeding)
        return -EBUSY;
    s->feeding = 1;
    s->L = L;
    lorch_push(L, s->batch_ref);
    s->bidx = lua_gettop(L);
    if (s->stop_set) {
        lua_pushnil(L);
        lua_setfield(L, s->bidx, "stop");
        s->stop_set = 0;
    }
    rc = orch_sse_feed(s->p, b, n);
    if (rc == 0 && s->nbatch > 0)
        rc = lsse_flush(s);
    s->nbatch = 0;
    lua_settop(L, top);
    s->L = prev;
    s->bidx = prev_bidx;
    s->feeding = 0;
    if (s->close_pending) {
        lsse_close(L, s);
        return 1;
    }
    return rc < 0 ? rc : 0;
}

/* The request h was cancelled: if it is feeding s (the cancel came from one
 * of s's events), the batch being delivered stops. */
static void lsse_cancelled(lua_State *L, lsse *s, struct lhttp_req *h)
{
    if (s->from == h)
        lsse_mark_stop(L, s);
}

static void lsse_feed_from(lua_State *L, lsse *s, struct lhttp_req *h,
                           const char *b, size_t n)
{
    if (s->from)
        return; /* already fed by a request up the stack */
    s->from = h;
    lsse_feed_bytes(L, s, b, n);
    s->from = NULL;
}

static int lsse_feed(lua_State *L)
{
    lsse *s = lsse_check(L);
    size_t n;
    const char *b = luaL_checklstring(L, 2, &n);
    int rc = lsse_feed_bytes(L, s, b, n);

    if (rc == -EBUSY)
        return luaL_error(L, "sse parser: feed from inside its own callback");
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushboolean(L, 1);
    return 1;
}

static int lsse_reset(lua_State *L)
{
    lsse *s = lsse_check(L);

    if (s->feeding)
        return luaL_error(L, "sse parser: reset from inside its own callback");
    orch_sse_reset(s->p);
    return 0;
}

static int lsse_last_id(lua_State *L)
{
    lsse *s = lsse_check(L);
    lua_pushstring(L, orch_sse_last_id(s->p));
    return 1;
}

static int lsse_close_m(lua_State *L)
{
    lsse *s = luaL_checkudata(L, 1, LHTTP_SSE_MT);

    if (s->feeding) {
        s->close_pending = 1;
        lsse_mark_stop(L, s);
    } else if (s->p) {
        lsse_close(L, s);
    }
    return 0;
}

static int lsse_gc(lua_State *L)
{
    lsse *s = luaL_checkudata(L, 1, LHTTP_SSE_MT);

    orch_sse_free(s->p);
    s->p = NULL;
    lorch_unref(L, &s->fn_ref); /* the registry outlives every finalizer */
    lorch_unref(L, &s->batch_ref);
    return 0;
}

static const luaL_Reg lsse_methods[] = {
    {"feed", lsse_feed},
    {"reset", lsse_reset},
    {"last_id", lsse_last_id},
    {"close", lsse_close_m},
    {"__gc", lsse_gc},
    {NULL, NULL},
};

/* ------------------------------------------------------------ module */

static int lhttp_active(lua_State *L)
{
    lua_pushinteger(L, lhttp_client ? (lua_Integer)orch_http_active(lhttp_client)
                                    : 0);
    return 1;
}

static const luaL_Reg lhttp_fns[] = {
    {"request", lhttp_request},
    {"sse_parser", lhttp_sse_parser},
    {"active", lhttp_active},
    {NULL, NULL},
};

int lorch_open_http(lua_State *L)
{
    static const luaL_Reg client_methods[] = {{"__gc", lhttp_client_gc},
                                              {NULL, NULL}};

    lorch_class(L, LHTTP_REQ_MT, lhttp_req_methods);
    lua_pop(L, 1);
    lorch_class(L, LHTTP_SSE_MT, lsse_methods);
    lua_pop(L, 1);
    /* A sentinel in the registry whose __gc frees the client when the state
     * closes. */
    lorch_class(L, LHTTP_CLIENT_MT, client_methods);
    lua_newuserdata(L, 1);
    lua_pushvalue(L, -2);
    lua_setmetatable(L, -2);
    luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    if (lsse_drive_ref == LUA_NOREF) {
        if (luaL_loadstring(L, lsse_drive_src) != 0)
            return lua_error(L);
        lua_call(L, 0, 1);
        lsse_drive_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_newtable(L);
    luaL_register(L, NULL, lhttp_fns);
    return 1;
}
