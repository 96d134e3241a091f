/* sweep.c - kills what is left of orch's process trees (see sweep.h). */
#include "sweep.h"

#include "err.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct orch_sweep_ps {
    pid_t pid, ppid, pgrp, sid;
} orch_sweep_ps;

static int orch_sweep_cmp(const void *a, const void *b)
{
    pid_t x = ((const orch_sweep_ps *)a)->pid, y = ((const orch_sweep_ps *)b)->pid;
    return (x > y) - (x < y);
}

static int orch_sweep_read(pid_t pid, orch_sweep_ps *out)
{
    char path[64], buf[1024], *rp;
    FILE *f;
    size_t n;
    int ppid, pgrp, sid;
    char state;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    rp = strrchr(buf, ')'); /* the command name may hold spaces and parens */
    if (!rp || sscanf(rp + 1, " %c %d %d %d", &state, &ppid, &pgrp, &sid) != 4)
        return -1;
    out->pid = pid;
    out->ppid = ppid;
    out->pgrp = pgrp;
    out->sid = sid;
    return 0;
}

/* Reads every process of the system; returns the count or a negative errno. */
static int orch_sweep_list(orch_sweep_ps **out)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    orch_sweep_ps *ps = NULL, *np;
    size_t n = 0, cap = 0;

    *out = NULL;
    if (!d)
        return orch_err_set(-errno, "sweep: /proc: %s", strerror(errno));
    while ((e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            np = realloc(ps, cap * sizeof *ps);
            if (!np) {
                free(ps);
                closedir(d);
                return orch_err_set(-ENOMEM, "sweep: out of memory");
            }
            ps = np;
        }
        if (orch_sweep_read((pid_t)atoi(e->d_name), &ps[n]) == 0)
            n++;
    }
    closedir(d);
    qsort(ps, n, sizeof *ps, orch_sweep_cmp);
    *out = ps;
    return (int)n;
}

static orch_sweep_ps *orch_sweep_find(orch_sweep_ps *ps, int n, pid_t pid)
{
    orch_sweep_ps key = {.pid = pid};
    return bsearch(&key, ps, (size_t)n, sizeof *ps, orch_sweep_cmp);
}

static int orch_sweep_in(pid_t v, const pid_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == v)
            return 1;
    return 0;
}

/* A process is a target when one of its ancestors is root, or when it or an
 * ancestor below root belongs to one of the sessions or groups. Chains are
 * short (a few levels), so no memoisation; the depth bound guards a cycle
 * seen in a racing snapshot. */
static int orch_sweep_decide(orch_sweep_ps *ps, int n, const orch_sweep_ps *p,
                             pid_t root, const pid_t *ids, size_t nids)
{
    int depth = 0;
    while (p && depth++ < 4096) {
        if (orch_sweep_in(p->sid, ids, nids) || orch_sweep_in(p->pgrp, ids, nids))
            return 1;
        if (p->ppid == root)
            return 1;
        if (p->ppid <= 1)
            return 0;
        p = orch_sweep_find(ps, n, p->ppid);
    }
    return 0;
}

static int orch_sweep_walk(pid_t root, const pid_t *ids, size_t nids, int sig)
{
    orch_sweep_ps *ps;
    int n = orch_sweep_list(&ps), hits = 0;
    pid_t self = getpid();

    if (n < 0)
        return n;
    for (int i = 0; i < n; i++) {
        orch_sweep_ps *p = &ps[i];
        if (p->pid == self || p->pid == root || p->pid <= 1)
            continue;
        if (orch_sweep_decide(ps, n, p, root, ids, nids)) {
            hits++;
            if (sig)
                kill(p->pid, sig);
        }
    }
    free(ps);
    return hits;
}

int orch_sweep_kill(pid_t root, const pid_t *ids, size_t n, int sig)
{
    return orch_sweep_walk(root, ids, n, sig);
}

int orch_sweep_count(pid_t root, const pid_t *ids, size_t n)
{
    return orch_sweep_walk(root, ids, n, 0);
}
