/* sweep.h - finds and kills what is left of orch's process trees.
 *
 * A child may leave its process group (setpgid) or even its session (setsid);
 * the sweep finds every process that is a descendant of orch (by its parent
 * chain, read from /proc) or that belongs to one of the given sessions or
 * groups, and kills it. Since orch is a child subreaper, orphans whose parent
 * died are re-parented to orch and are still found through the chain. */
#ifndef ORCH_SWEEP_H
#define ORCH_SWEEP_H

#include <stddef.h>
#include <sys/types.h>

/* Kills (with sig) every process that descends from `root` or whose session
 * or process group is one of ids[0..n). Returns how many were signalled, or a
 * negative errno. */
int orch_sweep_kill(pid_t root, const pid_t *ids, size_t n, int sig);

/* Counts the same set without signalling. */
int orch_sweep_count(pid_t root, const pid_t *ids, size_t n);

/* What is left of one task, found by marks that survive setsid, a double
 * fork and (for the working directory) `env -i`. A process matches when
 *   - it or an ancestor is in one of the sessions or groups ids[] (the
 *     task's, whose leader is gone), or
 *   - its environment holds every entry of env[] ("K=V"), or its working
 *     directory is `cwd` or below it (a removed directory too) — counted
 *     only for direct children of `adopter` (orphans orch adopted as a
 *     child subreaper) unless `anywhere`; with `no_tty` the directory
 *     counts only for processes without a controlling terminal (never a
 *     user's shell that went there),
 * or descends from a process that matches; and never if it started before
 * `since` (unix seconds; 0: any), is orch itself, `adopter` or pid 1. */
typedef struct orch_sweep_spec {
    const pid_t *ids;
    size_t nids;
    const char *const *env;
    size_t nenv;
    const char *cwd;
    pid_t adopter;
    int anywhere;
    int no_tty;
    double since;
} orch_sweep_spec;

/* Signals (sig 0: only counts) every process that matches; the first `max`
 * pids go to out (may be NULL). Returns how many matched, or < 0. */
int orch_sweep_match(const orch_sweep_spec *spec, int sig, pid_t *out,
                     size_t max);

/* Whether anything of a task whose leader `group` (a session and group
 * leader) has exited may be left: 1 when its process group still has a
 * member or when orch has a child that is not in known[0..n) (its own live
 * processes) — an orphan it adopted as a child subreaper, and every
 * surviving descendant of the task is one or descends from one — or when
 * this cannot be told (no /proc/self/task/TID/children); 0 when nothing can
 * be: then orch_sweep_match would find nothing of the task, and the scan of
 * every process in /proc (~1 ms with 90 processes) is not needed. Only
 * orch's main thread's children are read: adopted orphans go to it, and
 * orch spawns from it alone. */
int orch_sweep_strays(pid_t group, const pid_t *known, size_t nknown);

#endif
