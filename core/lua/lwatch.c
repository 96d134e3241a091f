/* lwatch.c - orch.core.watch: file-system change events (inotify through
 * libuv), the mechanism under hot reload of roles, workflows and config.
 *
 *   local w, err = core.watch(path, function(name, change) ... end)
 *   w:close()
 *
 * path is a file or a directory (its direct entries are watched); name is
 * the entry that changed (or nil), change is "change" or "rename". Events
 * come in bursts (an editor's save is several): debounce in Lua. A watcher
 * does not keep the loop alive. */
#include "lorch.h"

#include <stdlib.h>

#define LWATCH_MT "orch.watch"

typedef struct lwatch {
    uv_fs_event_t h;
    int fn_ref;
    int self_ref;
} lwatch;

typedef struct lwatch_ud {
    lwatch *w;
} lwatch_ud;

static void lwatch_free(uv_handle_t *h)
{
    free(h->data);
}

static void lwatch_fire(uv_fs_event_t *h, const char *name, int events, int status)
{
    lwatch *w = h->data;
    lua_State *L = lorch_state();
    if (status < 0)
        return;
    lorch_push(L, w->fn_ref);
    if (name)
        lua_pushstring(L, name);
    else
        lua_pushnil(L);
    lua_pushstring(L, (events & UV_RENAME) ? "rename" : "change");
    lorch_call(L, 2, 0);
}

static int lwatch_new(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lwatch_ud *u;
    lwatch *w;
    int rc;

    luaL_checktype(L, 2, LUA_TFUNCTION);
    u = lua_newuserdata(L, sizeof *u);
    u->w = NULL;
    luaL_getmetatable(L, LWATCH_MT);
    lua_setmetatable(L, -2);
    w = calloc(1, sizeof *w);
    if (!w)
        return luaL_error(L, "out of memory");
    w->fn_ref = w->self_ref = LUA_NOREF;
    uv_fs_event_init(lorch_loop(), &w->h);
    w->h.data = w;
    rc = uv_fs_event_start(&w->h, lwatch_fire, path, 0);
    if (rc < 0) {
        uv_close((uv_handle_t *)&w->h, lwatch_free);
        return lorch_fail(L, rc, lua_pushfstring(L, "watch %s: %s", path, uv_strerror(rc)));
    }
    uv_unref((uv_handle_t *)&w->h);
    u->w = w;
    lua_pushvalue(L, 2);
    w->fn_ref = lorch_ref(L);
    lua_pushvalue(L, -1);
    w->self_ref = lorch_ref(L);
    return 1;
}

static int lwatch_close(lua_State *L)
{
    lwatch_ud *u = luaL_checkudata(L, 1, LWATCH_MT);
    lwatch *w = u->w;
    if (!w)
        return 0;
    u->w = NULL;
    uv_fs_event_stop(&w->h);
    lorch_unref(L, &w->fn_ref);
    lorch_unref(L, &w->self_ref);
    uv_close((uv_handle_t *)&w->h, lwatch_free);
    return 0;
}

static const luaL_Reg lwatch_methods[] = {
    {"close", lwatch_close},
    {"__gc", lwatch_close},
    {NULL, NULL},
};

int lorch_open_watch(lua_State *L)
{
    lorch_class(L, LWATCH_MT, lwatch_methods);
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, lwatch_new);
    lua_setfield(L, -2, "watch");
    return 1;
}
