/* proc.c - spawning, reading, killing and reaping child processes (proc.h). */
#include "proc.h"

#include "err.h"
#include "linebuf.h"
#include "linechunk.h"
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <stdio.h>
#include <unistd.h>

extern char **environ;

#define ORCH_PROC_LINGER_DEFAULT 2000

typedef struct orch_proc_stream {
    uv_pipe_t pipe;
    orch_linebuf lb;
    orch_linechunk chunk; /* on_lines: the lines of this read */
    int open;    /* handle initialised and not yet closing */
    int eof;     /* no more bytes will come */
    int stream;  /* 1 or 2 */
    int throttled; /* reading paused until the end of this turn */
    orch_proc *proc;
} orch_proc_stream;

struct orch_proc {
    uv_loop_t *loop;
    pid_t pid;
    orch_spawn *sp;      /* cloned (spawn.h): its memory, until reaped */
    enum orch_proc_stdio err_mode;
    int exited;          /* reaped */
    int exit_code;
    int term_signal;
    int delivered;       /* on_exit called (or skipped after release) */
    int released;        /* owner let go */
    int closing;         /* handles being closed; freed when closes == 0 */
    int closes;
    int cancelled;
    orch_proc_cb cb;
    void *ud;
    unsigned linger_ms;
    uv_pipe_t in;
    int in_open;
    size_t writes_pending;
    int close_in_after_writes;
    orch_proc_stream out, err;
    uv_timer_t linger;   /* after exit: wait this long for EOF */
    uv_timer_t grace;    /* after cancel: SIGKILL when it fires */
    orch_proc *prev, *next; /* the list of unreaped processes */
};

static orch_proc *orch_proc_live;
static size_t orch_proc_nlive;
static uv_signal_t orch_proc_sigchld;
static int orch_proc_inited;

static void orch_proc_unthrottle(orch_proc_stream *s);
static void orch_proc_forget_paths(void);

/* sig to p's process group; a cloned child not yet past its setsid has
 * none yet: then to the child itself (its signals are blocked until just
 * before its exec, so it gets this one then). -1 and errno on failure. */
static int orch_proc_signal(const orch_proc *p, int sig)
{
    if (killpg(p->pid, sig) == 0)
        return 0;
    if (errno == ESRCH && !p->exited && kill(p->pid, sig) == 0)
        return 0;
    return -1;
}

/* ------------------------------------------------------------ lifetime */

static void orch_proc_free_streams(orch_proc *p)
{
    orch_linebuf_free(&p->out.lb);
    orch_linebuf_free(&p->err.lb);
    orch_linechunk_free(&p->out.chunk);
    orch_linechunk_free(&p->err.chunk);
}

static void orch_proc_on_close(uv_handle_t *h)
{
    orch_proc *p = h->data;
    /* Pipes may close early (at EOF); the struct goes only after
     * orch_proc_begin_close() closed the rest. */
    if (--p->closes == 0 && p->closing) {
        orch_proc_free_streams(p);
        free(p);
    }
}

static void orch_proc_close_handle(orch_proc *p, uv_handle_t *h)
{
    if (!uv_is_closing(h)) {
        p->closes++;
        uv_close(h, orch_proc_on_close);
    }
}

static void orch_proc_close_stream(orch_proc_stream *s)
{
    orch_proc_unthrottle(s);
    if (s->open) {
        s->open = 0;
        uv_read_stop((uv_stream_t *)&s->pipe);
        orch_proc_close_handle(s->proc, (uv_handle_t *)&s->pipe);
    }
}

/* Closes every handle; the struct is freed by the last close callback. The
 * closes counter starts at 1 so that nothing frees p while we are here. */
static void orch_proc_begin_close(orch_proc *p)
{
    if (p->closing)
        return;
    p->closing = 1;
    p->closes++;
    if (p->in_open) {
        p->in_open = 0;
        orch_proc_close_handle(p, (uv_handle_t *)&p->in);
    }
    orch_proc_close_stream(&p->out);
    orch_proc_close_stream(&p->err);
    orch_proc_close_handle(p, (uv_handle_t *)&p->linger);
    orch_proc_close_handle(p, (uv_handle_t *)&p->grace);
    if (--p->closes == 0) {
        orch_proc_free_streams(p);
        free(p);
    }
}

static int orch_proc_emit(const char *line, size_t len, void *ud)
{
    orch_proc_stream *s = ud;
    orch_proc *p = s->proc;
    if (p->released)
        return 0;
    if (p->cb.on_lines)
        orch_linechunk_add(&s->chunk, line, len);
    else if (p->cb.on_line)
        p->cb.on_line(p, s->stream, line, len, p->ud);
    return 0;
}

/* on_lines: the lines of one read, as one chunk */
static void orch_proc_emit_chunk(const char *data, size_t len, size_t nlines,
                                 size_t maxlen, void *ud)
{
    orch_proc_stream *s = ud;
    orch_proc *p = s->proc;
    if (!p->released && p->cb.on_lines)
        p->cb.on_lines(p, s->stream, data, len, nlines, maxlen, p->ud);
}

static int orch_proc_streams_done(orch_proc *p)
{
    return (!p->out.open || p->out.eof) && (!p->err.open || p->err.eof);
}

static void orch_proc_deliver(orch_proc *p)
{
    if (p->delivered || !p->exited || !orch_proc_streams_done(p))
        return;
    p->delivered = 1;
    uv_timer_stop(&p->linger);
    uv_timer_stop(&p->grace);
    if (p->cancelled)
        orch_proc_signal(p, SIGKILL); /* stragglers of a cancelled group */
    orch_proc_close_stream(&p->out);
    orch_proc_close_stream(&p->err);
    if (!p->released && p->cb.on_exit)
        p->cb.on_exit(p, p->exit_code, p->term_signal, p->ud);
    if (p->released)
        orch_proc_begin_close(p);
}

void orch_proc_release(orch_proc *p)
{
    if (!p || p->released)
        return;
    p->released = 1;
    if (p->delivered)
        orch_proc_begin_close(p);
}

/* ------------------------------------------------------------ fairness */

/* A flood of output on a few pipes must not hold up the rest of the loop
 * (other pipes, timers, the terminal's keys): libuv reads a readable pipe
 * up to 32 times in one callback, and every line is work. Once a turn of
 * the loop has gone on for ORCH_PROC_TURN_MS since its poll returned, a
 * stream reads one small chunk and pauses until the end of the turn (a
 * check handle starts it again), so the turn ends soon and everything else
 * gets its go; the pipe's own buffer holds the rest (the writer waits). */
#define ORCH_PROC_TURN_MS 5
#define ORCH_PROC_CHUNK 16384
#define ORCH_PROC_SLOW_CHUNK 4096

static orch_proc_stream **orch_proc_paused;
static size_t orch_proc_npaused, orch_proc_cappaused;
static uv_check_t orch_proc_resume;
static int orch_proc_resume_inited;

static int orch_proc_turn_over(uv_loop_t *loop)
{
    return uv_hrtime() / 1000000 >= uv_now(loop) + ORCH_PROC_TURN_MS;
}

static void orch_proc_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);
static void orch_proc_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);

static void orch_proc_on_resume(uv_check_t *h)
{
    size_t n = orch_proc_npaused;
    (void)h;
    orch_proc_npaused = 0;
    uv_check_stop(&orch_proc_resume);
    for (size_t i = 0; i < n; i++) {
        orch_proc_stream *s = orch_proc_paused[i];
        s->throttled = 0;
        if (s->open && !s->eof)
            uv_read_start((uv_stream_t *)&s->pipe, orch_proc_alloc, orch_proc_read);
    }
}

/* Pauses s until the end of this turn; without room to note it, it goes on. */
static void orch_proc_throttle(orch_proc_stream *s)
{
    if (s->throttled || !orch_proc_resume_inited)
        return;
    if (orch_proc_npaused == orch_proc_cappaused) {
        size_t cap = orch_proc_cappaused ? orch_proc_cappaused * 2 : 16;
        orch_proc_stream **v = realloc(orch_proc_paused, cap * sizeof *v);
        if (!v)
            return;
        orch_proc_paused = v;
        orch_proc_cappaused = cap;
    }
    uv_read_stop((uv_stream_t *)&s->pipe);
    s->throttled = 1;
    orch_proc_paused[orch_proc_npaused++] = s;
    uv_check_start(&orch_proc_resume, orch_proc_on_resume);
}

static void orch_proc_unthrottle(orch_proc_stream *s)
{
    if (!s->throttled)
        return;
    s->throttled = 0;
    for (size_t i = 0; i < orch_proc_npaused; i++) {
        if (orch_proc_paused[i] == s) {
            orch_proc_paused[i] = orch_proc_paused[--orch_proc_npaused];
            break;
        }
    }
}

/* ------------------------------------------------------------ reading */

static void orch_proc_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    orch_proc_stream *s =
        (orch_proc_stream *)((char *)h - offsetof(orch_proc_stream, pipe));
    size_t avail = 0;
    char *base = orch_linebuf_space(&s->lb, 65536, &avail);

    (void)hint;
    if (avail > (1u << 30))
        avail = 1u << 30;
    /* reads of a bounded size, so that the turn's clock is looked at often;
     * a turn that went on too long: a small read, then a pause */
    if (avail > ORCH_PROC_CHUNK)
        avail = ORCH_PROC_CHUNK;
    if (avail > ORCH_PROC_SLOW_CHUNK && orch_proc_turn_over(s->proc->loop))
        avail = ORCH_PROC_SLOW_CHUNK;
    *buf = uv_buf_init(base, base ? (unsigned)avail : 0);
}

static void orch_proc_stream_eof(orch_proc_stream *s)
{
    if (s->eof)
        return;
    s->eof = 1;
    orch_linebuf_finish(&s->lb, orch_proc_emit, s);
    orch_linechunk_flush(&s->chunk);
    orch_proc_close_stream(s);
    orch_proc_deliver(s->proc);
}

static void orch_proc_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    orch_proc_stream *s =
        (orch_proc_stream *)((char *)st - offsetof(orch_proc_stream, pipe));
    (void)buf;
    if (n > 0) {
        orch_linebuf_commit(&s->lb, (size_t)n, orch_proc_emit, s);
        orch_linechunk_flush(&s->chunk);
        if (s->open && !s->eof && orch_proc_turn_over(s->proc->loop))
            orch_proc_throttle(s);
    } else if (n < 0) {
        orch_proc_stream_eof(s); /* UV_EOF, or an error: nothing more comes */
    }
}

/* ------------------------------------------------------------ reaping */

static void orch_proc_unlink(orch_proc *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        orch_proc_live = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
    /* The SIGCHLD watcher keeps the loop alive while a child is unreaped. */
    if (--orch_proc_nlive == 0 && orch_proc_inited)
        uv_unref((uv_handle_t *)&orch_proc_sigchld);
}

static void orch_proc_on_linger(uv_timer_t *t)
{
    orch_proc *p = t->data;
    /* Something (a background grandchild) still holds the pipes open: stop
     * waiting for it, keep what was read. */
    if (!p->out.eof)
        orch_proc_stream_eof(&p->out);
    if (!p->err.eof)
        orch_proc_stream_eof(&p->err);
    orch_proc_deliver(p);
}

/* A cloned child that could not exec says why on its stderr, as a shell
 * would (the exit code is 127). */
static void orch_proc_spawn_failed(orch_proc *p)
{
    const char *step;
    char msg[512];
    int err = orch_spawn_failure(p->sp, &step), n;

    if (!err || p->released)
        return;
    n = snprintf(msg, sizeof msg, "orch: cannot start %s: %s: %s",
                 orch_spawn_path(p->sp), step, strerror(err));
    if (n < 0)
        return;
    if ((size_t)n >= sizeof msg)
        n = (int)sizeof msg - 1;
    if (p->err_mode == ORCH_PROC_PIPE) {
        orch_proc_emit(msg, (size_t)n, &p->err);
        orch_linechunk_flush(&p->err.chunk);
    } else if (p->err_mode == ORCH_PROC_INHERIT) {
        dprintf(2, "%s\n", msg);
    }
}

static void orch_proc_exited(orch_proc *p, int status)
{
    p->exited = 1;
    orch_proc_unlink(p);
    if (p->sp) {
        orch_proc_spawn_failed(p);
        orch_spawn_free(p->sp);
        p->sp = NULL;
    }
    if (WIFEXITED(status)) {
        p->exit_code = WEXITSTATUS(status);
        p->term_signal = 0;
    } else {
        p->exit_code = -1;
        p->term_signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    }
    if (!orch_proc_streams_done(p))
        uv_timer_start(&p->linger, orch_proc_on_linger, p->linger_ms, 0);
    orch_proc_deliver(p);
}

int orch_proc_reap(void)
{
    int n = 0;
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        orch_proc *p;
        if (pid <= 0)
            break;
        n++;
        for (p = orch_proc_live; p; p = p->next) {
            if (p->pid == pid) {
                orch_proc_exited(p, status);
                break;
            }
        }
        /* not ours: an orphan re-parented to us; reaping it is all. */
    }
    return n;
}

static void orch_proc_on_sigchld(uv_signal_t *h, int sig)
{
    (void)h;
    (void)sig;
    orch_proc_reap();
}

int orch_proc_init(uv_loop_t *loop)
{
    int rc;
    if (orch_proc_inited)
        return 0;
    /* Orphans of our children come to us, so we can reap and sweep them. */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    rc = uv_signal_init(loop, &orch_proc_sigchld);
    if (rc < 0)
        return orch_err_set(rc, "SIGCHLD watcher: %s", uv_strerror(rc));
    rc = uv_signal_start(&orch_proc_sigchld, orch_proc_on_sigchld, SIGCHLD);
    if (rc < 0)
        return orch_err_set(rc, "SIGCHLD watcher: %s", uv_strerror(rc));
    uv_unref((uv_handle_t *)&orch_proc_sigchld);
    if (uv_check_init(loop, &orch_proc_resume) == 0) {
        uv_unref((uv_handle_t *)&orch_proc_resume); /* the pipes keep the loop alive */
        orch_proc_resume_inited = 1;
    }
    orch_proc_inited = 1;
    return 0;
}

void orch_proc_shutdown_watchers(void)
{
    if (orch_proc_inited) {
        uv_close((uv_handle_t *)&orch_proc_sigchld, NULL);
        orch_proc_inited = 0;
    }
    if (orch_proc_resume_inited) {
        uv_close((uv_handle_t *)&orch_proc_resume, NULL);
        orch_proc_resume_inited = 0;
    }
    free(orch_proc_paused);
    orch_proc_paused = NULL;
    orch_proc_forget_paths();
    orch_proc_npaused = orch_proc_cappaused = 0;
}

/* ------------------------------------------------------------ spawning */

static const int orch_proc_resets[] = {
    SIGPIPE, SIGHUP,  SIGINT,  SIGQUIT, SIGTERM, SIGCHLD, SIGUSR1,
    SIGUSR2, SIGALRM, SIGTSTP, SIGTTIN, SIGTTOU, SIGWINCH, SIGXFSZ,
};

static int orch_proc_env_matches(const char *entry, const char *change)
{
    size_t k = strcspn(change, "=");
    return strncmp(entry, change, k) == 0 && entry[k] == '=';
}

/* Builds the child's environment: orch's, with opts' changes applied. */
static char **orch_proc_build_env(const orch_proc_opts *o)
{
    size_t n = 0, i, j, out = 0;
    char **env;

    while (environ[n])
        n++;
    env = calloc(n + o->env_count + 1, sizeof *env);
    if (!env)
        return NULL;
    for (i = 0; i < n; i++) {
        int drop = 0;
        for (j = 0; j < o->env_count && !drop; j++)
            drop = orch_proc_env_matches(environ[i], o->env[j]);
        if (!drop)
            env[out++] = environ[i];
    }
    for (j = 0; j < o->env_count; j++)
        if (strchr(o->env[j], '='))
            env[out++] = (char *)o->env[j];
    env[out] = NULL;
    return env;
}

/* Where PATH finds a program, looked up once per name: posix_spawnp makes
 * the child try every PATH entry with an execve of its own (11 here before
 * /usr/bin/sh), and a clone (spawn.h) execs one path it is given. Only
 * with an all-absolute PATH (an empty or relative entry would be looked up
 * from the child's directory) and while PATH stays what it was; a path that
 * no longer runs is looked up again by posix_spawnp. */
#define ORCH_PROC_PATHS 8

typedef struct orch_proc_path {
    char *name, *path, *env; /* env: PATH when it was looked up */
} orch_proc_path;

static orch_proc_path orch_proc_paths[ORCH_PROC_PATHS];
static size_t orch_proc_npaths;

/* A regular file orch may execute. */
static int orch_proc_runnable(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && access(path, X_OK) == 0;
}

static void orch_proc_path_free(orch_proc_path *e)
{
    free(e->name);
    free(e->path);
    free(e->env);
    e->name = e->path = e->env = NULL;
}

static void orch_proc_forget_paths(void)
{
    for (size_t i = 0; i < orch_proc_npaths; i++)
        orch_proc_path_free(&orch_proc_paths[i]);
    orch_proc_npaths = 0;
}

static int orch_proc_path_absolute(const char *env)
{
    const char *p = env;
    if (!*p)
        return 0;
    for (;;) {
        if (*p != '/')
            return 0; /* an empty entry or a relative one */
        p += strcspn(p, ":");
        if (!*p)
            return 1;
        p++;
    }
}

/* The cached or looked-up path of name (NULL: let posix_spawnp search). */
static const char *orch_proc_which(const char *name)
{
    const char *env = getenv("PATH");
    char buf[4096];
    orch_proc_path *e;

    if (strchr(name, '/') || !env || !orch_proc_path_absolute(env))
        return NULL;
    for (size_t i = 0; i < orch_proc_npaths; i++) {
        e = &orch_proc_paths[i];
        if (!strcmp(e->name, name)) {
            if (!strcmp(e->env, env))
                return e->path;
            orch_proc_path_free(e); /* PATH changed */
            *e = orch_proc_paths[--orch_proc_npaths];
            orch_proc_paths[orch_proc_npaths].name = NULL;
            break;
        }
    }
    for (const char *p = env; *p;) {
        size_t n = strcspn(p, ":");
        if (n + 1 + strlen(name) < sizeof buf) {
            memcpy(buf, p, n);
            buf[n] = '/';
            strcpy(buf + n + 1, name);
            if (orch_proc_runnable(buf))
                break;
        }
        buf[0] = '\0';
        p += n;
        if (*p)
            p++;
    }
    if (!buf[0] || orch_proc_npaths == ORCH_PROC_PATHS)
        return NULL;
    e = &orch_proc_paths[orch_proc_npaths];
    e->name = strdup(name);
    e->path = strdup(buf);
    e->env = strdup(env);
    if (!e->name || !e->path || !e->env) {
        orch_proc_path_free(e);
        return NULL;
    }
    orch_proc_npaths++;
    return e->path;
}

static void orch_proc_unwhich(const char *name)
{
    for (size_t i = 0; i < orch_proc_npaths; i++)
        if (!strcmp(orch_proc_paths[i].name, name)) {
            orch_proc_path_free(&orch_proc_paths[i]);
            orch_proc_paths[i] = orch_proc_paths[--orch_proc_npaths];
            orch_proc_paths[orch_proc_npaths].name = NULL;
            return;
        }
}

/* The pipe for a stream: fds[child_end] goes to the child. */
static int orch_proc_pipe(enum orch_proc_stdio mode, int fds[2])
{
    fds[0] = fds[1] = -1;
    if (mode == ORCH_PROC_PIPE && pipe2(fds, O_CLOEXEC) < 0)
        return errno;
    return 0;
}

static int orch_proc_stdio(posix_spawn_file_actions_t *fa, enum orch_proc_stdio mode,
                           int target, int flags, int child_fd)
{
    if (mode == ORCH_PROC_NULL)
        return posix_spawn_file_actions_addopen(fa, target, "/dev/null", flags, 0);
    if (mode == ORCH_PROC_PIPE)
        return posix_spawn_file_actions_adddup2(fa, child_fd, target);
    return 0;
}

static void orch_proc_close_fds(int fds[2])
{
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
}

static int orch_proc_open_stream(orch_proc *p, orch_proc_stream *s, int fd,
                                 int stream)
{
    int rc;
    s->proc = p;
    s->stream = stream;
    orch_linebuf_init(&s->lb);
    orch_linechunk_init(&s->chunk, orch_proc_emit_chunk, s);
    /* a line longer than this keeps its head and tail (linebuf.h) */
    orch_linebuf_limit(&s->lb, ORCH_PROC_MAX_LINE, ORCH_LINEBUF_CUT);
    rc = uv_pipe_init(p->loop, &s->pipe, 0);
    if (rc < 0)
        return rc;
    s->pipe.data = p;
    s->open = 1;
    rc = uv_pipe_open(&s->pipe, fd);
    if (rc < 0)
        return rc;
    return uv_read_start((uv_stream_t *)&s->pipe, orch_proc_alloc, orch_proc_read);
}

/* The program a clone can exec: found in PATH, or an absolute path to an
 * executable file (anything else goes through posix_spawnp). The clone's
 * exec fails after orch_proc_spawn returned, so a cached path is checked
 * first (one access(2)): a program removed or replaced is looked up again. */
static const char *orch_proc_clone_path(const char *name)
{
    const char *path;
    if (name[0] == '/')
        return orch_proc_runnable(name) ? name : NULL;
    path = orch_proc_which(name);
    if (path && access(path, X_OK) != 0) {
        orch_proc_unwhich(name);
        path = orch_proc_which(name);
    }
    return path;
}

/* Spawns without waiting for the child's exec (spawn.h): 0, or an errno
 * (then posix_spawn is tried). */
static int orch_proc_clone(orch_proc *p, const orch_proc_opts *o, char **env,
                           int fin[2], int fout[2], int ferr[2])
{
    const enum orch_proc_stdio modes[3] = {o->in, o->out, o->err};
    const int child[3] = {fin[0], fout[1], ferr[1]};
    orch_spawn_opts so;
    int rc;

    memset(&so, 0, sizeof so);
    so.path = orch_proc_clone_path(o->argv[0]);
    if (!so.path)
        return ENOENT;
    so.argv = o->argv;
    so.envp = (const char *const *)env;
    so.cwd = o->cwd;
    for (int i = 0; i < 3; i++) {
        so.fd_mode[i] = modes[i] == ORCH_PROC_NULL   ? ORCH_SPAWN_DEVNULL
                        : modes[i] == ORCH_PROC_PIPE ? ORCH_SPAWN_DUP
                                                     : ORCH_SPAWN_KEEP;
        so.fd[i] = child[i];
    }
    so.reset = orch_proc_resets;
    so.nreset = sizeof orch_proc_resets / sizeof *orch_proc_resets;
    rc = orch_spawn_start(&so, &p->sp, &p->pid);
    return rc < 0 ? -rc : 0;
}

/* posix_spawn, which returns once the child exec'd: 0 or an errno. */
static int orch_proc_posix_spawn(orch_proc *p, const orch_proc_opts *o, char **env,
                                 int fin[2], int fout[2], int ferr[2])
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t set;
    int rc;

    if ((rc = posix_spawn_file_actions_init(&fa)) != 0)
        return rc;
    if ((rc = posix_spawnattr_init(&attr)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return rc;
    }
    if ((rc = orch_proc_stdio(&fa, o->in, 0, O_RDONLY, fin[0])) != 0 ||
        (rc = orch_proc_stdio(&fa, o->out, 1, O_WRONLY, fout[1])) != 0 ||
        (rc = orch_proc_stdio(&fa, o->err, 2, O_WRONLY, ferr[1])) != 0)
        goto cleanup;
    if (o->cwd && (rc = posix_spawn_file_actions_addchdir_np(&fa, o->cwd)) != 0)
        goto cleanup;
    sigemptyset(&set);
    posix_spawnattr_setsigmask(&attr, &set);
    /* Handlers do not survive exec, ignored signals do: reset the ones
     * orch (SIGPIPE) or whoever started orch (nohup, a shell's background
     * job) may ignore. A full set would cost 64 sigaction calls a spawn. */
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof orch_proc_resets / sizeof *orch_proc_resets; i++)
        sigaddset(&set, orch_proc_resets[i]);
    posix_spawnattr_setsigdefault(&attr, &set);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    {
        const char *file = orch_proc_which(o->argv[0]);
        rc = file ? posix_spawn(&p->pid, file, &fa, &attr, (char *const *)o->argv, env) : -1;
        if (rc != 0) {
            if (file)
                orch_proc_unwhich(o->argv[0]); /* gone or changed: search again */
            rc = posix_spawnp(&p->pid, o->argv[0], &fa, &attr, (char *const *)o->argv, env);
        }
    }
cleanup:
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    return rc;
}

int orch_proc_spawn(uv_loop_t *loop, const orch_proc_opts *o,
                    const orch_proc_cb *cb, void *ud, orch_proc **out)
{
    int fin[2] = {-1, -1}, fout[2] = {-1, -1}, ferr[2] = {-1, -1};
    char **env = NULL;
    orch_proc *p = NULL;
    int rc;
    struct stat sb;

    *out = NULL;
    if (!o->argv || !o->argv[0] || !o->argv[0][0])
        return orch_err_set(-EINVAL, "spawn: empty argv");
    if (o->cwd && (stat(o->cwd, &sb) < 0 || !S_ISDIR(sb.st_mode)))
        return orch_err_set(-ENOENT, "spawn %s: working directory %s: %s",
                            o->argv[0], o->cwd,
                            errno ? strerror(errno) : "not a directory");
    rc = orch_proc_init(loop);
    if (rc < 0)
        return rc;
    p = calloc(1, sizeof *p);
    if (!p)
        return orch_err_set(-ENOMEM, "spawn: out of memory");
    p->loop = loop;
    p->cb = *cb;
    p->ud = ud;
    p->linger_ms = o->linger_ms ? o->linger_ms : ORCH_PROC_LINGER_DEFAULT;
    p->err_mode = o->err;
    env = orch_proc_build_env(o);
    if (!env) {
        rc = orch_err_set(-ENOMEM, "spawn: out of memory");
        goto cleanup;
    }
    if ((rc = orch_proc_pipe(o->in, fin)) != 0 || (rc = orch_proc_pipe(o->out, fout)) != 0 ||
        (rc = orch_proc_pipe(o->err, ferr)) != 0)
        goto spawn_error;
    if (orch_proc_clone(p, o, env, fin, fout, ferr) != 0 &&
        (rc = orch_proc_posix_spawn(p, o, env, fin, fout, ferr)) != 0)
        goto spawn_error;

    /* The child runs: from here on p is linked and must be reaped. */
    p->prev = NULL;
    p->next = orch_proc_live;
    if (orch_proc_live)
        orch_proc_live->prev = p;
    orch_proc_live = p;
    if (orch_proc_nlive++ == 0)
        uv_ref((uv_handle_t *)&orch_proc_sigchld);
    uv_timer_init(loop, &p->linger);
    uv_timer_init(loop, &p->grace);
    p->linger.data = p->grace.data = p;
    if (fin[0] >= 0) {
        close(fin[0]);
        fin[0] = -1;
        uv_pipe_init(loop, &p->in, 0);
        p->in.data = p;
        p->in_open = 1;
        uv_pipe_open(&p->in, fin[1]);
        fin[1] = -1;
    }
    if (fout[0] >= 0) {
        close(fout[1]);
        fout[1] = -1;
        orch_proc_open_stream(p, &p->out, fout[0], 1);
        fout[0] = -1;
    }
    if (ferr[0] >= 0) {
        close(ferr[1]);
        ferr[1] = -1;
        orch_proc_open_stream(p, &p->err, ferr[0], 2);
        ferr[0] = -1;
    }
    *out = p;
    p = NULL;
    rc = 0;
    goto cleanup;

spawn_error:
    rc = orch_err_set(-rc, "spawn %s: %s", o->argv[0], strerror(rc));
cleanup:
    orch_proc_close_fds(fin);
    orch_proc_close_fds(fout);
    orch_proc_close_fds(ferr);
    free(env);
    free(p);
    return rc;
}

/* ------------------------------------------------------------ control */

pid_t orch_proc_pid(const orch_proc *p)
{
    return p->pid;
}

int orch_proc_alive(const orch_proc *p)
{
    return !p->exited;
}

int orch_proc_reaped(const orch_proc *p, int *exit_code, int *term_signal)
{
    if (!p->exited)
        return 0;
    *exit_code = p->exit_code;
    *term_signal = p->term_signal;
    return 1;
}

typedef struct orch_proc_write_req {
    uv_write_t req;
    orch_proc *proc;
    char data[];
} orch_proc_write_req;

static void orch_proc_maybe_close_in(orch_proc *p)
{
    if (p->close_in_after_writes && p->writes_pending == 0 && p->in_open) {
        p->in_open = 0;
        orch_proc_close_handle(p, (uv_handle_t *)&p->in);
    }
}

static void orch_proc_on_write(uv_write_t *req, int status)
{
    orch_proc_write_req *w = (orch_proc_write_req *)req;
    orch_proc *p = w->proc;
    (void)status; /* EPIPE when the child stopped reading: nothing to do */
    p->writes_pending--;
    free(w);
    orch_proc_maybe_close_in(p);
}

int orch_proc_write(orch_proc *p, const char *data, size_t len)
{
    orch_proc_write_req *w;
    uv_buf_t b;
    int rc;

    if (!p->in_open || p->close_in_after_writes)
        return orch_err_set(-EPIPE, "stdin of process %d is closed", (int)p->pid);
    w = malloc(sizeof *w + len);
    if (!w)
        return orch_err_set(-ENOMEM, "write: out of memory");
    memcpy(w->data, data, len);
    w->proc = p;
    b = uv_buf_init(w->data, (unsigned)len);
    rc = uv_write(&w->req, (uv_stream_t *)&p->in, &b, 1, orch_proc_on_write);
    if (rc < 0) {
        free(w);
        return orch_err_set(rc, "write to process %d: %s", (int)p->pid,
                            uv_strerror(rc));
    }
    p->writes_pending++;
    return 0;
}

int orch_proc_close_stdin(orch_proc *p)
{
    p->close_in_after_writes = 1;
    orch_proc_maybe_close_in(p);
    return 0;
}

int orch_proc_kill(orch_proc *p, int sig)
{
    if (p->delivered && !p->cancelled)
        return 0;
    if (orch_proc_signal(p, sig) < 0 && errno != ESRCH)
        return orch_err_set(-errno, "kill %d: %s", (int)p->pid, strerror(errno));
    return 0;
}

static void orch_proc_on_grace(uv_timer_t *t)
{
    orch_proc *p = t->data;
    orch_proc_signal(p, SIGKILL);
}

int orch_proc_cancel(orch_proc *p, unsigned grace_ms)
{
    if (p->delivered)
        return 0;
    p->cancelled = 1;
    if (orch_proc_signal(p, SIGTERM) < 0 && errno != ESRCH)
        return orch_err_set(-errno, "kill %d: %s", (int)p->pid, strerror(errno));
    if (grace_ms == 0)
        orch_proc_signal(p, SIGKILL);
    else
        uv_timer_start(&p->grace, orch_proc_on_grace, grace_ms, 0);
    return 0;
}

size_t orch_proc_live_count(void)
{
    return orch_proc_nlive;
}

size_t orch_proc_live_groups(pid_t *pgids, size_t max)
{
    size_t n = 0;
    for (orch_proc *p = orch_proc_live; p && n < max; p = p->next)
        pgids[n++] = p->pid;
    return n;
}

void orch_proc_kill_all(int sig)
{
    for (orch_proc *p = orch_proc_live; p; p = p->next)
        orch_proc_signal(p, sig);
}
