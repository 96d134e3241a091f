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
#include "lhandle.h"


#define LWATCH_MT "orch.watch"

#define LWATCH_FN 0

typedef struct lwatch {
    lorch_handle base;
    uv_fs_event_t h;
} lwatch;

static void lwatch_fire(uv_fs_event_t *h, const char *name, int events, int status)
{
    lwatch *w = h->data;
    lua_State *L = lorch_state();
    if (status < 0)
        return;
    lorch_handle_push(L, &w->base, LWATCH_FN);
    if (name)
        lua_pushstring(L, name);
    else
        lua_pushnil(L);
    lua_pushstring(L, (events & UV_RENAME) ? "rename" : "change");
    lorch_call(L, 2, 0);
}

static void lwatch_stop(lorch_handle *base)
{
    lwatch *w = (lwatch *)base;
    uv_fs_event_stop(&w->h);
    lorch_handle_uv_close(base, (uv_handle_t *)&w->h);
}

static int lwatch_new(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lwatch *w;
    int rc;

    luaL_checktype(L, 2, LUA_TFUNCTION);
    w = lorch_handle_new(L, LWATCH_MT, sizeof *w, lwatch_stop);
    uv_fs_event_init(lorch_loop(), &w->h);
    w->h.data = w;
    rc = uv_fs_event_start(&w->h, lwatch_fire, path, 0);
    if (rc < 0) {
        lorch_handle_close(L, -1, LWATCH_MT);
        return lorch_fail(L, rc, lua_pushfstring(L, "watch %s: %s", path, uv_strerror(rc)));
    }
    uv_unref((uv_handle_t *)&w->h);
    lorch_handle_ref(L, &w->base, LWATCH_FN, 2);
    lorch_handle_keep(L, &w->base, -1);
    return 1;
}

static int lwatch_close(lua_State *L)
{
    lorch_handle_close(L, 1, LWATCH_MT);
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
