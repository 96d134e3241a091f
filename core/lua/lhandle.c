/* lhandle.c - the shared bookkeeping of handle bindings (see lhandle.h). */
#include "lhandle.h"

#include <stdlib.h>

typedef struct lorch_handle_ud {
    lorch_handle *h;
} lorch_handle_ud;

void *lorch_handle_new(lua_State *L, const char *mt, size_t size,
                       void (*close)(lorch_handle *h))
{
    lorch_handle_ud *u = lua_newuserdata(L, sizeof *u);
    lorch_handle *h;

    u->h = NULL;
    luaL_getmetatable(L, mt);
    lua_setmetatable(L, -2);
    h = calloc(1, size);
    if (!h) {
        luaL_error(L, "out of memory");
        return NULL;
    }
    h->self_ref = LUA_NOREF;
    for (int i = 0; i < LORCH_HANDLE_REFS; i++)
        h->refs[i] = LUA_NOREF;
    h->close = close;
    u->h = h;
    return h;
}

void *lorch_handle_get(lua_State *L, int idx, const char *mt)
{
    lorch_handle_ud *u = luaL_checkudata(L, idx, mt);
    return u->h;
}

void *lorch_handle_check(lua_State *L, int idx, const char *mt, const char *what)
{
    lorch_handle_ud *u = luaL_checkudata(L, idx, mt);
    lorch_check_open(L, u->h != NULL, what);
    return u->h;
}

void lorch_handle_ref(lua_State *L, lorch_handle *h, int slot, int idx)
{
    lorch_unref(L, &h->refs[slot]);
    lua_pushvalue(L, idx);
    h->refs[slot] = lorch_ref(L);
}

void lorch_handle_push(lua_State *L, lorch_handle *h, int slot)
{
    lorch_push(L, h->refs[slot]);
}

void lorch_handle_keep(lua_State *L, lorch_handle *h, int idx)
{
    if (h->self_ref != LUA_NOREF)
        return;
    lua_pushvalue(L, idx);
    h->self_ref = lorch_ref(L);
}

void lorch_handle_release(lua_State *L, lorch_handle *h)
{
    lorch_unref(L, &h->self_ref);
}

void lorch_handle_close(lua_State *L, int idx, const char *mt)
{
    lorch_handle_ud *u = luaL_checkudata(L, idx, mt);
    lorch_handle *h = u->h;
    if (!h)
        return;
    u->h = NULL;
    for (int i = 0; i < LORCH_HANDLE_REFS; i++)
        lorch_unref(L, &h->refs[i]);
    lorch_unref(L, &h->self_ref);
    if (h->close)
        h->close(h);
    else
        free(h);
}

static void lorch_handle_free(uv_handle_t *uvh)
{
    free(uvh->data);
}

void lorch_handle_uv_close(lorch_handle *h, uv_handle_t *uvh)
{
    uvh->data = h;
    uv_close(uvh, lorch_handle_free);
}
