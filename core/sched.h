/* sched.h - the DAG scheduler: dependencies, critical-path priority, bounded
 * concurrency and file write locks. A mechanism only: no I/O, no clock, no
 * Lua. The caller runs what next() hands out and reports with finish().
 *
 *   orch_sched *s = orch_sched_new(4);
 *   orch_sched_add(s, "a", NULL, 0, files, 1, 1.0);   ... for every task
 *   if (orch_sched_check(s) < 0) report orch_sched_error(s, i) ...
 *   while ((t = orch_sched_next(s)) >= 0) start(t);
 *   on completion: orch_sched_finish(s, t, ORCH_OUT_DONE); then next() again.
 *
 * Tasks are indices 0..n-1 in the order they were added. Every operation is
 * O((V+E) log V) over a whole run; locks cost O(files x path depth). */
#ifndef ORCH_SCHED_H
#define ORCH_SCHED_H

#include <stddef.h>

typedef struct orch_sched orch_sched;

typedef enum orch_task_state {
    ORCH_TASK_PENDING,   /* waiting for its deps */
    ORCH_TASK_READY,     /* deps resolved, waiting for a slot or its locks */
    ORCH_TASK_RUNNING,
    ORCH_TASK_DONE,
    ORCH_TASK_FAILED,    /* hard or soft failure (see orch_sched_soft) */
    ORCH_TASK_SKIPPED,
    ORCH_TASK_BLOCKED,   /* a transitive dep failed hard or was cancelled */
    ORCH_TASK_CANCELLED,
    ORCH_TASK_PAUSED,    /* reported for a pending/ready task that is paused */
    ORCH_TASK__COUNT
} orch_task_state;

typedef enum orch_outcome {
    ORCH_OUT_DONE,
    ORCH_OUT_FAILED,      /* hard: every transitive dependent is blocked */
    ORCH_OUT_FAILED_SOFT, /* soft: dependents still run */
    ORCH_OUT_SKIPPED      /* dropped: dependents run without it */
} orch_outcome;

typedef enum orch_sched_errkind {
    ORCH_SCHED_EDUP,      /* ids = {id} */
    ORCH_SCHED_EEMPTY,    /* ids = {""}: an empty id */
    ORCH_SCHED_EUNKNOWN,  /* ids = {task, missing dep} */
    ORCH_SCHED_ESELF,     /* ids = {task} */
    ORCH_SCHED_ECYCLE     /* ids = the cycle, each id depending on the one
                             before it, and the first on the last */
} orch_sched_errkind;

typedef struct orch_sched_error {
    orch_sched_errkind kind;
    const char **ids; /* owned by the scheduler */
    int n;
} orch_sched_error;

/* concurrency: how many tasks may run at once (0 = hand out none). */
orch_sched *orch_sched_new(int concurrency);
void orch_sched_free(orch_sched *s);

/* Adds a task. deps and files are arrays of n strings (copied). weight is
 * the estimated duration (<= 0 means 1). Returns the task index, or -EEXIST
 * (duplicate id), -EINVAL (empty id, NUL byte, bad path), -ENOMEM. A
 * duplicate or empty id is also recorded as a check() error. Tasks may be
 * added after check() (and while running); call check() again before next(). */
int orch_sched_add(orch_sched *s, const char *id, const char *const *deps,
                   size_t ndeps, const char *const *files, size_t nfiles,
                   double weight);

/* Validates the graph (duplicate and empty ids, unknown deps, self deps,
 * cycles - iteratively), then computes priorities and the ready set.
 * 0, or -EINVAL with the problems listed by orch_sched_error(). */
int orch_sched_check(orch_sched *s);
int orch_sched_error_count(const orch_sched *s);
const orch_sched_error *orch_sched_error_at(const orch_sched *s, int i);

/* The highest-priority ready, unpaused task whose whole file set can be
 * locked now, marked running with its locks taken. -EAGAIN if none can
 * start now (no free slot, nothing ready, or every ready task waits for a
 * lock), -EINVAL if the graph does not check. */
int orch_sched_next(orch_sched *s);

/* Reports a running task's outcome and releases its locks. Returns the
 * number of tasks newly blocked (see orch_sched_blocked), or -EINVAL. */
int orch_sched_finish(orch_sched *s, int task, orch_outcome out);

/* The tasks blocked by the last finish/cancel (valid until the next one). */
const int *orch_sched_blocked(const orch_sched *s, int *n);

/* Marks a not-running, unfinished task done (resume: work already done). */
int orch_sched_mark_done(orch_sched *s, int task);

/* Cancels a task that has not finished (a running one is released: the
 * caller kills it). Its dependents are blocked; returns how many. */
int orch_sched_cancel(orch_sched *s, int task);

/* A paused task is not handed out (a running one finishes normally, but is
 * not handed out again if requeued). resume undoes it. */
int orch_sched_pause(orch_sched *s, int task);
int orch_sched_resume(orch_sched *s, int task);

/* Puts a running task back to ready (its locks and slot released), e.g. to
 * retry it or after a crash. */
int orch_sched_requeue(orch_sched *s, int task);

int orch_sched_set_concurrency(orch_sched *s, int n);
int orch_sched_concurrency(const orch_sched *s);

int orch_sched_size(const orch_sched *s);
int orch_sched_find(const orch_sched *s, const char *id);
const char *orch_sched_id(const orch_sched *s, int task);
orch_task_state orch_sched_state(const orch_sched *s, int task);
int orch_sched_soft(const orch_sched *s, int task);      /* failed softly */
int orch_sched_paused(const orch_sched *s, int task);
int orch_sched_waiting(const orch_sched *s, int task);   /* for a lock */
double orch_sched_priority(const orch_sched *s, int task);
/* counts[ORCH_TASK__COUNT]: tasks per state (as orch_sched_state says). */
void orch_sched_counts(const orch_sched *s, int *counts);
/* How many tasks are not finished (pending, ready, running, paused). */
int orch_sched_active(const orch_sched *s);

const char *orch_sched_state_name(orch_task_state st);
const char *orch_sched_errkind_name(orch_sched_errkind k);

#endif
