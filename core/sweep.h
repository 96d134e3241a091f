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

#endif
