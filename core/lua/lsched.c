/* lsched.c - orch.core.sched: the DAG scheduler (core/sched.h) for Lua.
 *
 *   local s = sched.new{concurrency = 4}
 *   s:add(id, {deps = {...}, files = {...}, weight = 1})
 *   local ok, errs = s:check()      -- true | nil, {{kind=, ids={}, msg=}}
 *   while true do local id = s:next(); if not id then break end; start(id) end
 *   local blocked = s:finish(id, "done" | "failed" | "soft" | "skipped")
 *
 * Tasks are named by their id strings everywhere. Misuse (an unknown id,
 * finishing a task that is not running, next() on a graph that does not
 * check) raises; a duplicate or bad id in add() returns nil, msg, code. */
#include "lorch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "sched.h"

#define LSCHED_MT "orch.sched"

typedef struct lsched {
    orch_sched *s;
} lsched;

static orch_sched *lsched_check(lua_State *L, int idx)
{
    lsched *u = luaL_checkudata(L, idx, LSCHED_MT);
    lorch_check_open(L, u->s != NULL, "sched");
    return u->s;
}

static int lsched_task(lua_State *L, orch_sched *s, int idx)
{
    const char *id = luaL_checkstring(L, idx);
    int t = orch_sched_find(s, id);
    if (t < 0)
        luaL_error(L, "sched: unknown task '%s'", id);
    return t;
}

static int lsched_new(lua_State *L)
{
    lua_Integer conc = 4;
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        conc = lorch_opt_int_field(L, 1, "concurrency", 4);
    }
    luaL_argcheck(L, conc >= 0 && conc <= 1000000, 1, "bad concurrency");
    lsched *u = lua_newuserdata(L, sizeof *u);
    u->s = NULL;
    luaL_getmetatable(L, LSCHED_MT);
    lua_setmetatable(L, -2);
    if (!(u->s = orch_sched_new((int)conc)))
        return luaL_error(L, "sched: out of memory");
    return 1;
}

static int lsched_gc(lua_State *L)
{
    lsched *u = luaL_checkudata(L, 1, LSCHED_MT);
    orch_sched_free(u->s);
    u->s = NULL;
    return 0;
}

/* Reads the list of strings in field k of the table at idx into *out (a
 * new array; the strings stay alive in that table, which is left on the
 * stack); *n gets its length. Returns an error message or NULL. */
static const char *lsched_strlist(lua_State *L, int idx, const char *k,
                                  const char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    lua_getfield(L, idx, k);
    if (lua_isnil(L, -1))
        return NULL;
    if (!lua_istable(L, -1))
        return "must be a list of strings";
    size_t len = lua_objlen(L, -1);
    if (len == 0)
        return NULL;
    const char **v = calloc(len, sizeof *v);
    if (!v)
        return "out of memory";
    for (size_t i = 0; i < len; i++) {
        size_t sl = 0;
        lua_rawgeti(L, -1, (int)i + 1);
        const char *str = lua_type(L, -1) == LUA_TSTRING
                              ? lua_tolstring(L, -1, &sl) : NULL;
        lua_pop(L, 1);
        if (!str || strlen(str) != sl) {
            free(v);
            return "must be a list of strings";
        }
        v[i] = str;
    }
    *out = v;
    *n = len;
    return NULL;
}

static int lsched_add(lua_State *L)
{
    orch_sched *s = lsched_check(L, 1);
    size_t idlen, ndeps = 0, nfiles = 0;
    const char *id = luaL_checklstring(L, 2, &idlen);
    const char **deps = NULL, **files = NULL, *bad = NULL, *field = NULL;
    double weight = 1;

    luaL_argcheck(L, strlen(id) == idlen, 2, "id contains a NUL byte");
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_getfield(L, 3, "weight");
        if (!lua_isnil(L, -1)) {
            if (!lua_isnumber(L, -1))
                return luaL_error(L, "sched: 'weight' must be a number");
            weight = lua_tonumber(L, -1);
        }
        lua_pop(L, 1);
        if ((bad = lsched_strlist(L, 3, "deps", &deps, &ndeps)) != NULL)
            field = "deps";
        else if ((bad = lsched_strlist(L, 3, "files", &files, &nfiles)))
            field = "files";
    }
    if (bad) {
        free(deps);
        return luaL_error(L, "sched: task '%s': '%s' %s", id, field, bad);
    }
    int rc = orch_sched_add(s, id, deps, ndeps, files, nfiles, weight);
    free(deps);
    free(files);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushboolean(L, 1);
    return 1;
}

static void lsched_push_ids(lua_State *L, const char **ids, int n)
{
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushstring(L, ids[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

static void lsched_push_error(lua_State *L, const orch_sched_error *e)
{
    lua_createtable(L, 0, 3);
    lua_pushstring(L, orch_sched_errkind_name(e->kind));
    lua_setfield(L, -2, "kind");
    lsched_push_ids(L, e->ids, e->n);
    lua_setfield(L, -2, "ids");
    switch (e->kind) {
    case ORCH_SCHED_EDUP:
        lua_pushfstring(L, "duplicate task id '%s'", e->ids[0]);
        break;
    case ORCH_SCHED_EEMPTY:
        lua_pushstring(L, "empty task id");
        break;
    case ORCH_SCHED_EUNKNOWN:
        lua_pushfstring(L, "task '%s' depends on unknown task '%s'",
                        e->ids[0], e->ids[1]);
        break;
    case ORCH_SCHED_ESELF:
        lua_pushfstring(L, "task '%s' depends on itself", e->ids[0]);
        break;
    case ORCH_SCHED_ECYCLE: {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        luaL_addstring(&b, "dependency cycle: ");
        /* shown as the order the tasks wait on each other */
        for (int i = 0; i < e->n && i < 50; i++) {
            luaL_addstring(&b, e->ids[i]);
            luaL_addstring(&b, " -> ");
        }
        if (e->n > 50)
            luaL_addstring(&b, "... -> ");
        luaL_addstring(&b, e->ids[0]);
        luaL_pushresult(&b);
        break;
    }
    default:
        lua_pushstring(L, "invalid plan");
    }
    lua_setfield(L, -2, "msg");
}

static int lsched_check_graph(lua_State *L)
{
    orch_sched *s = lsched_check(L, 1);
    int rc = orch_sched_check(s);
    if (rc == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (rc != -EINVAL)
        return lorch_fail(L, rc, orch_err_msg());
    int n = orch_sched_error_count(s);
    lua_pushnil(L);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lsched_push_error(L, orch_sched_error_at(s, i));
        lua_rawseti(L, -2, i + 1);
    }
    return 2;
}

static int lsched_next(lua_State *L)
{
    orch_sched *s = lsched_check(L, 1);
    int t = orch_sched_next(s);
    if (t == -EAGAIN) {
        lua_pushnil(L);
        return 1;
    }
    if (t < 0)
        return luaL_error(L, "sched: the graph does not check; call "
                             "check() and fix its errors first");
    lua_pushstring(L, orch_sched_id(s, t));
    return 1;
}

static void lsched_push_blocked(lua_State *L, orch_sched *s)
{
    int n;
    const int *b = orch_sched_blocked(s, &n);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushstring(L, orch_sched_id(s, b[i]));
        lua_rawseti(L, -2, i + 1);
    }
}

static int lsched_finish(lua_State *L)
{
    static const char *const names[] = { "done", "failed", "hard", "soft",
                                         "skipped", "skip", NULL };
    static const orch_outcome outs[] = {
        ORCH_OUT_DONE,        ORCH_OUT_FAILED,  ORCH_OUT_FAILED,
        ORCH_OUT_FAILED_SOFT, ORCH_OUT_SKIPPED, ORCH_OUT_SKIPPED
    };
    orch_sched *s = lsched_check(L, 1);
    int t = lsched_task(L, s, 2);
    int o = luaL_checkoption(L, 3, "done", names);
    if (orch_sched_finish(s, t, outs[o]) < 0)
        return luaL_error(L, "sched: %s", orch_err_msg());
    lsched_push_blocked(L, s);
    return 1;
}

static int lsched_cancel(lua_State *L)
{
    orch_sched *s = lsched_check(L, 1);
    int t = lsched_task(L, s, 2);
    if (orch_sched_cancel(s, t) < 0)
        return luaL_error(L, "sched: %s", orch_err_msg());
    lsched_push_blocked(L, s);
    return 1;
}

typedef int (*lsched_op)(orch_sched *, int);

static int lsched_do(lua_State *L, lsched_op op)
{
    orch_sched *s = lsched_check(L, 1);
    int t = lsched_task(L, s, 2);
    if (op(s, t) < 0)
        return luaL_error(L, "sched: %s", orch_err_msg());
    lua_pushboolean(L, 1);
    return 1;
}

static int lsched_mark_done(lua_State *L)
{
    return lsched_do(L, orch_sched_mark_done);
}

static int lsched_pause(lua_State *L)
{
    return lsched_do(L, orch_sched_pause);
}

static int lsched_resume(lua_State *L)
{
    return lsched_do(L, orch_sched_resume);
}

static int lsched_requeue(lua_State *L)
{
    return lsched_do(L, orch_sched_requeue);
}

static int lsched_set_concurrency(lua_State *L)
{
    orch_sched *s = lsched_check(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0 && n <= 1000000, 2, "bad concurrency");
    orch_sched_set_concurrency(s, (int)n);
    return 0;
}

static int lsched_concurrency(lua_State *L)
{
    lua_pushinteger(L, orch_sched_concurrency(lsched_check(L, 1)));
    return 1;
}

static int lsched_state(lua_State *L)
{
    orch_sched *s = lsched_check(L, 1);
    int t = orch_sched_find(s, luaL_checkstring(L, 2));
    if (t < 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushstring(L, orch_sched_state_name(orch_sched_state(s, t)));
    return 1;
}

static int lsched_info(lua_State *L)
{
    orch_sched *s = lsched_check(L, 1);
    int t = orch_sched_find(s, luaL_checkstring(L, 2));
    if (t < 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_createtable(L, 0, 6);
    lua_pushstring(L, orch_sched_state_name(orch_sched_state(s, t)));
    lua_setfield(L, -2, "state");
    lua_pushboolean(L, orch_sched_soft(s, t));
    lua_setfield(L, -2, "soft");
    lua_pushboolean(L, orch_sched_paused(s, t));
    lua_setfield(L, -2, "paused");
    lua_pushboolean(L, orch_sched_waiting(s, t));
    lua_setfield(L, -2, "waiting");
    lua_pushnumber(L, orch_sched_priority(s, t));
    lua_setfield(L, -2, "priority");
    lua_pushinteger(L, t + 1);
    lua_setfield(L, -2, "index");
    return 1;
}

static int lsched_counts(lua_State *L)
{
    orch_sched *s = lsched_check(L, 1);
    int counts[ORCH_TASK__COUNT];
    orch_sched_counts(s, counts);
    lua_createtable(L, 0, ORCH_TASK__COUNT + 3);
    for (int i = 0; i < ORCH_TASK__COUNT; i++) {
        lua_pushinteger(L, counts[i]);
        lua_setfield(L, -2, orch_sched_state_name((orch_task_state)i));
    }
    lua_pushinteger(L, orch_sched_size(s));
    lua_setfield(L, -2, "total");
    /* failed softly: counted in `failed` too; failed - soft failed hard */
    int soft = 0;
    for (int i = 0; i < orch_sched_size(s); i++)
        soft += orch_sched_state(s, i) == ORCH_TASK_FAILED && orch_sched_soft(s, i);
    lua_pushinteger(L, soft);
    lua_setfield(L, -2, "soft");
    lua_pushinteger(L, orch_sched_active(s));
    lua_setfield(L, -2, "active");
    return 1;
}

static int lsched_active(lua_State *L)
{
    lua_pushinteger(L, orch_sched_active(lsched_check(L, 1)));
    return 1;
}

/* tasks([state]) -> list of {id=, state=} in the order they were added (or
 * just the ids in that state when a state is given). */
static int lsched_tasks(lua_State *L)
{
    orch_sched *s = lsched_check(L, 1);
    const char *want = luaL_optstring(L, 2, NULL);
    int n = orch_sched_size(s), k = 0;
    lua_createtable(L, want ? 0 : n, 0);
    for (int i = 0; i < n; i++) {
        const char *st = orch_sched_state_name(orch_sched_state(s, i));
        if (want) {
            if (strcmp(st, want) != 0)
                continue;
            lua_pushstring(L, orch_sched_id(s, i));
        } else {
            lua_createtable(L, 0, 2);
            lua_pushstring(L, orch_sched_id(s, i));
            lua_setfield(L, -2, "id");
            lua_pushstring(L, st);
            lua_setfield(L, -2, "state");
        }
        lua_rawseti(L, -2, ++k);
    }
    return 1;
}

static int lsched_tostring(lua_State *L)
{
    lsched *u = luaL_checkudata(L, 1, LSCHED_MT);
    if (!u->s)
        lua_pushstring(L, "orch.sched (closed)");
    else
        lua_pushfstring(L, "orch.sched (%d tasks, %d active)",
                        orch_sched_size(u->s), orch_sched_active(u->s));
    return 1;
}

static const luaL_Reg lsched_methods[] = {
    {"add", lsched_add},
    {"check", lsched_check_graph},
    {"next", lsched_next},
    {"finish", lsched_finish},
    {"cancel", lsched_cancel},
    {"mark_done", lsched_mark_done},
    {"pause", lsched_pause},
    {"resume", lsched_resume},
    {"requeue", lsched_requeue},
    {"set_concurrency", lsched_set_concurrency},
    {"concurrency", lsched_concurrency},
    {"state", lsched_state},
    {"info", lsched_info},
    {"counts", lsched_counts},
    {"active", lsched_active},
    {"tasks", lsched_tasks},
    {"close", lsched_gc},
    {"__gc", lsched_gc},
    {"__tostring", lsched_tostring},
    {NULL, NULL},
};

int lorch_open_sched(lua_State *L)
{
    lorch_class(L, LSCHED_MT, lsched_methods);
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, lsched_new);
    lua_setfield(L, -2, "new");
    return 1;
}
