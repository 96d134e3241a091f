/* shutdown.h - orch's shutdown sequence, in plain C for every front end
 * (the Lua binding in core/lua/lcore.c, a C TUI).
 *
 * On the first SIGINT, SIGTERM, SIGHUP or SIGQUIT (or orch_shutdown_begin):
 *   1. the hook runs with phase "begin" (checkpoint);
 *   2. every process group orch started gets SIGTERM, and the loop goes on
 *      (exits are delivered as usual) for up to ORCH_SHUTDOWN_GRACE_MS;
 *   3. the hook runs with phase "end" (flush and close state);
 *   4. every group gets SIGKILL, a sweep kills whatever escaped its group or
 *      session, what dies is reaped, the terminal is restored (term.h);
 *   5. orch exits with orch_shutdown_code(): 130 for SIGINT and SIGTERM,
 *      129 for SIGHUP, 131 for SIGQUIT.
 * A second signal (of any of the four) skips to step 4 at once.
 *
 *   orch_shutdown_init(loop, hook, arg);   after orch_proc_init
 *   ...
 *   orch_shutdown_close();                 before uv_loop_close
 */
#ifndef ORCH_SHUTDOWN_H
#define ORCH_SHUTDOWN_H

#include <uv.h>

#define ORCH_SHUTDOWN_GRACE_MS 1000

/* phase is "begin" or "end"; signame the signal that began it ("SIGINT"). */
typedef void (*orch_shutdown_hook)(const char *phase, const char *signame, void *arg);

/* Watches the four signals (the watchers do not keep the loop alive).
 * 0, or a negative errno. */
int orch_shutdown_init(uv_loop_t *loop, orch_shutdown_hook hook, void *arg);

/* Begins the sequence as signal signum would (a TUI's quit key, say); a
 * second call forces the exit. signum: SIGINT, SIGTERM, SIGHUP, SIGQUIT. */
void orch_shutdown_begin(int signum);

/* Whether the sequence has begun. */
int orch_shutdown_active(void);

/* The exit code the sequence ends with (130 before it began). */
int orch_shutdown_code(void);

/* The name of the signal that began it ("SIGINT" before it began). */
const char *orch_shutdown_signame(void);

/* Step 4 and 5 at once: kills, sweeps, reaps, restores the terminal, exits. */
void orch_shutdown_force(void) __attribute__((noreturn));

/* Closes the watchers and the timer (the loop is about to be closed). */
void orch_shutdown_close(void);

#endif
