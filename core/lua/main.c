/* main.c - the orch executable: a LuaJIT host on a libuv loop.
 *
 *   orch --version          answered here, without starting Lua
 *   orch -l FILE [ARGS...]  runs a Lua file in the host (as `nvim -l` does);
 *                           used by the spec runner and benchmarks
 *   orch CMD ...            everything else goes to lua/orch/cli.lua
 *
 * Lua modules are found relative to the executable: <bin>/../share/orch/lua
 * (the build tree mirrors the installed layout), or under $ORCH_RUNTIME.
 * Exit codes: what the entry returns; 2 when a script does not load (syntax);
 * 1 when it raises; 130 on interrupt (see lcore.c). */
#include "lorch.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int lorch_open_core(lua_State *L);
int lorch_host_start(lua_State *L);
void lorch_host_close(void);
void lorch_host_finish(void);
void lorch_set_runtime_dir(const char *dir);
void lorch_set_lib_dir(const char *dir);
int lorch_callback_error_count(void);

static char main_runtime[PATH_MAX];
static char main_libdir[PATH_MAX];

static void main_find_runtime(void)
{
    const char *env = getenv("ORCH_RUNTIME");
    char exe[PATH_MAX];
    char *dir;
    ssize_t n;

    const char *lib = getenv("ORCH_LIBDIR");

    n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        snprintf(exe, sizeof exe, "/usr/local/bin/orch");
    else
        exe[n] = '\0';
    dir = dirname(exe);
    if (env && *env)
        snprintf(main_runtime, sizeof main_runtime, "%s", env);
    else
        snprintf(main_runtime, sizeof main_runtime, "%s/../share/orch", dir);
    if (lib && *lib)
        snprintf(main_libdir, sizeof main_libdir, "%s", lib);
    else
        snprintf(main_libdir, sizeof main_libdir, "%s/../lib/orch", dir);
}

static void main_set_paths(lua_State *L)
{
    const char *extra = getenv("ORCH_LUA_PATH");
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s%s%s/lua/?.lua;%s/lua/?/init.lua;", extra ? extra : "",
                    extra ? ";" : "", main_runtime, main_runtime);
    lua_getfield(L, -2, "path");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");
    /* orch.core is built in: require("orch.core") finds it here. */
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, lorch_open_core);
    lua_setfield(L, -2, "orch.core");
    lua_pop(L, 2);
}

static int main_traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg)
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Runs the function on top of the stack with nargs below... (already pushed)
 * and returns its integer result (0 if none), or 1 if it raised. */
static int main_pcall(lua_State *L, int nargs)
{
    int base = lua_gettop(L) - nargs, rc, code = 0;
    lua_pushcfunction(L, main_traceback);
    lua_insert(L, base);
    rc = lua_pcall(L, nargs, 1, base);
    if (rc != 0) {
        fprintf(stderr, "orch: %s\n", lua_tostring(L, -1));
        lua_settop(L, base - 1);
        return 1;
    }
    if (lua_isnumber(L, -1))
        code = (int)lua_tointeger(L, -1);
    lua_settop(L, base - 1);
    return code;
}

/* orch -l FILE ARGS: like the lua interpreter, with `arg` and `...`. */
static int main_run_file(lua_State *L, int argc, char **argv)
{
    const char *file = argv[2];
    int rc;

    lua_createtable(L, argc, 2);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - 2);
    }
    lua_setglobal(L, "arg");
    if (luaL_loadfile(L, file) != 0) {
        fprintf(stderr, "orch: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        return 2;
    }
    for (int i = 3; i < argc; i++)
        lua_pushstring(L, argv[i]);
    rc = main_pcall(L, argc - 3);
    if (rc == 0)
        uv_run(lorch_loop(), UV_RUN_DEFAULT);
    return rc;
}

/* Everything else: require("orch.cli").main(args) returns the exit code. */
static int main_run_cli(lua_State *L, int argc, char **argv)
{
    lua_getglobal(L, "require");
    lua_pushstring(L, "orch.cli");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        fprintf(stderr, "orch: cannot load the command line module: %s\n",
                lua_tostring(L, -1));
        return 2;
    }
    lua_getfield(L, -1, "main");
    lua_remove(L, -2);
    lua_createtable(L, argc, 0);
    for (int i = 1; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    return main_pcall(L, 1);
}

int main(int argc, char **argv)
{
    lua_State *L;
    int code;

    if (argc == 2 && (strcmp(argv[1], "--version") == 0 ||
                      strcmp(argv[1], "-V") == 0)) {
        printf("orch %s\n", ORCH_VERSION);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    main_find_runtime();
    lorch_set_runtime_dir(main_runtime);
    lorch_set_lib_dir(main_libdir);
    L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "orch: cannot create the Lua state\n");
        return 1;
    }
    luaL_openlibs(L);
    main_set_paths(L);
    if (lorch_host_start(L) < 0) {
        fprintf(stderr, "orch: cannot start the event loop\n");
        lua_close(L);
        return 1;
    }
    if (argc >= 2 && strcmp(argv[1], "-l") == 0) {
        if (argc < 3) {
            fprintf(stderr, "orch: -l needs a file\n");
            code = 2;
        } else {
            code = main_run_file(L, argc, argv);
        }
    } else {
        code = main_run_cli(L, argc, argv);
    }
    if (code == 0 && lorch_callback_error_count() > 0)
        code = 1;
    fflush(stdout);
    lorch_host_close();
    lua_close(L);
    lorch_host_finish();
    return code;
}
