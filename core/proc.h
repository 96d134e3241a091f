/* proc.h - child processes owned by orch.
 *
 * Every child is cloned (spawn.h: orch goes on while it execs; posix_spawn
 * where that cannot be) in its own session and process group,
 * with stdout and stderr read concurrently by the loop and split into lines,
 * stdin a pipe or /dev/null. Children are reaped by one SIGCHLD watcher that
 * also reaps orphans re-parented to orch (orch is a child subreaper), so no
 * zombie is ever left. The exit callback comes after the process exited and
 * its output pipes reached end of file (or `linger_ms` passed), so all output
 * is delivered before it.
 *
 * Lifetime: an orch_proc is owned by the module until its exit callback has
 * run and the owner called orch_proc_release(); then it is freed once its
 * handles are closed. */
#ifndef ORCH_PROC_H
#define ORCH_PROC_H

/* The longest output line delivered whole: a longer one is delivered as its
 * first and last 8 MiB around " [... orch cut N bytes ...] " (memory stays
 * bounded however long a line a task prints; see core/linebuf.h). */
#define ORCH_PROC_MAX_LINE ((size_t)16 * 1024 * 1024)

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

typedef struct orch_proc orch_proc;

enum orch_proc_stdio {
    ORCH_PROC_NULL = 0, /* /dev/null */
    ORCH_PROC_PIPE,     /* a pipe: lines to on_line, or writes for stdin */
    ORCH_PROC_INHERIT   /* orch's own descriptor */
};

typedef struct orch_proc_cb {
    /* stream is 1 (stdout) or 2 (stderr); line excludes the '\n'. */
    void (*on_line)(orch_proc *p, int stream, const char *line, size_t len,
                    void *ud);
    /* Instead of on_line (when set): the lines of one read at a time,
     * joined with '\n' (nlines of them, the longest maxlen bytes; see
     * linechunk.h): one call per read instead of one per line. */
    void (*on_lines)(orch_proc *p, int stream, const char *data, size_t len,
                     size_t nlines, size_t maxlen, void *ud);
    /* exit_code is -1 when killed by term_signal. */
    void (*on_exit)(orch_proc *p, int exit_code, int term_signal, void *ud);
} orch_proc_cb;

typedef struct orch_proc_opts {
    const char *const *argv; /* argv[0] is looked up in PATH */
    const char *cwd;         /* NULL: orch's */
    /* Environment changes over orch's own: "K=V" sets, "K" removes. */
    const char *const *env;
    size_t env_count;
    enum orch_proc_stdio in, out, err;
    unsigned linger_ms; /* wait for EOF after exit; 0 = default (2000) */
} orch_proc_opts;

/* Starts the SIGCHLD watcher and makes orch a child subreaper. Called once. */
int orch_proc_init(uv_loop_t *loop);
/* Stops the watcher (after every process is gone). */
void orch_proc_shutdown_watchers(void);

int orch_proc_spawn(uv_loop_t *loop, const orch_proc_opts *opts,
                    const orch_proc_cb *cb, void *ud, orch_proc **out);

pid_t orch_proc_pid(const orch_proc *p);
int orch_proc_alive(const orch_proc *p); /* not yet reaped */
/* 1 and the exit code (-1 if signalled) and signal once reaped, else 0. */
int orch_proc_reaped(const orch_proc *p, int *exit_code, int *term_signal);
/* Queues bytes for stdin (copied). */
int orch_proc_write(orch_proc *p, const char *data, size_t len);
/* Closes stdin once queued writes are done. */
int orch_proc_close_stdin(orch_proc *p);
/* Sends sig to the whole process group. */
int orch_proc_kill(orch_proc *p, int sig);
/* SIGTERM to the group, SIGKILL grace_ms later if still alive. */
int orch_proc_cancel(orch_proc *p, unsigned grace_ms);
/* The owner lets go; callbacks stop; freed when closed. */
void orch_proc_release(orch_proc *p);

/* Number of processes not yet reaped. */
size_t orch_proc_live_count(void);
/* Appends the process-group ids of live processes to pgids (up to max). */
size_t orch_proc_live_groups(pid_t *pgids, size_t max);
/* Sends sig to every live process group. */
void orch_proc_kill_all(int sig);
/* Reaps any exited child (ours or an orphan); returns how many. */
int orch_proc_reap(void);

#endif
