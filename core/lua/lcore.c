/* lcore.c - the `orch.core` module: the loop, the protected-call choke point,
 * shutdown, and the list of bindings that make up the namespace. */
#include "lorch.h"

#include "err.h"
#include "proc.h"
#include "shutdown.h"
#include "sweep.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


/* ------------------------------------------------------------ bindings */

typedef struct lorch_binding {
    const char *name; /* NULL: merge its functions into orch.core itself */
    int (*open)(lua_State *L);
} lorch_binding;

static const lorch_binding lorch_bindings[] = {
    {NULL, lorch_open_timer},
    {NULL, lorch_open_signal},
    {NULL, lorch_open_proc},
    {NULL, lorch_open_watch},
    {NULL, lorch_open_sys},
    {NULL, lorch_open_tcp},
    {"db", lorch_open_db},
    {"sched", lorch_open_sched},
    {"ctl", lorch_open_ctl},
    {"tui", lorch_open_tui},
    /* BINDINGS: one line per namespace, e.g. {"ctl", lorch_open_ctl}.
     * NOT git or http: those are loadable modules (lib/orch/git.so,
     * http.so) opened on first use, see lorch_lazy below. */
    {NULL, NULL},
};

/* ------------------------------------------------------------ state */

static uv_loop_t lorch_the_loop;
static int lorch_loop_ready;
static lua_State *lorch_main_L;
static int lorch_shutdown_ref = LUA_NOREF; /* table of shutdown hooks */
static int lorch_error_ref = LUA_NOREF;    /* table of error hooks */
static int lorch_callback_errors;
static const char *lorch_runtime_dir_s = "";
static const char *lorch_lib_dir_s = "";

uv_loop_t *lorch_loop(void)
{
    if (!lorch_loop_ready) {
        uv_loop_init(&lorch_the_loop);
        lorch_loop_ready = 1;
    }
    return &lorch_the_loop;
}

lua_State *lorch_state(void)
{
    return lorch_main_L;
}

int lorch_callback_error_count(void);
int lorch_callback_error_count(void)
{
    return lorch_callback_errors;
}

void lorch_set_runtime_dir(const char *dir);
void lorch_set_runtime_dir(const char *dir)
{
    lorch_runtime_dir_s = dir;
}

void lorch_set_lib_dir(const char *dir);
void lorch_set_lib_dir(const char *dir)
{
    lorch_lib_dir_s = dir;
}

/* ------------------------------------------------------------ helpers */

int lorch_ref(lua_State *L)
{
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return LUA_NOREF;
    }
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

void lorch_unref(lua_State *L, int *ref)
{
    if (*ref != LUA_NOREF && *ref != LUA_REFNIL)
        luaL_unref(L, LUA_REGISTRYINDEX, *ref);
    *ref = LUA_NOREF;
}

void lorch_push(lua_State *L, int ref)
{
    if (ref == LUA_NOREF || ref == LUA_REFNIL)
        lua_pushnil(L);
    else
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
}

int lorch_fail(lua_State *L, int rc, const char *msg)
{
    int e = rc < 0 ? -rc : rc;
    lua_pushnil(L);
    lua_pushstring(L, msg && *msg ? msg : strerror(e));
    /* libuv's names (ENOENT, EPIPE, ...) cover the errnos we return. */
    lua_pushstring(L, uv_err_name(-e));
    return 3;
}

void lorch_class(lua_State *L, const char *name, const luaL_Reg *methods)
{
    if (luaL_newmetatable(L, name)) {
        lua_pushvalue(L, -1);
        lua_setfield(L, -2, "__index");
        luaL_register(L, NULL, methods);
    }
}

lua_Integer lorch_opt_int_field(lua_State *L, int idx, const char *k,
                                lua_Integer def)
{
    lua_Integer v = def;
    lua_getfield(L, idx, k);
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1))
            luaL_error(L, "field '%s' must be a number", k);
        v = lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

const char *lorch_opt_str_field(lua_State *L, int idx, const char *k,
                                const char *def)
{
    const char *v = def;
    lua_getfield(L, idx, k);
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "field '%s' must be a string", k);
        v = lua_tostring(L, -1); /* kept alive by the table at idx */
    }
    lua_pop(L, 1);
    return v;
}

int lorch_opt_bool_field(lua_State *L, int idx, const char *k, int def)
{
    int v = def;
    lua_getfield(L, idx, k);
    if (!lua_isnil(L, -1))
        v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* ------------------------------------------------------------ the choke point */

static int lorch_traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)",
                                  luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static void lorch_report(lua_State *L, const char *msg)
{
    fprintf(stderr, "orch: error in callback: %s\n", msg);
    fflush(stderr);
    if (lorch_error_ref == LUA_NOREF)
        return;
    lorch_push(L, lorch_error_ref);
    for (int i = 1;; i++) {
        lua_rawgeti(L, -1, i);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            break;
        }
        lua_pushstring(L, msg);
        if (lua_pcall(L, 1, 0, 0) != 0) {
            fprintf(stderr, "orch: error in error handler: %s\n",
                    lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

static int lorch_traceback_ref = LUA_NOREF;

/* How deep the loop is inside lorch_call: > 0 while a callback (or a
 * coroutine it resumed) runs. core.run refuses to run the loop then
 * (libuv forbids uv_run from inside a callback of the same loop), the way
 * neovim refuses unsafe API calls in a fast callback. */
static int lorch_callback_depth;

int lorch_in_callback(void)
{
    return lorch_callback_depth > 0;
}

int lorch_call(lua_State *L, int nargs, int nresults)
{
    int base = lua_gettop(L) - nargs; /* the function's slot */
    int rc;

    /* The message handler is made once: pushing a C function allocates. */
    if (lorch_traceback_ref == LUA_NOREF) {
        lua_pushcfunction(L, lorch_traceback);
        lorch_traceback_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, lorch_traceback_ref);
    lua_insert(L, base);
    lorch_callback_depth++;
    rc = lua_pcall(L, nargs, nresults, base);
    lorch_callback_depth--;
    lua_remove(L, base);
    if (rc != 0) {
        lorch_callback_errors++;
        lorch_report(L, lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ shutdown */

/* The sequence itself is core/shutdown.c; its hook runs the Lua hooks. */
static void lorch_run_shutdown_hooks(const char *phase, const char *signame, void *arg)
{
    lua_State *L = lorch_main_L;
    (void)arg;
    if (lorch_shutdown_ref == LUA_NOREF || !L)
        return;
    lorch_push(L, lorch_shutdown_ref);
    for (int i = 1;; i++) {
        lua_rawgeti(L, -1, i);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            break;
        }
        lua_pushstring(L, phase);
        lua_pushstring(L, signame);
        lorch_call(L, 2, 0);
    }
    lua_pop(L, 1);
}

static int lorch_install_signals(void)
{
    uv_loop_t *loop = lorch_loop();
    int rc = orch_proc_init(loop);
    if (rc < 0)
        return rc;
    return orch_shutdown_init(loop, lorch_run_shutdown_hooks, NULL);
}

#define LORCH_MAX_GROUPS 4096

/* ------------------------------------------------------------ Lua API */

static int lorch_hook_add(lua_State *L, int *ref)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    if (*ref == LUA_NOREF) {
        lua_newtable(L);
        *ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lorch_push(L, *ref);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
    lua_pop(L, 1);
    return 0;
}

static int lcore_on_shutdown(lua_State *L)
{
    return lorch_hook_add(L, &lorch_shutdown_ref);
}

static int lcore_on_error(lua_State *L)
{
    return lorch_hook_add(L, &lorch_error_ref);
}

static int lcore_run(lua_State *L)
{
    static const char *const modes[] = {"default", "once", "nowait", NULL};
    static const uv_run_mode m[] = {UV_RUN_DEFAULT, UV_RUN_ONCE, UV_RUN_NOWAIT};
    int mode = luaL_checkoption(L, 1, "default", modes);
    if (lorch_callback_depth > 0)
        return luaL_error(L, "orch.core.run called from inside a loop callback "
                             "(a timer, process, socket or signal callback, or a "
                             "coroutine one resumed): the loop cannot be run from "
                             "inside itself; return from the callback instead, or "
                             "wait with orch.async (async.wait)");
    lua_pushboolean(L, uv_run(lorch_loop(), m[mode]) != 0);
    return 1;
}

/* core.in_callback() -> whether a loop callback (or a coroutine it
 * resumed) is running now, i.e. the loop's current turn is not over. */
static int lcore_in_callback(lua_State *L)
{
    lua_pushboolean(L, lorch_in_callback());
    return 1;
}

static int lcore_stop(lua_State *L)
{
    (void)L;
    uv_stop(lorch_loop());
    return 0;
}

static int lcore_now(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)uv_now(lorch_loop()));
    return 1;
}

static int lcore_update_time(lua_State *L)
{
    (void)L;
    uv_update_time(lorch_loop());
    return 0;
}

static int lcore_hrtime(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)uv_hrtime());
    return 1;
}

static int lcore_time(lua_State *L)
{
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    lua_pushnumber(L, (lua_Number)tv.tv_sec + (lua_Number)tv.tv_usec / 1e6);
    return 1;
}

static int lcore_shutting_down(lua_State *L)
{
    lua_pushboolean(L, orch_shutdown_active());
    return 1;
}

/* core.shutdown([signame]): begins the shutdown as that signal would
 * (default SIGINT); a second call forces the exit. */
static int lcore_shutdown(lua_State *L)
{
    static const char *const names[] = {"SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", NULL};
    static const int nums[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    int i = luaL_checkoption(L, 1, "SIGINT", names);
    orch_shutdown_begin(nums[i]);
    return 0;
}

static int lcore_errors(lua_State *L)
{
    lua_pushinteger(L, lorch_callback_errors);
    return 1;
}

static int lcore_runtime_dir(lua_State *L)
{
    lua_pushstring(L, lorch_runtime_dir_s);
    return 1;
}

static int lcore_live_processes(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)orch_proc_live_count());
    return 1;
}

/* For tests and the shutdown path of scripts: count (or kill with sig) what
 * is left of the trees orch started. */
static int lcore_sweep(lua_State *L)
{
    int sig = (int)luaL_optinteger(L, 1, 0);
    pid_t groups[LORCH_MAX_GROUPS];
    size_t n = orch_proc_live_groups(groups, LORCH_MAX_GROUPS);
    int rc = orch_sweep_kill(getpid(), groups, n, sig);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushinteger(L, rc);
    return 1;
}

/* core.strays(pgid) -> whether anything of the task whose leader pgid has
 * exited may be left (its group has a member, or orch has a child it did
 * not spawn: an adopted orphan); false means a sweep would find nothing. */
static int lcore_strays(lua_State *L)
{
    pid_t group = (pid_t)luaL_checkinteger(L, 1);
    static pid_t known[LORCH_MAX_GROUPS];
    size_t n = orch_proc_live_groups(known, LORCH_MAX_GROUPS);
    lua_pushboolean(L, n >= LORCH_MAX_GROUPS || orch_sweep_strays(group, known, n));
    return 1;
}

static const luaL_Reg lcore_fns[] = {
    {"run", lcore_run},
    {"strays", lcore_strays},
    {"in_callback", lcore_in_callback},
    {"stop", lcore_stop},
    {"now", lcore_now},
    {"update_time", lcore_update_time},
    {"hrtime", lcore_hrtime},
    {"time", lcore_time},
    {"on_shutdown", lcore_on_shutdown},
    {"on_error", lcore_on_error},
    {"shutting_down", lcore_shutting_down},
    {"shutdown", lcore_shutdown},
    {"errors", lcore_errors},
    {"runtime_dir", lcore_runtime_dir},
    {"live_processes", lcore_live_processes},
    {"sweep", lcore_sweep},
    {NULL, NULL},
};

/* Namespaces in loadable modules (lib/orch/NAME.so), opened on first use:
 * orch.core.git and orch.core.http (see CMakeLists.txt for why). */
static const char *const lorch_lazy[] = {"git", "http", NULL};

static int lcore_lazy_index(lua_State *L)
{
    const char *k = lua_tostring(L, 2);
    char path[4096], sym[64];
    void *lib;
    lua_CFunction open;

    if (!k)
        return 0;
    for (int i = 0;; i++) {
        if (!lorch_lazy[i])
            return 0;
        if (strcmp(lorch_lazy[i], k) == 0)
            break;
    }
    snprintf(path, sizeof path, "%s/%s.so", lorch_lib_dir_s, k);
    snprintf(sym, sizeof sym, "lorch_open_%s", k);
    lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        return luaL_error(L, "orch.core.%s: cannot load %s: %s", k, path, dlerror());
    open = (lua_CFunction)(uintptr_t)dlsym(lib, sym);
    if (!open)
        return luaL_error(L, "orch.core.%s: %s has no %s", k, path, sym);
    /* the library stays loaded for the life of the process */
    lua_pushcfunction(L, open);
    lua_call(L, 0, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, 1, k);
    return 1;
}

int lorch_open_core(lua_State *L);
int lorch_open_core(lua_State *L)
{
    lua_newtable(L);
    luaL_register(L, NULL, lcore_fns);
    lua_pushstring(L, ORCH_VERSION);
    lua_setfield(L, -2, "version");
    lua_newtable(L);
    lua_pushcfunction(L, lcore_lazy_index);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    for (const lorch_binding *b = lorch_bindings; b->open; b++) {
        b->open(L);
        if (b->name) {
            lua_setfield(L, -2, b->name);
        } else {
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_settable(L, -5);
            }
            lua_pop(L, 1);
        }
    }
    return 1;
}

int lorch_host_start(lua_State *L);
int lorch_host_start(lua_State *L)
{
    lorch_main_L = L;
    lorch_loop();
    return lorch_install_signals();
}

void lorch_host_close(void);
void lorch_host_close(void)
{
    lua_State *L = lorch_main_L;
    if (L) {
        lorch_unref(L, &lorch_shutdown_ref);
        lorch_unref(L, &lorch_error_ref);
        lorch_unref(L, &lorch_traceback_ref);
    }
}

/* After lua_close: handles closed by __gc get their close callbacks (which
 * free them), then the loop itself is closed. */
void lorch_host_finish(void);
void lorch_host_finish(void)
{
    if (!lorch_loop_ready)
        return;
    orch_proc_shutdown_watchers();
    orch_shutdown_close();
    uv_run(&lorch_the_loop, UV_RUN_NOWAIT);
    uv_loop_close(&lorch_the_loop);
    lorch_main_L = NULL;
}
