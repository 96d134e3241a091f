/* lorch.h - what every Lua binding of orch's core shares.
 *
 * The bindings (core/lua/l*.c, one file per Lua namespace under orch.core)
 * follow luv's conventions:
 *   - a failure of the system (ENOENT, a refused connection, a bad repo) is
 *     returned as `nil, "message", "ECODE"`; misuse of the API (a wrong
 *     argument type, a closed handle) raises a Lua error;
 *   - a handle is a full userdata holding its C struct, with a metatable named
 *     "orch.<type>"; while it is active it keeps itself alive through a
 *     registry reference (lorch_ref) that its close path releases;
 *   - every callback from the loop into Lua goes through lorch_call(), the one
 *     protected-call choke point: it adds a traceback, reports an error on
 *     stderr (and to orch.core.on_error handlers) and never unwinds into C.
 *
 * Each binding file exports `int lorch_open_<name>(lua_State *L)`, which pushes
 * one table (its namespace) and returns 1; lcore.c lists them. */
#ifndef ORCH_LORCH_H
#define ORCH_LORCH_H

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

/* The loop every binding uses (one per process). */
uv_loop_t *lorch_loop(void);

/* The main Lua state: callbacks from the loop always run on it, never on the
 * coroutine that registered them. */
lua_State *lorch_state(void);

/* Calls the function below `nargs` arguments on L's stack in protected mode
 * with a traceback. On error the message and traceback are reported and
 * nothing is left on the stack; returns 0 on success, -1 on error. On success
 * `nresults` results are on the stack (LUA_MULTRET allowed). */
int lorch_call(lua_State *L, int nargs, int nresults);

/* Whether a callback is running (lorch_call is on the C stack): the loop
 * must not be run then. */
int lorch_in_callback(void);

/* Registry references: lorch_ref pops the value on top of the stack and
 * returns a reference (LUA_NOREF for nil); lorch_unref releases one and sets
 * *ref to LUA_NOREF; lorch_push pushes the referenced value (nil if none). */
int lorch_ref(lua_State *L);
void lorch_unref(lua_State *L, int *ref);
void lorch_push(lua_State *L, int ref);

/* Pushes nil, "message", "ECODE" for a negative errno (or libuv error) and
 * returns 3, for `return lorch_fail(L, rc, msg)` in bindings. msg may be
 * NULL, in which case the errno's description is used. */
int lorch_fail(lua_State *L, int rc, const char *msg);

/* Creates (or fetches) the metatable `name` with __index = itself and the
 * given methods, leaving it on the stack. */
void lorch_class(lua_State *L, const char *name, const luaL_Reg *methods);

/* Raises a Lua error unless the handle is open. */
#define lorch_check_open(L, cond, what)                                      \
    do {                                                                      \
        if (!(cond))                                                          \
            luaL_error((L), "%s is closed", (what));                          \
    } while (0)

/* Reads an optional integer/number/string/boolean field of the table at idx. */
lua_Integer lorch_opt_int_field(lua_State *L, int idx, const char *k,
                                lua_Integer def);
const char *lorch_opt_str_field(lua_State *L, int idx, const char *k,
                                const char *def);
int lorch_opt_bool_field(lua_State *L, int idx, const char *k, int def);

/* Bindings (one per namespace). */
int lorch_open_timer(lua_State *L);
int lorch_open_signal(lua_State *L);
int lorch_open_proc(lua_State *L);
int lorch_open_watch(lua_State *L);
int lorch_open_sys(lua_State *L);
int lorch_open_tcp(lua_State *L);
int lorch_open_db(lua_State *L);
int lorch_open_sched(lua_State *L);
int lorch_open_http(lua_State *L);
int lorch_open_git(lua_State *L);
int lorch_open_ctl(lua_State *L);
int lorch_open_tui(lua_State *L);

#endif
