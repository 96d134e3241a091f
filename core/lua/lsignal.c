/* lsignal.c - orch.core.signal: watch a signal other than SIGINT, SIGTERM,
 * SIGHUP and SIGQUIT (those begin the shutdown: use core.on_shutdown).
 *
 *   local s = core.signal("SIGHUP", function(name) ... end)
 *   s:close()
 *
 * A watcher does not keep the loop alive on its own. Also here:
 * core.signum(name) -> number, and core.signame(number) -> "SIGTERM". */
#include "lhandle.h"

#include <signal.h>
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

#define LSIGNAL_FN 0

typedef struct lsignal {
    lorch_handle base;
    uv_signal_t h;
} lsignal;

static void lsignal_fire(uv_signal_t *h, int signum)
{
    lsignal *s = h->data;
    lua_State *L = lorch_state();
    const char *name = lorch_signame(signum);
    lorch_handle_push(L, &s->base, LSIGNAL_FN);
    if (name)
        lua_pushstring(L, name);
    else
        lua_pushinteger(L, signum);
    lorch_call(L, 1, 0);
}

static void lsignal_close(lorch_handle *base)
{
    lsignal *s = (lsignal *)base;
    lorch_handle_uv_close(base, (uv_handle_t *)&s->h);
}

static int lsignal_new(lua_State *L)
{
    int sig = lorch_checksignal(L, 1);
    lsignal *s;
    int rc;

    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP || sig == SIGQUIT || sig == SIGCHLD)
        return luaL_error(L, "%s belongs to orch (use core.on_shutdown for "
                             "SIGINT, SIGTERM, SIGHUP and SIGQUIT)", lorch_signame(sig));
    s = lorch_handle_new(L, LSIGNAL_MT, sizeof *s, lsignal_close);
    uv_signal_init(lorch_loop(), &s->h);
    s->h.data = s;
    rc = uv_signal_start(&s->h, lsignal_fire, sig);
    if (rc < 0) {
        lorch_handle_close(L, -1, LSIGNAL_MT);
        return lorch_fail(L, rc, uv_strerror(rc));
    }
    uv_unref((uv_handle_t *)&s->h);
    lorch_handle_ref(L, &s->base, LSIGNAL_FN, 2);
    lorch_handle_keep(L, &s->base, -1);
    return 1;
}

static int lsignal_m_close(lua_State *L)
{
    lorch_handle_close(L, 1, LSIGNAL_MT);
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
