/* ltimer.c - orch.core.timer: one-shot and repeating timers on the loop.
 *
 *   local t = core.timer(ms, [repeat_ms,] fn)   -- started at once
 *   t:stop()  t:start(ms, [repeat_ms,] [fn])  t:active()  t:close()
 *
 * The C handle is allocated apart from the userdata so that a collected
 * userdata can close it asynchronously. While active a timer keeps itself
 * alive, so `core.timer(100, fn)` with the result dropped still fires. */
#include "lorch.h"

#include <stdlib.h>

#define LTIMER_MT "orch.timer"

typedef struct ltimer {
    uv_timer_t h;
    int fn_ref;
    int self_ref;
} ltimer;

typedef struct ltimer_ud {
    ltimer *t;
} ltimer_ud;

static void ltimer_free(uv_handle_t *h)
{
    free(h->data);
}

static void ltimer_release(lua_State *L, ltimer *t)
{
    lorch_unref(L, &t->self_ref);
}

static void ltimer_fire(uv_timer_t *h)
{
    ltimer *t = h->data;
    lua_State *L = lorch_state();
    int oneshot = uv_timer_get_repeat(h) == 0;
    int self = t->self_ref;

    /* A one-shot timer is no longer active: its self reference goes after
     * the call (which may restart it, taking a new one). */
    if (oneshot)
        t->self_ref = LUA_NOREF;
    lorch_push(L, t->fn_ref);
    lorch_call(L, 0, 0);
    if (oneshot)
        lorch_unref(L, &self);
}

static ltimer *ltimer_check(lua_State *L, int idx)
{
    ltimer_ud *u = luaL_checkudata(L, idx, LTIMER_MT);
    lorch_check_open(L, u->t != NULL, "timer");
    return u->t;
}

static int ltimer_start_at(lua_State *L, ltimer *t, int udx, int arg)
{
    lua_Integer ms = luaL_checkinteger(L, arg);
    lua_Integer rep = 0;
    int fnidx = arg + 1;

    if (lua_type(L, arg + 1) == LUA_TNUMBER) {
        rep = lua_tointeger(L, arg + 1);
        fnidx = arg + 2;
    }
    luaL_argcheck(L, ms >= 0 && rep >= 0, arg, "negative time");
    if (!lua_isnoneornil(L, fnidx)) {
        luaL_checktype(L, fnidx, LUA_TFUNCTION);
        lorch_unref(L, &t->fn_ref);
        lua_pushvalue(L, fnidx);
        t->fn_ref = lorch_ref(L);
    }
    if (t->fn_ref == LUA_NOREF)
        luaL_argerror(L, fnidx, "function expected");
    if (t->self_ref == LUA_NOREF) {
        lua_pushvalue(L, udx);
        t->self_ref = lorch_ref(L);
    }
    uv_timer_start(&t->h, ltimer_fire, (uint64_t)ms, (uint64_t)rep);
    return 0;
}

static int ltimer_new(lua_State *L)
{
    ltimer_ud *u = lua_newuserdata(L, sizeof *u);
    int udx = lua_gettop(L);
    ltimer *t;

    u->t = NULL;
    luaL_getmetatable(L, LTIMER_MT);
    lua_setmetatable(L, -2);
    t = calloc(1, sizeof *t);
    if (!t)
        return luaL_error(L, "out of memory");
    t->fn_ref = t->self_ref = LUA_NOREF;
    uv_timer_init(lorch_loop(), &t->h);
    t->h.data = t;
    u->t = t;
    ltimer_start_at(L, t, udx, 1);
    lua_pushvalue(L, udx);
    return 1;
}

static int ltimer_m_start(lua_State *L)
{
    ltimer *t = ltimer_check(L, 1);
    ltimer_start_at(L, t, 1, 2);
    lua_settop(L, 1);
    return 1;
}

static int ltimer_m_stop(lua_State *L)
{
    ltimer *t = ltimer_check(L, 1);
    uv_timer_stop(&t->h);
    ltimer_release(L, t);
    return 0;
}

static int ltimer_m_active(lua_State *L)
{
    ltimer *t = ltimer_check(L, 1);
    lua_pushboolean(L, uv_is_active((uv_handle_t *)&t->h));
    return 1;
}

static void ltimer_close(lua_State *L, ltimer_ud *u)
{
    ltimer *t = u->t;
    if (!t)
        return;
    u->t = NULL;
    uv_timer_stop(&t->h);
    lorch_unref(L, &t->fn_ref);
    lorch_unref(L, &t->self_ref);
    uv_close((uv_handle_t *)&t->h, ltimer_free);
}

static int ltimer_m_close(lua_State *L)
{
    ltimer_close(L, luaL_checkudata(L, 1, LTIMER_MT));
    return 0;
}

static const luaL_Reg ltimer_methods[] = {
    {"start", ltimer_m_start},
    {"stop", ltimer_m_stop},
    {"active", ltimer_m_active},
    {"close", ltimer_m_close},
    {"__gc", ltimer_m_close},
    {NULL, NULL},
};

int lorch_open_timer(lua_State *L)
{
    lorch_class(L, LTIMER_MT, ltimer_methods);
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, ltimer_new);
    lua_setfield(L, -2, "timer");
    return 1;
}
