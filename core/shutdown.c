/* shutdown.c - the shutdown sequence (see shutdown.h). */
#include "shutdown.h"

#include "proc.h"
#include "sweep.h"
#include "term.h"

#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#define SHUTDOWN_MAX_GROUPS 4096

static const struct {
    int num;
    const char *name;
    int code;
} shutdown_signals[] = {
    {SIGINT, "SIGINT", 130},
    {SIGTERM, "SIGTERM", 130},
    {SIGHUP, "SIGHUP", 129},
    {SIGQUIT, "SIGQUIT", 131},
};
#define SHUTDOWN_NSIG (sizeof shutdown_signals / sizeof shutdown_signals[0])

static uv_loop_t *shutdown_loop;
static uv_signal_t shutdown_watchers[SHUTDOWN_NSIG];
static uv_timer_t shutdown_timer;
static int shutdown_ready, shutdown_state, shutdown_sig = 0;
static orch_shutdown_hook shutdown_fn;
static void *shutdown_arg;
static pid_t shutdown_groups[SHUTDOWN_MAX_GROUPS];
static size_t shutdown_ngroups;
static uint64_t shutdown_started;

static int shutdown_index(int signum)
{
    for (size_t i = 0; i < SHUTDOWN_NSIG; i++)
        if (shutdown_signals[i].num == signum)
            return (int)i;
    return 0;
}

const char *orch_shutdown_signame(void)
{
    return shutdown_signals[shutdown_index(shutdown_sig)].name;
}

int orch_shutdown_code(void)
{
    return shutdown_signals[shutdown_index(shutdown_sig)].code;
}

int orch_shutdown_active(void)
{
    return shutdown_state;
}

static void shutdown_hook(const char *phase)
{
    if (shutdown_fn)
        shutdown_fn(phase, orch_shutdown_signame(), shutdown_arg);
}

/* Adds the groups alive now to the list the sweep uses. */
static void shutdown_note_groups(void)
{
    shutdown_ngroups += orch_proc_live_groups(shutdown_groups + shutdown_ngroups,
                                              SHUTDOWN_MAX_GROUPS - shutdown_ngroups);
}

void orch_shutdown_force(void)
{
    shutdown_note_groups();
    orch_proc_kill_all(SIGKILL);
    for (int round = 0; round < 50; round++) {
        int left = orch_sweep_kill(getpid(), shutdown_groups, shutdown_ngroups, SIGKILL);
        orch_proc_reap();
        if (left <= 0)
            break;
        usleep(10000);
    }
    orch_proc_reap();
    orch_term_restore();
    fflush(stdout);
    fflush(stderr);
    _exit(orch_shutdown_code());
}

static void shutdown_tick(uv_timer_t *t)
{
    uint64_t elapsed = uv_now(shutdown_loop) - shutdown_started;
    (void)t;
    orch_proc_reap();
    if (orch_proc_live_count() > 0 && elapsed < ORCH_SHUTDOWN_GRACE_MS)
        return;
    uv_timer_stop(&shutdown_timer);
    shutdown_hook("end");
    orch_shutdown_force();
}

void orch_shutdown_begin(int signum)
{
    if (shutdown_state) {
        fprintf(stderr, "orch: forced exit\n");
        orch_shutdown_force();
    }
    shutdown_state = 1;
    shutdown_sig = signum;
    fprintf(stderr, "orch: %s: stopping (again to force)\n", orch_shutdown_signame());
    shutdown_ngroups = 0;
    shutdown_note_groups();
    /* the front end checkpoints first (marks what was running as interrupted) */
    shutdown_hook("begin");
    shutdown_note_groups();
    orch_proc_kill_all(SIGTERM);
    if (!shutdown_ready) /* no loop: nothing can deliver the exits */
        orch_shutdown_force();
    shutdown_started = uv_now(shutdown_loop);
    uv_timer_start(&shutdown_timer, shutdown_tick, 20, 20);
}

static void shutdown_on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    orch_shutdown_begin(signum);
}

int orch_shutdown_init(uv_loop_t *loop, orch_shutdown_hook hook, void *arg)
{
    int rc;
    shutdown_loop = loop;
    shutdown_fn = hook;
    shutdown_arg = arg;
    if (shutdown_ready)
        return 0;
    if ((rc = uv_timer_init(loop, &shutdown_timer)) < 0)
        return rc;
    for (size_t i = 0; i < SHUTDOWN_NSIG; i++)
        uv_signal_init(loop, &shutdown_watchers[i]); /* cannot fail on unix */
    shutdown_ready = 1; /* from here orch_shutdown_close closes them all */
    for (size_t i = 0; i < SHUTDOWN_NSIG; i++) {
        if ((rc = uv_signal_start(&shutdown_watchers[i], shutdown_on_signal,
                                  shutdown_signals[i].num)) < 0)
            return rc;
        uv_unref((uv_handle_t *)&shutdown_watchers[i]);
    }
    return 0;
}

void orch_shutdown_close(void)
{
    if (!shutdown_ready)
        return;
    shutdown_ready = 0;
    for (size_t i = 0; i < SHUTDOWN_NSIG; i++)
        uv_close((uv_handle_t *)&shutdown_watchers[i], NULL);
    uv_close((uv_handle_t *)&shutdown_timer, NULL);
}
