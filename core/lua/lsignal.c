/* lsignal.c - orch.core.signal: watch a signal other than SIGINT/SIGTERM
 * (those belong to shutdown: use core.on_shutdown).
 *
 *   local s = core.signal("SIGHUP", function(name) ... end)
 *   s:close()
 *
 * A watcher does not keep the loop alive on its own. Also here:
 * core.signum(name) -> number, and core.signame(number) -> "SIGTERM". */
#include "lorch.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define LSIGNAL_MT "orch.signal"

static const struct {
    const char *name;
    int num;
} lsignal_names[] = {
    {"SIGHUP", SIGHUP},   {"SIGINT", SIGINT},     {"SIGQUIT", SIGQUIT},
    {"SIGKILL", SIGKILL}, {"SIGUSR1", SIGUSR1},   {"SIGUSR2", SIGUSR2},
    {"SIGPIPE", SIGPIPE}, {"SIGALRM", SIGALRM},   {"SIGTERM", SIGTERM},
    {"SIGCHLD", SIGCHLD}, {"SIGCONT", SIGCONT},   {"SIGSTOP", SIGSTOP},
    {"SIGTSTP", SIGTSTP}, {"SIGWINCH", SIGWINCH}, {"SIGSEGV", SIGSEGV},
    {"SIGABRT", SIGABRT}, {"SIGBUS", SIGBUS},     {"SIGFPE", SIGFPE},
    {"SIGILL", SIGILL},   {"SIGTTIN", SIGTTIN},   {"SIGTTOU", SIGTTOU},
    {"SIGXCPU", SIGXCPU}, {"SIGXFSZ", SIGXFSZ},   {NULL, 0},
};

const char *lorch_signame(int num);
const char *lorch_signame(int num)
{
    for (int i = 0; lsignal_names[i].name; i++)
        if (lsignal_names[i].num == num)
            return lsignal_names[i].name;
    return NULL;
}

/* Accepts 15, "15", "TERM" or "SIGTERM"; raises on anything else. */
int lorch_checksignal(lua_State *L, int idx);
int lorch_checksignal(lua_State *L, int idx)
{
    const char *s;
    if (lua_type(L, idx) == LUA_TNUMBER)
        return (int)lua_tointeger(L, idx);
    s = luaL_checkstring(L, idx);
    for (int i = 0; lsignal_names[i].name; i++)
        if (strcmp(s, lsignal_names[i].name) == 0 ||
            strcmp(s, lsignal_names[i].name + 3) == 0)
            return lsignal_names[i].num;
    return luaL_argerror(L, idx, lua_pushfstring(L, "unknown signal '%s'", s));
}

typedef struct lsignal {
    uv_signal_t h;
    int fn_ref;
    int self_ref;
} lsignal;

typedef struct lsignal_ud {
    lsignal *s;
} lsignal_ud;

static void lsignal_free(uv_handle_t *h)
{
    free(h->data);
}

static void lsignal_fire(uv_signal_t *h, int signum)
{
    lsignal *s = h->data;
    lua_State *L = lorch_state();
    const char *name = lorch_signame(signum);
    lorch_push(L, s->fn_ref);
    if (name)
        lua_pushstring(L, name);
    else
        lua_pushinteger(L, signum);
    lorch_call(L, 1, 0);
}

static int lsignal_new(lua_State *L)
{
    int sig = lorch_checksignal(L, 1);
    lsignal_ud *u;
    lsignal *s;
    int rc;

    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (sig == SIGINT || sig == SIGTERM || sig == SIGCHLD)
        return luaL_error(L, "%s belongs to orch (use core.on_shutdown for "
                             "SIGINT/SIGTERM)", lorch_signame(sig));
    u = lua_newuserdata(L, sizeof *u);
    u->s = NULL;
    luaL_getmetatable(L, LSIGNAL_MT);
    lua_setmetatable(L, -2);
    s = calloc(1, sizeof *s);
    if (!s)
        return luaL_error(L, "out of memory");
    uv_signal_init(lorch_loop(), &s->h);
    s->h.data = s;
    u->s = s;
    rc = uv_signal_start(&s->h, lsignal_fire, sig);
    if (rc < 0) {
        u->s = NULL;
        uv_close((uv_handle_t *)&s->h, lsignal_free);
        return lorch_fail(L, rc, uv_strerror(rc));
    }
    uv_unref((uv_handle_t *)&s->h);
    lua_pushvalue(L, 2);
    s->fn_ref = lorch_ref(L);
    lua_pushvalue(L, -1);
    s->self_ref = lorch_ref(L);
    return 1;
}

static int lsignal_m_close(lua_State *L)
{
    lsignal_ud *u = luaL_checkudata(L, 1, LSIGNAL_MT);
    lsignal *s = u->s;
    if (!s)
        return 0;
    u->s = NULL;
    lorch_unref(L, &s->fn_ref);
    lorch_unref(L, &s->self_ref);
    uv_close((uv_handle_t *)&s->h, lsignal_free);
    return 0;
}

static int lsignal_signum(lua_State *L)
{
    lua_pushinteger(L, lorch_checksignal(L, 1));
    return 1;
}

static int lsignal_signame(lua_State *L)
{
    const char *n = lorch_signame((int)luaL_checkinteger(L, 1));
    if (n)
        lua_pushstring(L, n);
    else
        lua_pushnil(L);
    return 1;
}

static const luaL_Reg lsignal_methods[] = {
    {"close", lsignal_m_close},
    {"__gc", lsignal_m_close},
    {NULL, NULL},
};

int lorch_open_signal(lua_State *L)
{
    lorch_class(L, LSIGNAL_MT, lsignal_methods);
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, lsignal_new);
    lua_setfield(L, -2, "signal");
    lua_pushcfunction(L, lsignal_signum);
    lua_setfield(L, -2, "signum");
    lua_pushcfunction(L, lsignal_signame);
    lua_setfield(L, -2, "signame");
    return 1;
}
