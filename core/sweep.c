/* sweep.c - kills what is left of orch's process trees (see sweep.h). */
#include "sweep.h"

#include "err.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct orch_sweep_ps {
    pid_t pid, ppid, pgrp, sid;
    int tty;
    unsigned long long start; /* clock ticks after boot */
    int mark;                 /* orch_sweep_match: -1 unknown, 0 no, 1 yes */
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
    int ppid, pgrp, sid, tty;
    unsigned long long start = 0;
    char state;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    rp = strrchr(buf, ')'); /* the command name may hold spaces and parens */
    /* state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
     * cmajflt utime stime cutime cstime priority nice threads itrealvalue
     * starttime */
    if (!rp || sscanf(rp + 1, " %c %d %d %d %d %*d %*u %*u %*u %*u %*u %*u "
                      "%*u %*d %*d %*d %*d %*d %*d %llu", &state, &ppid,
                      &pgrp, &sid, &tty, &start) != 6)
        return -1;
    out->pid = pid;
    out->ppid = ppid;
    out->pgrp = pgrp;
    out->sid = sid;
    out->tty = tty;
    out->start = start;
    out->mark = -1;
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

/* ------------------------------------------------------------ marks */

/* Whether the environment of pid holds every entry of env[]. */
static int orch_sweep_env(pid_t pid, const char *const *env, size_t nenv)
{
    char path[64], *buf = NULL;
    size_t len = 0, cap = 0, n;
    size_t found = 0;
    FILE *f;
    if (nenv == 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
    if (!(f = fopen(path, "r")))
        return 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            char *nb = realloc(buf, cap = cap ? cap * 2 : 8192);
            if (!nb)
                break;
            buf = nb;
        }
        if ((n = fread(buf + len, 1, cap - len - 1, f)) == 0)
            break;
        len += n;
    }
    fclose(f);
    if (!buf)
        return 0;
    buf[len] = '\0';
    for (size_t i = 0; i < nenv; i++) {
        for (size_t at = 0; at < len; at += strlen(buf + at) + 1)
            if (!strcmp(buf + at, env[i])) {
                found++;
                break;
            }
    }
    free(buf);
    return found == nenv;
}

/* Whether the working directory of pid is dir or below it (a removed
 * directory reads "PATH (deleted)"). */
static int orch_sweep_cwd(pid_t pid, const char *dir)
{
    char path[64], link[4200];
    size_t n = strlen(dir);
    ssize_t len;
    snprintf(path, sizeof path, "/proc/%d/cwd", (int)pid);
    if ((len = readlink(path, link, sizeof link - 1)) < 0)
        return 0;
    link[len] = '\0';
    return !strncmp(link, dir, n) &&
           (link[n] == '\0' || link[n] == '/' || !strcmp(link + n, " (deleted)"));
}

/* Boot time (unix seconds) and clock ticks per second, for start times. */
static double orch_sweep_btime(void)
{
    char line[256];
    double bt = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "btime %lf", &bt) == 1)
            break;
    fclose(f);
    return bt;
}

static int orch_sweep_own_mark(const orch_sweep_spec *s, orch_sweep_ps *p,
                               double btime, double hz)
{
    if (s->since > 0 && btime > 0 && btime + (double)p->start / hz < s->since - 1)
        return 0; /* older than what it would belong to: a reused id */
    if (orch_sweep_in(p->sid, s->ids, s->nids) ||
        orch_sweep_in(p->pgrp, s->ids, s->nids))
        return 1;
    if (!s->anywhere && p->ppid != s->adopter)
        return 0;
    if (orch_sweep_env(p->pid, s->env, s->nenv))
        return 1;
    if (s->no_tty && p->tty != 0)
        return 0;
    return s->cwd && s->cwd[0] && orch_sweep_cwd(p->pid, s->cwd);
}

/* The mark of p: its own, or its parent's (below adopter and init). */
static int orch_sweep_marked(const orch_sweep_spec *s, orch_sweep_ps *ps,
                             int n, orch_sweep_ps *p, double btime, double hz,
                             int depth)
{
    orch_sweep_ps *parent;
    if (p->mark >= 0)
        return p->mark;
    p->mark = 0; /* guards a cycle seen in a racing snapshot */
    if (orch_sweep_own_mark(s, p, btime, hz))
        return p->mark = 1;
    if (depth < 4096 && p->ppid > 1 && p->ppid != s->adopter &&
        (parent = orch_sweep_find(ps, n, p->ppid)))
        p->mark = orch_sweep_marked(s, ps, n, parent, btime, hz, depth + 1);
    return p->mark;
}

int orch_sweep_match(const orch_sweep_spec *s, int sig, pid_t *out,
                     size_t max)
{
    orch_sweep_ps *ps;
    int n = orch_sweep_list(&ps), hits = 0;
    pid_t self = getpid();
    double btime = orch_sweep_btime(), hz = (double)sysconf(_SC_CLK_TCK);
    if (n < 0)
        return n;
    if (hz <= 0)
        hz = 100;
    for (int i = 0; i < n; i++) {
        orch_sweep_ps *p = &ps[i];
        if (p->pid == self || p->pid == s->adopter || p->pid <= 1)
            continue;
        if (!orch_sweep_marked(s, ps, n, p, btime, hz, 0))
            continue;
        if (out && (size_t)hits < max)
            out[hits] = p->pid;
        hits++;
        if (sig)
            kill(p->pid, sig);
    }
    free(ps);
    return hits;
}

/* ------------------------------------------------------------ strays */

/* The children file of orch's main thread, opened once and read again from
 * its start each time (procfs makes its text anew at offset 0); it stays
 * open (close-on-exec) for orch's life, for the process that opened it. */
static int orch_sweep_children_fd = -1;
static pid_t orch_sweep_children_pid;

int orch_sweep_strays(pid_t group, const pid_t *known, size_t nknown)
{
    char path[64], buf[4096];
    long pid = 0;
    int digits = 0, stray = 0, fd;
    ssize_t n;
    off_t at = 0;

    if (group > 1 && (kill(-group, 0) == 0 || errno != ESRCH))
        return 1; /* a member is left (EPERM: one we may not signal) */
    if (orch_sweep_children_fd < 0 || orch_sweep_children_pid != getpid()) {
        snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
        if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            return 1;
        orch_sweep_children_fd = fd;
        orch_sweep_children_pid = getpid();
    }
    fd = orch_sweep_children_fd;
    /* one pass over "PID PID ... ": a number may span two reads */
    while (!stray && (n = pread(fd, buf, sizeof buf, at)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            stray = 1;
            break;
        }
        at += n;
        for (ssize_t i = 0; i < n && !stray; i++) {
            if (isdigit((unsigned char)buf[i])) {
                pid = pid * 10 + (buf[i] - '0');
                digits = 1;
            } else if (digits) {
                stray = !orch_sweep_in((pid_t)pid, known, nknown);
                pid = 0;
                digits = 0;
            }
        }
    }
    if (!stray && digits)
        stray = !orch_sweep_in((pid_t)pid, known, nknown);
    return stray;
}
