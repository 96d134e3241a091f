/* lproc.c - orch.core.spawn: child processes as Lua objects.
 *
 *   local p, err = core.spawn{
 *     argv = {"sh", "-c", "echo hi"},   -- or cmd = "echo hi" (sh -c)
 *     cwd = "/tmp", env = {FOO = "1", BAR = false},   -- additions / removals
 *     stdin = "pipe" | "null" (default) | "inherit",  input = "text" (then closed)
 *     stdout = function(line) end | "null" (default) | "inherit",
 *     stderr = function(line) end | "null" (default) | "inherit",
 *     chunks = true,  -- stdout/stderr get (data, n, maxlen) once per read:
 *                     -- n lines joined with "\n", the longest maxlen bytes
 *     on_exit = function(code, signame, proc) end,  -- code nil when signalled
 *     linger = ms,   -- how long to wait for EOF after exit (default 2000)
 *   }
 *   p:pid()  p:write(s)  p:close_stdin()  p:kill([sig])  p:cancel([grace_ms])
 *   p:alive()  p:status() -> code, signame (after exit)
 *
 * The process runs in its own session and group; kill and cancel act on the
 * whole group. While the process runs the object keeps itself alive.
 *
 *   local n, pids = core.sweep_match{
 *     ids = {pid, ...},          -- sessions / groups (a task's leader pids)
 *     env = {"ORCH_RUN=R", ...}, -- every entry in the environment
 *     cwd = "/repo/.orch/worktrees/R/T",  -- working directory at or below
 *     adopted = true,            -- env/cwd count only for orch's children
 *     no_tty = true,             -- env/cwd only without a controlling tty
 *     since = unix_seconds,      -- never a process older than this
 *     signal = "SIGKILL",        -- default: none (only lists)
 *   }
 * finds (and signals) what a task left behind: see core/sweep.h. */
#include "lorch.h"

#include "err.h"
#include "proc.h"
#include "sweep.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LPROC_MT "orch.proc"

const char *lorch_signame(int num);
int lorch_checksignal(lua_State *L, int idx);

typedef struct lproc {
    orch_proc *p;
    int out_ref, err_ref, exit_ref, self_ref;
    int exited, code, sig;
    int pid;
} lproc;

/* Pushes the stream's Lua callback; 0 (nothing pushed) when it has none. */
static int lproc_push_reader(lua_State *L, const lproc *lp, int stream)
{
    lorch_push(L, stream == 1 ? lp->out_ref : lp->err_ref);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    return 1;
}

static void lproc_on_line(orch_proc *op, int stream, const char *line,
                          size_t len, void *ud)
{
    lproc *lp = ud;
    lua_State *L = lorch_state();
    (void)op;
    if (!lproc_push_reader(L, lp, stream))
        return;
    lua_pushlstring(L, line, len);
    lorch_call(L, 1, 0);
}

static void lproc_on_lines(orch_proc *op, int stream, const char *data,
                           size_t len, size_t nlines, size_t maxlen, void *ud)
{
    lproc *lp = ud;
    lua_State *L = lorch_state();
    (void)op;
    if (!lproc_push_reader(L, lp, stream))
        return;
    lua_pushlstring(L, len ? data : "", len);
    lua_pushnumber(L, (lua_Number)nlines);
    lua_pushnumber(L, (lua_Number)maxlen);
    lorch_call(L, 3, 0);
}

static void lproc_push_status(lua_State *L, const lproc *lp)
{
    const char *name;
    if (lp->sig == 0) {
        lua_pushinteger(L, lp->code);
        lua_pushnil(L);
        return;
    }
    lua_pushnil(L);
    name = lorch_signame(lp->sig);
    if (name)
        lua_pushstring(L, name);
    else
        lua_pushinteger(L, lp->sig);
}

static void lproc_on_exit(orch_proc *op, int code, int sig, void *ud)
{
    lproc *lp = ud;
    lua_State *L = lorch_state();
    int self = lp->self_ref;

    lp->exited = 1;
    lp->code = code;
    lp->sig = sig;
    lp->p = NULL;
    orch_proc_release(op); /* nothing more will come from it */
    lorch_push(L, lp->exit_ref);
    if (!lua_isnil(L, -1)) {
        lproc_push_status(L, lp);
        lorch_push(L, self);
        lorch_call(L, 3, 0);
    } else {
        lua_pop(L, 1);
    }
    lorch_unref(L, &lp->out_ref);
    lorch_unref(L, &lp->err_ref);
    lorch_unref(L, &lp->exit_ref);
    lp->self_ref = LUA_NOREF;
    lorch_unref(L, &self);
}

/* Reads stdin/stdout/stderr: a function (stdout/stderr) means a pipe read
 * as lines; "pipe" (stdin only), "null" or "inherit". */
static enum orch_proc_stdio lproc_stdio(lua_State *L, int opt, const char *k,
                                        int *ref, int is_in)
{
    enum orch_proc_stdio mode = ORCH_PROC_NULL;
    lua_getfield(L, opt, k);
    if (lua_isfunction(L, -1) && !is_in) {
        *ref = lorch_ref(L);
        return ORCH_PROC_PIPE;
    }
    if (lua_isstring(L, -1)) {
        const char *s = lua_tostring(L, -1);
        if (strcmp(s, "inherit") == 0)
            mode = ORCH_PROC_INHERIT;
        else if (strcmp(s, "pipe") == 0 && is_in)
            mode = ORCH_PROC_PIPE;
        else if (strcmp(s, "null") != 0)
            luaL_error(L, "%s: expected %s, got '%s'", k,
                       is_in ? "'pipe', 'null' or 'inherit'"
                             : "a function, 'null' or 'inherit'", s);
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "%s: unexpected %s", k, luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    return mode;
}

/* argv from opts.argv (a list) or opts.cmd (run by sh -c). Every string
 * (numbers are converted) is kept in an anchor table in the registry until
 * the next spawn, so none can be collected before posix_spawn copies it. */
static const char **lproc_argv(lua_State *L, int opt)
{
    const char **argv;
    size_t n;

    lua_newtable(L); /* anchor: strings and the argv array */
    lua_getfield(L, opt, "cmd");
    if (lua_type(L, -1) == LUA_TSTRING) {
        argv = lua_newuserdata(L, 4 * sizeof *argv);
        lua_rawseti(L, -3, 0);
        argv[0] = "sh";
        argv[1] = "-c";
        argv[2] = lua_tostring(L, -1);
        argv[3] = NULL;
        lua_rawseti(L, -2, 1);
        lua_setfield(L, LUA_REGISTRYINDEX, "orch.proc.argv");
        return argv;
    }
    lua_pop(L, 1);
    lua_getfield(L, opt, "argv");
    if (!lua_istable(L, -1))
        luaL_error(L, "spawn: 'argv' (a list of strings) or 'cmd' is required");
    n = lua_objlen(L, -1);
    if (n == 0)
        luaL_error(L, "spawn: 'argv' is empty");
    argv = lua_newuserdata(L, (n + 1) * sizeof *argv);
    lua_rawseti(L, -3, 0);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, -1, (int)i + 1);
        if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "spawn: argv[%d] is not a string", (int)i + 1);
        argv[i] = lua_tostring(L, -1); /* a converted number is a new string */
        lua_rawseti(L, -3, (int)i + 1); /* ... kept by the anchor */
    }
    argv[n] = NULL;
    lua_pop(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "orch.proc.argv");
    return argv;
}

/* env = {K = "v" | false}: a userdata-backed array of "K=V" / "K" strings,
 * kept alive in a table at the top of the stack. */
static const char **lproc_env(lua_State *L, int opt, size_t *count)
{
    const char **env;
    size_t n = 0, i = 0;

    *count = 0;
    lua_getfield(L, opt, "env");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    luaL_argcheck(L, lua_istable(L, -1), 1, "env must be a table");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        n++;
        lua_pop(L, 1);
    }
    env = lua_newuserdata(L, (n + 1) * sizeof *env);
    lua_newtable(L); /* strings, kept alive */
    lua_pushnil(L);
    while (lua_next(L, -4)) {
        const char *k;
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "env: keys must be strings");
        k = lua_tostring(L, -2);
        if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))
            lua_pushstring(L, k);
        else if (lua_isstring(L, -1))
            lua_pushfstring(L, "%s=%s", k, lua_tostring(L, -1));
        else
            luaL_error(L, "env.%s: expected a string or false", k);
        env[i++] = lua_tostring(L, -1);
        lua_rawseti(L, -4, (int)i);
        lua_pop(L, 1);
    }
    /* stack: env table, userdata, strings; anchor both in the registry */
    lua_setfield(L, LUA_REGISTRYINDEX, "orch.proc.envstr");
    lua_setfield(L, LUA_REGISTRYINDEX, "orch.proc.env");
    lua_pop(L, 1);
    env[i] = NULL;
    *count = i;
    return env;
}

static int lproc_spawn(lua_State *L)
{
    orch_proc_opts o;
    orch_proc_cb cb = {.on_line = lproc_on_line, .on_exit = lproc_on_exit};
    const char *input = NULL;
    size_t input_len = 0;
    lproc *lp;
    int rc;

    luaL_checktype(L, 1, LUA_TTABLE);
    memset(&o, 0, sizeof o);
    lp = lua_newuserdata(L, sizeof *lp);
    memset(lp, 0, sizeof *lp);
    lp->out_ref = lp->err_ref = lp->exit_ref = lp->self_ref = LUA_NOREF;
    luaL_getmetatable(L, LPROC_MT);
    lua_setmetatable(L, -2);

    o.argv = lproc_argv(L, 1);
    o.env = lproc_env(L, 1, &o.env_count);
    o.cwd = lorch_opt_str_field(L, 1, "cwd", NULL);
    o.linger_ms = (unsigned)lorch_opt_int_field(L, 1, "linger", 0);
    o.in = lproc_stdio(L, 1, "stdin", NULL, 1);
    lua_getfield(L, 1, "input");
    if (!lua_isnil(L, -1)) {
        input = luaL_checklstring(L, -1, &input_len);
        o.in = ORCH_PROC_PIPE;
    }
    lua_pop(L, 1);
    if (lorch_opt_bool_field(L, 1, "chunks", 0)) {
        cb.on_line = NULL;
        cb.on_lines = lproc_on_lines;
    }
    o.out = lproc_stdio(L, 1, "stdout", &lp->out_ref, 0);
    o.err = lproc_stdio(L, 1, "stderr", &lp->err_ref, 0);
    lua_getfield(L, 1, "on_exit");
    if (!lua_isnil(L, -1))
        luaL_checktype(L, -1, LUA_TFUNCTION);
    lp->exit_ref = lorch_ref(L);

    rc = orch_proc_spawn(lorch_loop(), &o, &cb, lp, &lp->p);
    if (rc < 0) {
        lorch_unref(L, &lp->out_ref);
        lorch_unref(L, &lp->err_ref);
        lorch_unref(L, &lp->exit_ref);
        lp->exited = 1;
        return lorch_fail(L, rc, orch_err_msg());
    }
    lp->pid = (int)orch_proc_pid(lp->p);
    lua_pushvalue(L, -1);
    lp->self_ref = lorch_ref(L);
    if (input) {
        orch_proc_write(lp->p, input, input_len);
        orch_proc_close_stdin(lp->p);
    }
    return 1;
}

static lproc *lproc_check(lua_State *L)
{
    return luaL_checkudata(L, 1, LPROC_MT);
}

static int lproc_m_pid(lua_State *L)
{
    lua_pushinteger(L, lproc_check(L)->pid);
    return 1;
}

static int lproc_m_alive(lua_State *L)
{
    lproc *lp = lproc_check(L);
    lua_pushboolean(L, lp->p != NULL && orch_proc_alive(lp->p));
    return 1;
}

static int lproc_m_status(lua_State *L)
{
    lproc *lp = lproc_check(L);
    if (!lp->exited)
        return 0;
    lproc_push_status(L, lp);
    return 2;
}

/* p:reaped() -> code, signame once the process was reaped, even while orch
 * still waits for its output to end (before on_exit); nothing before. */
static int lproc_m_reaped(lua_State *L)
{
    lproc *lp = lproc_check(L);
    int code, sig;
    if (lp->exited)
        return lproc_m_status(L);
    if (!lp->p || !orch_proc_reaped(lp->p, &code, &sig))
        return 0;
    lproc tmp = *lp;
    tmp.code = code;
    tmp.sig = sig;
    lproc_push_status(L, &tmp);
    return 2;
}

static int lproc_m_write(lua_State *L)
{
    lproc *lp = lproc_check(L);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    int rc;
    if (!lp->p)
        return lorch_fail(L, -EPIPE, "process has exited");
    rc = orch_proc_write(lp->p, s, len);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushboolean(L, 1);
    return 1;
}

static int lproc_m_close_stdin(lua_State *L)
{
    lproc *lp = lproc_check(L);
    if (lp->p)
        orch_proc_close_stdin(lp->p);
    return 0;
}

static int lproc_m_kill(lua_State *L)
{
    lproc *lp = lproc_check(L);
    int sig = lua_isnoneornil(L, 2) ? SIGTERM : lorch_checksignal(L, 2);
    int rc;
    if (!lp->p)
        return lorch_fail(L, -ESRCH, "process has exited");
    rc = orch_proc_kill(lp->p, sig);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushboolean(L, 1);
    return 1;
}

static int lproc_m_cancel(lua_State *L)
{
    lproc *lp = lproc_check(L);
    lua_Integer grace = luaL_optinteger(L, 2, 2000);
    if (lp->p)
        orch_proc_cancel(lp->p, (unsigned)(grace < 0 ? 0 : grace));
    return 0;
}

static int lproc_m_gc(lua_State *L)
{
    lproc *lp = lproc_check(L);
    /* Only reachable once the process is gone (it keeps itself alive until
     * then), or when the spawn failed or its options were refused (then the
     * callbacks may still be referenced). */
    if (lp->p) {
        orch_proc_release(lp->p);
        lp->p = NULL;
    }
    lorch_unref(L, &lp->out_ref);
    lorch_unref(L, &lp->err_ref);
    lorch_unref(L, &lp->exit_ref);
    return 0;
}

static const luaL_Reg lproc_methods[] = {
    {"pid", lproc_m_pid},
    {"alive", lproc_m_alive},
    {"status", lproc_m_status},
    {"reaped", lproc_m_reaped},
    {"write", lproc_m_write},
    {"close_stdin", lproc_m_close_stdin},
    {"kill", lproc_m_kill},
    {"cancel", lproc_m_cancel},
    {"__gc", lproc_m_gc},
    {NULL, NULL},
};

#define LPROC_SWEEP_MAX 4096

/* Reads a list of integers (ids) or strings (env) of the table field k. */
static size_t lproc_list(lua_State *L, const char *k, pid_t *ids,
                         const char **strs, size_t max)
{
    size_t n = 0;
    lua_getfield(L, 1, k);
    if (lua_istable(L, -1)) {
        size_t len = lua_objlen(L, -1);
        for (size_t i = 0; i < len && n < max; i++) {
            lua_rawgeti(L, -1, (int)i + 1);
            if (ids && lua_isnumber(L, -1))
                ids[n++] = (pid_t)lua_tointeger(L, -1);
            else if (strs && lua_type(L, -1) == LUA_TSTRING)
                strs[n++] = lua_tostring(L, -1); /* kept by the table */
            else
                luaL_error(L, "sweep_match: %s[%d] has the wrong type", k,
                           (int)i + 1);
            lua_pop(L, 1);
        }
    } else if (!lua_isnil(L, -1))
        luaL_error(L, "sweep_match: %s must be a list", k);
    lua_pop(L, 1); /* the spec table (arg 1) keeps the strings alive */
    return n;
}

static int lproc_sweep_match(lua_State *L)
{
    static pid_t ids[LPROC_SWEEP_MAX], out[LPROC_SWEEP_MAX];
    static const char *env[64];
    orch_sweep_spec s;
    int sig = 0, n;
    luaL_checktype(L, 1, LUA_TTABLE);
    memset(&s, 0, sizeof s);
    s.ids = ids;
    s.nids = lproc_list(L, "ids", ids, NULL, LPROC_SWEEP_MAX);
    s.env = env;
    s.nenv = lproc_list(L, "env", NULL, env, 64);
    s.cwd = lorch_opt_str_field(L, 1, "cwd", NULL);
    s.adopter = lorch_opt_bool_field(L, 1, "adopted", 0) ? getpid() : 0;
    s.anywhere = s.adopter == 0;
    s.no_tty = lorch_opt_bool_field(L, 1, "no_tty", 0);
    lua_getfield(L, 1, "since");
    s.since = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 0;
    lua_getfield(L, 1, "signal");
    if (!lua_isnil(L, -1))
        sig = lorch_checksignal(L, lua_gettop(L));
    lua_pop(L, 2);
    n = orch_sweep_match(&s, sig, out, LPROC_SWEEP_MAX);
    if (n < 0)
        return lorch_fail(L, n, orch_err_msg());
    lua_pushinteger(L, n);
    lua_createtable(L, n < LPROC_SWEEP_MAX ? n : LPROC_SWEEP_MAX, 0);
    for (int i = 0; i < n && i < LPROC_SWEEP_MAX; i++) {
        lua_pushinteger(L, out[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 2;
}

int lorch_open_proc(lua_State *L)
{
    lorch_class(L, LPROC_MT, lproc_methods);
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, lproc_spawn);
    lua_setfield(L, -2, "spawn");
    lua_pushcfunction(L, lproc_sweep_match);
    lua_setfield(L, -2, "sweep_match");
    return 1;
}
