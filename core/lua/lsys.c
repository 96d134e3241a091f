/* lsys.c - small system calls for Lua, merged into orch.core:
 *
 *   core.getpid()  core.cwd()  core.realpath(path)  core.kill(pid, [sig], [group])
 *   core.mkdir_p(path, [mode])  core.chmod(path, mode)  core.readdir(path)
 *   core.isatty(fd)  core.rusage()  core.interrupted()  core.interruptible(on)
 *   core.lstat(path)  core.readlink(path)
 *
 * Failures return nil, "message", "ECODE" (luv's convention, lorch.h). */
#include "lorch.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

int lorch_checksignal(lua_State *L, int idx);

static int lsys_getpid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

static int lsys_cwd(lua_State *L)
{
    char buf[4096];
    size_t n = sizeof buf;
    int rc = uv_cwd(buf, &n);
    if (rc < 0)
        return lorch_fail(L, rc, uv_strerror(rc));
    lua_pushlstring(L, buf, n);
    return 1;
}

static int lsys_realpath(lua_State *L)
{
    char *r = realpath(luaL_checkstring(L, 1), NULL);
    if (!r)
        return lorch_fail(L, -errno, NULL);
    lua_pushstring(L, r);
    free(r);
    return 1;
}

/* core.kill(pid, [sig], [group]): kill(2), or killpg(2) when group. */
static int lsys_kill(lua_State *L)
{
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    int sig = lua_isnoneornil(L, 2) ? SIGTERM : lorch_checksignal(L, 2);
    int rc;
    luaL_argcheck(L, pid > 1, 1, "bad pid");
    rc = lua_toboolean(L, 3) ? killpg(pid, sig) : kill(pid, sig);
    if (rc < 0)
        return lorch_fail(L, -errno, NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/* core.mkdir_p(path, [mode]): creates path and its missing parents. */
static int lsys_mkdir_p(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int mode = (int)luaL_optinteger(L, 2, 0777);
    size_t len = strlen(path);
    char *buf = malloc(len + 1);
    int rc = 0;

    if (!buf)
        return luaL_error(L, "out of memory");
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len && rc == 0; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, (mode_t)mode) < 0 && errno != EEXIST)
                rc = -errno;
            buf[i] = c;
        }
    }
    free(buf);
    if (rc < 0)
        return lorch_fail(L, rc, NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/* core.chmod(path, mode) */
static int lsys_chmod(lua_State *L)
{
    if (chmod(luaL_checkstring(L, 1), (mode_t)luaL_checkinteger(L, 2)) < 0)
        return lorch_fail(L, -errno, NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/* ------------------------------------------------------------ interrupts
 *
 * The loop's SIGINT/SIGTERM/SIGHUP/SIGQUIT watchers only run when the loop does, so long
 * synchronous work (checking a 50 MB plan, an evaluation in the REPL)
 * would not notice Ctrl+C. A handler chained in front of libuv's records
 * the signal in a flag that such work polls (core.interrupted()), then
 * calls libuv's, so the loop still sees it. Inside core.interruptible()
 * regions SA_RESTART is off, so a blocking open() or read() (a FIFO that
 * nobody writes) returns EINTR instead of waiting on. */

static const int lsys_intr_sigs[4] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
static volatile sig_atomic_t lsys_intr_sig, lsys_intr_depth;
static struct sigaction lsys_intr_prev[4];
static int lsys_intr_installed, lsys_intr_norestart;

static void lsys_intr_handler(int sig, siginfo_t *si, void *uc)
{
    const struct sigaction *p = &lsys_intr_prev[0];
    for (int i = 0; i < 4; i++)
        if (lsys_intr_sigs[i] == sig)
            p = &lsys_intr_prev[i];
    lsys_intr_sig = sig;
    if (p->sa_flags & SA_SIGINFO) {
        if (p->sa_sigaction)
            p->sa_sigaction(sig, si, uc);
    } else if (p->sa_handler == SIG_DFL) {
        /* nobody else handles it: inside an interruptible region the work
         * polls the flag and stops; elsewhere the default action */
        if (lsys_intr_depth > 0)
            return;
        signal(sig, SIG_DFL);
        raise(sig);
    } else if (p->sa_handler != SIG_IGN) {
        p->sa_handler(sig);
    }
}

static void lsys_intr_install(int norestart)
{
    struct sigaction sa;
    if (lsys_intr_installed && lsys_intr_norestart == norestart)
        return;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = lsys_intr_handler;
    sa.sa_flags = SA_SIGINFO | (norestart ? 0 : SA_RESTART);
    sigfillset(&sa.sa_mask);
    for (int i = 0; i < 4; i++)
        sigaction(lsys_intr_sigs[i], &sa, lsys_intr_installed ? NULL : &lsys_intr_prev[i]);
    lsys_intr_installed = 1;
    lsys_intr_norestart = norestart;
}

/* core.interrupted() -> "SIGINT" | "SIGTERM" | "SIGHUP" | "SIGQUIT" | nil
 * (the first call starts watching: call it once before the work begins) */
static int lsys_interrupted(lua_State *L)
{
    int sig = lsys_intr_sig;
    lsys_intr_install(lsys_intr_norestart);
    if (!sig)
        return 0;
    lua_pushstring(L, sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP"
                      : sig == SIGQUIT ? "SIGQUIT" : "SIGINT");
    return 1;
}

/* core.interruptible(true) enters a region of long synchronous work, false
 * leaves it (regions nest). Inside, the signals interrupt blocking system
 * calls (EINTR) and, where no loop watcher handles them, only set the flag
 * the work polls with core.interrupted(). */
static int lsys_interruptible(lua_State *L)
{
    if (lua_toboolean(L, 1))
        lsys_intr_depth++;
    else if (lsys_intr_depth > 0)
        lsys_intr_depth--;
    lsys_intr_install(lsys_intr_depth > 0);
    return 0;
}

/* core.rusage() -> {utime=, stime=, maxrss_kb=} of orch itself (seconds),
 * without its children. */
static int lsys_rusage(lua_State *L)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    lua_createtable(L, 0, 3);
    lua_pushnumber(L, (lua_Number)ru.ru_utime.tv_sec + (lua_Number)ru.ru_utime.tv_usec / 1e6);
    lua_setfield(L, -2, "utime");
    lua_pushnumber(L, (lua_Number)ru.ru_stime.tv_sec + (lua_Number)ru.ru_stime.tv_usec / 1e6);
    lua_setfield(L, -2, "stime");
    lua_pushinteger(L, (lua_Integer)ru.ru_maxrss);
    lua_setfield(L, -2, "maxrss_kb");
    return 1;
}

/* core.readdir(path) -> list of names (no "." or ".."), or nil, msg, code */
static int lsys_readdir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    DIR *d = opendir(path);
    struct dirent *e;
    int i = 0;

    if (!d)
        return lorch_fail(L, -errno, lua_pushfstring(L, "%s: %s", path, strerror(errno)));
    lua_newtable(L);
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        lua_pushstring(L, e->d_name);
        lua_rawseti(L, -2, ++i);
    }
    closedir(d);
    return 1;
}

/* core.lstat(path) -> {type=, size=, mode=, mtime=} without following a
 * final symlink; type is "file", "dir", "link" or "other". */
static int lsys_lstat(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    const char *type = "other";

    if (lstat(path, &st) < 0)
        return lorch_fail(L, -errno, lua_pushfstring(L, "%s: %s", path, strerror(errno)));
    if (S_ISREG(st.st_mode))
        type = "file";
    else if (S_ISDIR(st.st_mode))
        type = "dir";
    else if (S_ISLNK(st.st_mode))
        type = "link";
    lua_createtable(L, 0, 4);
    lua_pushstring(L, type);
    lua_setfield(L, -2, "type");
    lua_pushnumber(L, (lua_Number)st.st_size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
    lua_setfield(L, -2, "mode");
    lua_pushnumber(L, (lua_Number)st.st_mtime);
    lua_setfield(L, -2, "mtime");
    return 1;
}

/* core.readlink(path) -> the target of a symlink, or nil, msg, code
 * (EINVAL when path is not a symlink). */
static int lsys_readlink(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    char buf[4096];
    ssize_t n = readlink(path, buf, sizeof buf);

    if (n < 0)
        return lorch_fail(L, -errno, lua_pushfstring(L, "%s: %s", path, strerror(errno)));
    if ((size_t)n >= sizeof buf)
        return lorch_fail(L, -ENAMETOOLONG, NULL);
    lua_pushlstring(L, buf, (size_t)n);
    return 1;
}

/* core.isatty(fd) -> boolean */
static int lsys_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}

static const luaL_Reg lsys_fns[] = {
    {"getpid", lsys_getpid},
    {"cwd", lsys_cwd},
    {"realpath", lsys_realpath},
    {"kill", lsys_kill},
    {"mkdir_p", lsys_mkdir_p},
    {"chmod", lsys_chmod},
    {"interrupted", lsys_interrupted},
    {"interruptible", lsys_interruptible},
    {"readdir", lsys_readdir},
    {"lstat", lsys_lstat},
    {"readlink", lsys_readlink},
    {"isatty", lsys_isatty},
    {"rusage", lsys_rusage},
    {NULL, NULL},
};

int lorch_open_sys(lua_State *L)
{
    lua_newtable(L);
    luaL_register(L, NULL, lsys_fns);
    return 1;
}
