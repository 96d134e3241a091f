/* ltimer.c - orch.core.timer: one-shot and repeating timers on the loop.
 *
 *   local t = core.timer(ms, [repeat_ms,] fn)   -- started at once
 *   t:stop()  t:start(ms, [repeat_ms,] [fn])  t:active()  t:close()
 *
 * A handle binding (lhandle.h): while active a timer keeps itself alive, so
 * `core.timer(100, fn)` with the result dropped still fires. */
#include "lhandle.h"

#define LTIMER_MT "orch.timer"
#define LTIMER_FN 0

typedef struct ltimer {
    lorch_handle base;
    uv_timer_t h;
} ltimer;

static void ltimer_fire(uv_timer_t *h)
{
    ltimer *t = h->data;
    lua_State *L = lorch_state();
    int oneshot = uv_timer_get_repeat(h) == 0;
    int self = t->base.self_ref;

    /* A one-shot timer is no longer active: its self reference goes after
     * the call (which may restart it, taking a new one). */
    if (oneshot)
        t->base.self_ref = LUA_NOREF;
    lorch_handle_push(L, &t->base, LTIMER_FN);
    lorch_call(L, 0, 0);
    if (oneshot)
        lorch_unref(L, &self);
}

static void ltimer_close(lorch_handle *base)
{
    ltimer *t = (ltimer *)base;
    uv_timer_stop(&t->h);
    lorch_handle_uv_close(base, (uv_handle_t *)&t->h);
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
        lorch_handle_ref(L, &t->base, LTIMER_FN, fnidx);
    }
    if (t->base.refs[LTIMER_FN] == LUA_NOREF)
        luaL_argerror(L, fnidx, "function expected");
    lorch_handle_keep(L, &t->base, udx);
    uv_timer_start(&t->h, ltimer_fire, (uint64_t)ms, (uint64_t)rep);
    return 0;
}

static int ltimer_new(lua_State *L)
{
    ltimer *t = lorch_handle_new(L, LTIMER_MT, sizeof *t, ltimer_close);
    int udx = lua_gettop(L);

    uv_timer_init(lorch_loop(), &t->h);
    t->h.data = t;
    ltimer_start_at(L, t, udx, 1);
    lua_pushvalue(L, udx);
    return 1;
}

static ltimer *ltimer_check(lua_State *L)
{
    return lorch_handle_check(L, 1, LTIMER_MT, "timer");
}

static int ltimer_m_start(lua_State *L)
{
    ltimer *t = ltimer_check(L);
    ltimer_start_at(L, t, 1, 2);
    lua_settop(L, 1);
    return 1;
}

static int ltimer_m_stop(lua_State *L)
{
    ltimer *t = ltimer_check(L);
    uv_timer_stop(&t->h);
    lorch_handle_release(L, &t->base);
    return 0;
}

static int ltimer_m_active(lua_State *L)
{
    ltimer *t = ltimer_check(L);
    lua_pushboolean(L, uv_is_active((uv_handle_t *)&t->h));
    return 1;
}

static int ltimer_m_close(lua_State *L)
{
    lorch_handle_close(L, 1, LTIMER_MT);
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
