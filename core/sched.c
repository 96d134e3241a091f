/* sched.c - the DAG scheduler (see sched.h).
 *
 * Tasks live in one array. check() resolves dep ids to indices, builds the
 * dependents lists (CSR), runs Kahn's algorithm (cycles are then found by
 * walking deps among the tasks Kahn could not order, each task visited once)
 * and computes each task's priority: its weight plus the largest priority of
 * its dependents, i.e. the longest weighted path from it to a sink.
 *
 * Ready tasks sit in a binary max-heap (priority, then file order). A ready
 * task whose locks are taken is parked on the running task that holds them
 * and goes back into the heap when that task releases them, so it holds no
 * slot while it waits and a lower-priority task with free files may start
 * before it; each park costs O(log V) and needs a release to undo. */
#include "sched.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "lock.h"
#include "strmap.h"

typedef struct task {
    const char *id;     /* the map's copy */
    char **dep_ids;
    int ndeps;
    int *deps;          /* resolved, -1 for an unknown or self dep */
    int deps_ok;        /* deps resolved without error */
    orch_lockset locks;
    double weight, prio;
    orch_task_state state;
    unsigned paused : 1, soft : 1, in_heap : 1, parked : 1;
    int unresolved;     /* deps not yet done/skipped/soft-failed */
    int park_next;      /* next task parked on the same holder */
    int waiters;        /* first task parked on this one, -1 */
    int run_pos;        /* index in s->running, -1 */
} task;

struct orch_sched {
    task *t;
    int n, cap;
    orch_strmap ids;
    orch_locks locks;
    int concurrency;
    int *running;
    int nrunning;
    int *heap;
    int nheap;
    int *dep_off, *dep_list; /* dependents, CSR */
    int dirty;
    orch_sched_error *errs;
    int nerrs, errcap, nadderrs;
    int *blocked;
    int nblocked;
    int *stack; /* scratch, n entries */
};

/* ------------------------------------------------------------ helpers */

static void *xrealloc(void *p, size_t n, size_t size)
{
    if (n == 0)
        n = 1;
    if (n > (size_t)-1 / size)
        return NULL;
    return realloc(p, n * size);
}

static int is_finished(orch_task_state st)
{
    return st == ORCH_TASK_DONE || st == ORCH_TASK_FAILED ||
           st == ORCH_TASK_SKIPPED || st == ORCH_TASK_BLOCKED ||
           st == ORCH_TASK_CANCELLED;
}

/* Whether a finished dep lets its dependents run. */
static int resolves(const task *d)
{
    return d->state == ORCH_TASK_DONE || d->state == ORCH_TASK_SKIPPED ||
           (d->state == ORCH_TASK_FAILED && d->soft);
}

static int blocks(const task *d)
{
    return (d->state == ORCH_TASK_FAILED && !d->soft) ||
           d->state == ORCH_TASK_BLOCKED || d->state == ORCH_TASK_CANCELLED;
}

static int add_error(orch_sched *s, orch_sched_errkind kind, const char **ids,
                     int n)
{
    if (s->nerrs == s->errcap) {
        int cap = s->errcap ? s->errcap * 2 : 8;
        orch_sched_error *e = xrealloc(s->errs, (size_t)cap, sizeof *e);
        if (!e)
            return orch_err_set(-ENOMEM, "out of memory");
        s->errs = e;
        s->errcap = cap;
    }
    const char **copy = xrealloc(NULL, (size_t)n, sizeof *copy);
    if (!copy)
        return orch_err_set(-ENOMEM, "out of memory");
    memcpy(copy, ids, (size_t)n * sizeof *copy);
    s->errs[s->nerrs++] = (orch_sched_error){ kind, copy, n };
    return 0;
}

static void truncate_errors(orch_sched *s, int keep)
{
    while (s->nerrs > keep)
        free((void *)s->errs[--s->nerrs].ids);
}

/* ------------------------------------------------------------ heap */

static int heap_before(const orch_sched *s, int a, int b)
{
    if (s->t[a].prio != s->t[b].prio)
        return s->t[a].prio > s->t[b].prio;
    return a < b;
}

static void heap_push(orch_sched *s, int ti)
{
    int i = s->nheap++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!heap_before(s, ti, s->heap[p]))
            break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = ti;
    s->t[ti].in_heap = 1;
}

static int heap_pop(orch_sched *s)
{
    int top = s->heap[0], last = s->heap[--s->nheap], i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= s->nheap)
            break;
        if (c + 1 < s->nheap && heap_before(s, s->heap[c + 1], s->heap[c]))
            c++;
        if (!heap_before(s, s->heap[c], last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->nheap > 0)
        s->heap[i] = last;
    s->t[top].in_heap = 0;
    return top;
}

/* Makes a ready task eligible for next() if nothing holds it back. */
static void offer(orch_sched *s, int ti)
{
    task *t = &s->t[ti];
    if (t->state == ORCH_TASK_READY && !t->paused && !t->in_heap &&
        !t->parked)
        heap_push(s, ti);
}

/* ------------------------------------------------------------ lifecycle */

orch_sched *orch_sched_new(int concurrency)
{
    orch_sched *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    orch_strmap_init(&s->ids);
    orch_locks_init(&s->locks);
    s->concurrency = concurrency < 0 ? 0 : concurrency;
    return s;
}

void orch_sched_free(orch_sched *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++) {
        for (int d = 0; d < s->t[i].ndeps; d++)
            free(s->t[i].dep_ids[d]);
        free(s->t[i].dep_ids);
        free(s->t[i].deps);
        orch_lockset_free(&s->t[i].locks);
    }
    truncate_errors(s, 0);
    free(s->errs);
    free(s->t);
    free(s->running);
    free(s->heap);
    free(s->dep_off);
    free(s->dep_list);
    free(s->blocked);
    free(s->stack);
    orch_strmap_free(&s->ids);
    orch_locks_free(&s->locks);
    free(s);
}

static int grow_tasks(orch_sched *s)
{
    int cap = s->cap ? s->cap * 2 : 64;
    task *t = xrealloc(s->t, (size_t)cap, sizeof *t);
    if (!t)
        return orch_err_set(-ENOMEM, "out of memory");
    s->t = t;
    int *r = xrealloc(s->running, (size_t)cap, sizeof *r);
    if (!r)
        return orch_err_set(-ENOMEM, "out of memory");
    s->running = r;
    int *h = xrealloc(s->heap, (size_t)cap, sizeof *h);
    if (!h)
        return orch_err_set(-ENOMEM, "out of memory");
    s->heap = h;
    int *b = xrealloc(s->blocked, (size_t)cap, sizeof *b);
    if (!b)
        return orch_err_set(-ENOMEM, "out of memory");
    s->blocked = b;
    int *st = xrealloc(s->stack, (size_t)cap, sizeof *st);
    if (!st)
        return orch_err_set(-ENOMEM, "out of memory");
    s->stack = st;
    s->cap = cap;
    return 0;
}

int orch_sched_add(orch_sched *s, const char *id, const char *const *deps,
                   size_t ndeps, const char *const *files, size_t nfiles,
                   double weight)
{
    task t;
    int rc, old = -1;
    const char *stored = NULL;

    memset(&t, 0, sizeof t);
    if (!id || !*id) {
        const char *e = "";
        truncate_errors(s, s->nadderrs);
        if ((rc = add_error(s, ORCH_SCHED_EEMPTY, &e, 1)) < 0)
            return rc;
        s->nadderrs = s->nerrs;
        return orch_err_set(-EINVAL, "empty task id");
    }
    if (ndeps > 1000000 || nfiles > 1000000)
        return orch_err_set(-EINVAL, "task %s: too many deps or files", id);
    if (s->n == s->cap && (rc = grow_tasks(s)) < 0)
        return rc;
    if (orch_strmap_get(&s->ids, id, strlen(id)) >= 0) {
        rc = orch_strmap_put(&s->ids, id, strlen(id), 0, &old, &stored);
        truncate_errors(s, s->nadderrs);
        if (rc < 0 || (rc = add_error(s, ORCH_SCHED_EDUP, &stored, 1)) < 0)
            return rc;
        s->nadderrs = s->nerrs;
        return orch_err_set(-EEXIST, "duplicate task id %s", id);
    }
    if ((rc = orch_locks_compile(&s->locks, files, NULL, nfiles, &t.locks)) < 0)
        return orch_err_set(rc, "task %s: %s", id, orch_err_msg());
    if (ndeps) {
        t.dep_ids = calloc(ndeps, sizeof *t.dep_ids);
        if (!t.dep_ids) {
            rc = orch_err_set(-ENOMEM, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < ndeps; i++) {
            if (!(t.dep_ids[i] = strdup(deps[i] ? deps[i] : ""))) {
                t.ndeps = (int)i;
                rc = orch_err_set(-ENOMEM, "out of memory");
                goto fail;
            }
        }
        t.ndeps = (int)ndeps;
    }
    rc = orch_strmap_put(&s->ids, id, strlen(id), s->n, NULL, &stored);
    if (rc < 0)
        goto fail;
    t.id = stored;
    t.weight = weight > 0 ? weight : 1.0;
    t.state = ORCH_TASK_PENDING;
    t.park_next = t.waiters = t.run_pos = -1;
    s->t[s->n] = t;
    s->dirty = 1;
    return s->n++;
fail:
    for (int i = 0; i < t.ndeps; i++)
        free(t.dep_ids[i]);
    free(t.dep_ids);
    orch_lockset_free(&t.locks);
    return rc;
}

/* ------------------------------------------------------------ check */

static int resolve_deps(orch_sched *s, int ti)
{
    task *t = &s->t[ti];
    int rc;
    if (t->deps_ok || t->ndeps == 0) {
        t->deps_ok = 1;
        return 0;
    }
    if (!t->deps && !(t->deps = calloc((size_t)t->ndeps, sizeof *t->deps)))
        return orch_err_set(-ENOMEM, "out of memory");
    int ok = 1;
    for (int d = 0; d < t->ndeps; d++) {
        const char *name = t->dep_ids[d];
        int di = orch_strmap_get(&s->ids, name, strlen(name));
        t->deps[d] = -1;
        if (di == ti) {
            const char *ids[1] = { t->id };
            if ((rc = add_error(s, ORCH_SCHED_ESELF, ids, 1)) < 0)
                return rc;
            ok = 0;
        } else if (di < 0) {
            const char *ids[2] = { t->id, name };
            if ((rc = add_error(s, ORCH_SCHED_EUNKNOWN, ids, 2)) < 0)
                return rc;
            ok = 0;
        } else {
            t->deps[d] = di;
        }
    }
    t->deps_ok = ok;
    return 0;
}

static int build_dependents(orch_sched *s)
{
    int *off = calloc((size_t)s->n + 1, sizeof *off);
    int e = 0;
    if (!off)
        return orch_err_set(-ENOMEM, "out of memory");
    for (int i = 0; i < s->n; i++)
        for (int d = 0; d < s->t[i].ndeps; d++)
            if (s->t[i].deps && s->t[i].deps[d] >= 0) {
                off[s->t[i].deps[d] + 1]++;
                e++;
            }
    for (int i = 0; i < s->n; i++)
        off[i + 1] += off[i];
    int *list = xrealloc(NULL, (size_t)e, sizeof *list);
    int *fill = xrealloc(NULL, (size_t)s->n, sizeof *fill);
    if (!list || !fill) {
        free(off);
        free(list);
        free(fill);
        return orch_err_set(-ENOMEM, "out of memory");
    }
    memcpy(fill, off, (size_t)s->n * sizeof *fill);
    for (int i = 0; i < s->n; i++)
        for (int d = 0; d < s->t[i].ndeps; d++)
            if (s->t[i].deps && s->t[i].deps[d] >= 0)
                list[fill[s->t[i].deps[d]]++] = i;
    free(fill);
    free(s->dep_off);
    free(s->dep_list);
    s->dep_off = off;
    s->dep_list = list;
    return 0;
}

/* One cycle found by report_cycles: its ids in run order, and the index
 * of its task that comes first in the file. */
typedef struct cycle_rec {
    int first, n;
    const char **ids;
} cycle_rec;

static int cycle_cmp(const void *a, const void *b)
{
    const cycle_rec *x = a, *y = b;
    return (x->first > y->first) - (x->first < y->first);
}

/* The cycle inside one strongly connected group comp[0..nc) (members have
 * in[i] == tag): from its first task in the file, follow deps that stay in
 * the group until a task repeats; walk[k] depends on walk[k+1]. Reported
 * in run order (each id depends on the one before it), starting from the
 * task first in the file. pos[] is scratch (n entries). */
static int cycle_of(orch_sched *s, const int *comp, int nc, const int *in, int tag,
                    int *walk, int *pos, cycle_rec *out)
{
    int start = comp[0], len = 0, cur;
    for (int i = 1; i < nc; i++)
        if (comp[i] < start)
            start = comp[i];
    for (int i = 0; i < nc; i++)
        pos[comp[i]] = -1;
    for (cur = start; cur >= 0 && pos[cur] < 0;) {
        task *t = &s->t[cur];
        int next = -1;
        pos[cur] = len;
        walk[len++] = cur;
        for (int d = 0; d < t->ndeps && next < 0; d++)
            if (t->deps[d] >= 0 && in[t->deps[d]] == tag)
                next = t->deps[d];
        cur = next;
    }
    if (cur < 0)
        return 0; /* cannot happen: every member has a dep in the group */
    int from = pos[cur], n = len - from, first = from;
    for (int i = from; i < len; i++)
        if (walk[i] < walk[first])
            first = i;
    out->ids = xrealloc(NULL, (size_t)n, sizeof *out->ids);
    if (!out->ids)
        return orch_err_set(-ENOMEM, "out of memory");
    for (int k = 0; k < n; k++) {
        int i = first - k;
        if (i < from)
            i += n;
        out->ids[k] = s->t[walk[i]].id;
    }
    out->n = n;
    out->first = walk[first];
    return 1;
}

/* Tasks Kahn left (mark[i] == 0) are on cycles or wait on one. Each group
 * of tasks that wait on each other (a strongly connected component,
 * iterative Tarjan along deps among those tasks) holds one cycle to
 * report, so a second cycle is never hidden behind a first; cycles are
 * reported in the file order of their first task. */
static int report_cycles(orch_sched *s, const char *mark)
{
    int n = s->n, rc = 0, counter = 0, ncyc = 0, ncomp = 0;
    int *idx = calloc((size_t)n, sizeof *idx), *low = xrealloc(NULL, (size_t)n, sizeof *low);
    int *cv = xrealloc(NULL, (size_t)n, sizeof *cv), *ci = xrealloc(NULL, (size_t)n, sizeof *ci);
    int *st = xrealloc(NULL, (size_t)n, sizeof *st), *in = calloc((size_t)n, sizeof *in);
    int *pos = xrealloc(NULL, (size_t)n, sizeof *pos);
    cycle_rec *cyc = NULL;
    int sp = 0;

    if (!idx || !low || !cv || !ci || !st || !in || !pos) {
        rc = orch_err_set(-ENOMEM, "out of memory");
        goto cleanup;
    }
    for (int root = 0; root < n && rc >= 0; root++) {
        int top = 0;
        if (mark[root] || idx[root])
            continue;
        cv[top] = root;
        ci[top++] = 0;
        idx[root] = low[root] = ++counter;
        st[sp++] = root;
        in[root] = -1; /* on the stack */
        while (top > 0 && rc >= 0) {
            int v = cv[top - 1];
            task *t = &s->t[v];
            if (ci[top - 1] < t->ndeps) {
                int w = t->deps[ci[top - 1]++];
                if (w < 0 || mark[w])
                    continue;
                if (!idx[w]) {
                    idx[w] = low[w] = ++counter;
                    st[sp++] = w;
                    in[w] = -1;
                    cv[top] = w;
                    ci[top++] = 0;
                } else if (in[w] == -1 && idx[w] < low[v]) {
                    low[v] = idx[w];
                }
                continue;
            }
            top--;
            if (top > 0 && low[v] < low[cv[top - 1]])
                low[cv[top - 1]] = low[v];
            if (low[v] != idx[v])
                continue;
            /* v is the root of a component: st[from..sp) */
            int from = sp;
            do
                from--;
            while (st[from] != v);
            ncomp++;
            for (int i = from; i < sp; i++)
                in[st[i]] = ncomp;
            if (sp - from > 1) {
                cycle_rec *nc = xrealloc(cyc, (size_t)ncyc + 1, sizeof *cyc);
                if (!nc) {
                    rc = orch_err_set(-ENOMEM, "out of memory");
                    break;
                }
                cyc = nc;
                rc = cycle_of(s, st + from, sp - from, in, ncomp, s->stack, pos, &cyc[ncyc]);
                if (rc > 0)
                    ncyc++;
            }
            sp = from;
        }
    }
    if (rc >= 0) {
        rc = 0;
        qsort(cyc, (size_t)ncyc, sizeof *cyc, cycle_cmp);
        for (int i = 0; i < ncyc && rc == 0; i++)
            rc = add_error(s, ORCH_SCHED_ECYCLE, cyc[i].ids, cyc[i].n);
    }
cleanup:
    for (int i = 0; i < ncyc; i++)
        free((void *)cyc[i].ids);
    free(cyc);
    free(idx);
    free(low);
    free(cv);
    free(ci);
    free(st);
    free(in);
    free(pos);
    return rc;
}

/* Kahn's order into order[]; returns how many tasks it ordered. */
static int topo_order(orch_sched *s, int *order, int *indeg)
{
    int head = 0, tail = 0;
    for (int i = 0; i < s->n; i++) {
        indeg[i] = 0;
        for (int d = 0; d < s->t[i].ndeps; d++)
            indeg[i] += s->t[i].deps && s->t[i].deps[d] >= 0;
        if (indeg[i] == 0)
            order[tail++] = i;
    }
    while (head < tail) {
        int u = order[head++];
        for (int k = s->dep_off[u]; k < s->dep_off[u + 1]; k++)
            if (--indeg[s->dep_list[k]] == 0)
                order[tail++] = s->dep_list[k];
    }
    return tail;
}

static void settle(orch_sched *s, const int *order)
{
    /* priorities: reverse topological order */
    for (int k = s->n - 1; k >= 0; k--) {
        task *t = &s->t[order[k]];
        double best = 0;
        for (int j = s->dep_off[order[k]]; j < s->dep_off[order[k] + 1]; j++)
            if (s->t[s->dep_list[j]].prio > best)
                best = s->t[s->dep_list[j]].prio;
        t->prio = t->weight + best;
    }
    /* states: topological order, so a dep is settled before its users */
    for (int k = 0; k < s->n; k++) {
        task *t = &s->t[order[k]];
        if (t->state != ORCH_TASK_PENDING && t->state != ORCH_TASK_READY)
            continue;
        int unresolved = 0, blocked = 0;
        for (int d = 0; d < t->ndeps; d++) {
            const task *dt = &s->t[t->deps[d]];
            blocked |= blocks(dt);
            unresolved += !resolves(dt);
        }
        t->unresolved = unresolved;
        t->state = blocked      ? ORCH_TASK_BLOCKED
                   : unresolved ? ORCH_TASK_PENDING
                                : ORCH_TASK_READY;
    }
    s->nheap = 0;
    for (int i = 0; i < s->n; i++) {
        s->t[i].in_heap = 0;
        offer(s, i);
    }
}

int orch_sched_check(orch_sched *s)
{
    int rc = 0, *order = NULL, *indeg = NULL;
    char *mark = NULL;

    truncate_errors(s, s->nadderrs);
    for (int i = 0; i < s->n; i++)
        if ((rc = resolve_deps(s, i)) < 0)
            goto cleanup;
    if ((rc = build_dependents(s)) < 0)
        goto cleanup;
    order = xrealloc(NULL, (size_t)s->n, sizeof *order);
    indeg = xrealloc(NULL, (size_t)s->n, sizeof *indeg);
    mark = calloc((size_t)s->n + 1, 1);
    if (!order || !indeg || !mark) {
        rc = orch_err_set(-ENOMEM, "out of memory");
        goto cleanup;
    }
    int ordered = topo_order(s, order, indeg);
    if (ordered < s->n) {
        for (int i = 0; i < s->n; i++)
            mark[i] = indeg[i] == 0 ? 2 : 0;
        if ((rc = report_cycles(s, mark)) < 0)
            goto cleanup;
    }
    if (s->nerrs > 0) {
        rc = orch_err_set(-EINVAL, "the plan has %d error%s", s->nerrs,
                          s->nerrs == 1 ? "" : "s");
        goto cleanup;
    }
    settle(s, order);
    s->dirty = 0;
cleanup:
    free(order);
    free(indeg);
    free(mark);
    return rc;
}

int orch_sched_error_count(const orch_sched *s)
{
    return s->nerrs;
}

const orch_sched_error *orch_sched_error_at(const orch_sched *s, int i)
{
    return i >= 0 && i < s->nerrs ? &s->errs[i] : NULL;
}

/* ------------------------------------------------------------ running */

static int valid(const orch_sched *s, int ti)
{
    return ti >= 0 && ti < s->n;
}

static void resolve_dependents(orch_sched *s, int ti)
{
    if (s->dirty)
        return; /* check() settles states from scratch */
    for (int k = s->dep_off[ti]; k < s->dep_off[ti + 1]; k++) {
        task *d = &s->t[s->dep_list[k]];
        if (d->unresolved > 0 && --d->unresolved == 0 &&
            d->state == ORCH_TASK_PENDING) {
            d->state = ORCH_TASK_READY;
            offer(s, s->dep_list[k]);
        }
    }
}

static void block_dependents(orch_sched *s, int ti)
{
    int top = 0;
    s->nblocked = 0;
    if (s->dirty)
        return;
    s->stack[top++] = ti;
    while (top > 0) {
        int u = s->stack[--top];
        for (int k = s->dep_off[u]; k < s->dep_off[u + 1]; k++) {
            int v = s->dep_list[k];
            task *d = &s->t[v];
            if (d->state != ORCH_TASK_PENDING && d->state != ORCH_TASK_READY)
                continue;
            d->state = ORCH_TASK_BLOCKED;
            s->blocked[s->nblocked++] = v;
            s->stack[top++] = v; /* each task is pushed once */
        }
    }
}

static void release(orch_sched *s, int ti)
{
    task *t = &s->t[ti];
    orch_locks_release(&s->locks, &t->locks);
    int last = s->running[--s->nrunning];
    s->running[t->run_pos] = last;
    s->t[last].run_pos = t->run_pos;
    t->run_pos = -1;
    int w = t->waiters;
    t->waiters = -1;
    while (w >= 0) {
        int next = s->t[w].park_next;
        s->t[w].parked = 0;
        s->t[w].park_next = -1;
        offer(s, w);
        w = next;
    }
}

static int find_blocker(orch_sched *s, int ti)
{
    for (int r = 0; r < s->nrunning; r++)
        if (orch_locks_overlap(&s->locks, &s->t[ti].locks,
                               &s->t[s->running[r]].locks))
            return s->running[r];
    return -1;
}

int orch_sched_next(orch_sched *s)
{
    if (s->dirty && orch_sched_check(s) < 0)
        return -EINVAL;
    if (s->nrunning >= s->concurrency)
        return -EAGAIN;
    int found = -EAGAIN, ndefer = 0;
    while (s->nheap > 0) {
        int ti = heap_pop(s), blocker = -1;
        task *t = &s->t[ti];
        if (t->state != ORCH_TASK_READY || t->paused)
            continue;
        if (orch_locks_try(&s->locks, &t->locks, ti, &blocker) == 0) {
            t->state = ORCH_TASK_RUNNING;
            t->run_pos = s->nrunning;
            s->running[s->nrunning++] = ti;
            found = ti;
            break;
        }
        if (blocker < 0)
            blocker = find_blocker(s, ti);
        if (blocker < 0 || blocker == ti) {
            /* cannot happen (locks are only held by running tasks), but
             * never lose a task: it goes back to the heap below */
            s->stack[ndefer++] = ti;
            continue;
        }
        t->parked = 1;
        t->park_next = s->t[blocker].waiters;
        s->t[blocker].waiters = ti;
    }
    for (int i = 0; i < ndefer; i++)
        offer(s, s->stack[i]);
    return found;
}

int orch_sched_finish(orch_sched *s, int ti, orch_outcome out)
{
    if (!valid(s, ti) || s->t[ti].state != ORCH_TASK_RUNNING)
        return orch_err_set(-EINVAL, "finish: task %s is not running",
                            valid(s, ti) ? s->t[ti].id : "?");
    task *t = &s->t[ti];
    if (s->dirty)
        orch_sched_check(s); /* tasks added since: propagate to them too */
    release(s, ti);
    s->nblocked = 0;
    switch (out) {
    case ORCH_OUT_DONE:
        t->state = ORCH_TASK_DONE;
        break;
    case ORCH_OUT_FAILED_SOFT:
        t->state = ORCH_TASK_FAILED;
        t->soft = 1;
        break;
    case ORCH_OUT_SKIPPED:
        t->state = ORCH_TASK_SKIPPED;
        break;
    case ORCH_OUT_FAILED:
    default:
        t->state = ORCH_TASK_FAILED;
        t->soft = 0;
        block_dependents(s, ti);
        return s->nblocked;
    }
    resolve_dependents(s, ti);
    return 0;
}

const int *orch_sched_blocked(const orch_sched *s, int *n)
{
    *n = s->nblocked;
    return s->blocked;
}

int orch_sched_mark_done(orch_sched *s, int ti)
{
    if (!valid(s, ti))
        return orch_err_set(-EINVAL, "no such task");
    task *t = &s->t[ti];
    if (t->state == ORCH_TASK_DONE)
        return 0;
    if (t->state != ORCH_TASK_PENDING && t->state != ORCH_TASK_READY)
        return orch_err_set(-EINVAL, "mark_done: task %s is %s", t->id,
                            orch_sched_state_name(t->state));
    t->state = ORCH_TASK_DONE;
    resolve_dependents(s, ti);
    return 0;
}

int orch_sched_cancel(orch_sched *s, int ti)
{
    if (!valid(s, ti))
        return orch_err_set(-EINVAL, "no such task");
    task *t = &s->t[ti];
    if (is_finished(t->state))
        return orch_err_set(-EINVAL, "cancel: task %s is %s", t->id,
                            orch_sched_state_name(t->state));
    if (s->dirty && s->dep_off)
        orch_sched_check(s); /* tasks added since: propagate to them too */
    if (t->state == ORCH_TASK_RUNNING)
        release(s, ti);
    t->state = ORCH_TASK_CANCELLED;
    block_dependents(s, ti);
    return s->nblocked;
}

int orch_sched_pause(orch_sched *s, int ti)
{
    if (!valid(s, ti))
        return orch_err_set(-EINVAL, "no such task");
    if (is_finished(s->t[ti].state))
        return orch_err_set(-EINVAL, "pause: task %s is %s", s->t[ti].id,
                            orch_sched_state_name(s->t[ti].state));
    s->t[ti].paused = 1;
    return 0;
}

int orch_sched_resume(orch_sched *s, int ti)
{
    if (!valid(s, ti))
        return orch_err_set(-EINVAL, "no such task");
    s->t[ti].paused = 0;
    if (!s->dirty)
        offer(s, ti);
    return 0;
}

int orch_sched_requeue(orch_sched *s, int ti)
{
    if (!valid(s, ti) || s->t[ti].state != ORCH_TASK_RUNNING)
        return orch_err_set(-EINVAL, "requeue: task %s is not running",
                            valid(s, ti) ? s->t[ti].id : "?");
    release(s, ti);
    s->t[ti].state = ORCH_TASK_READY;
    if (!s->dirty)
        offer(s, ti);
    return 0;
}

int orch_sched_set_concurrency(orch_sched *s, int n)
{
    if (n < 0)
        return orch_err_set(-EINVAL, "concurrency must be >= 0");
    s->concurrency = n;
    return 0;
}

int orch_sched_concurrency(const orch_sched *s)
{
    return s->concurrency;
}

/* ------------------------------------------------------------ queries */

int orch_sched_size(const orch_sched *s)
{
    return s->n;
}

int orch_sched_find(const orch_sched *s, const char *id)
{
    int i = id ? orch_strmap_get(&s->ids, id, strlen(id)) : -1;
    return i >= 0 ? i : -ENOENT;
}

const char *orch_sched_id(const orch_sched *s, int ti)
{
    return valid(s, ti) ? s->t[ti].id : NULL;
}

orch_task_state orch_sched_state(const orch_sched *s, int ti)
{
    if (!valid(s, ti))
        return ORCH_TASK__COUNT;
    const task *t = &s->t[ti];
    if (t->paused &&
        (t->state == ORCH_TASK_PENDING || t->state == ORCH_TASK_READY))
        return ORCH_TASK_PAUSED;
    return t->state;
}

int orch_sched_soft(const orch_sched *s, int ti)
{
    return valid(s, ti) && s->t[ti].state == ORCH_TASK_FAILED &&
           s->t[ti].soft;
}

int orch_sched_paused(const orch_sched *s, int ti)
{
    return valid(s, ti) && s->t[ti].paused;
}

int orch_sched_waiting(const orch_sched *s, int ti)
{
    return valid(s, ti) && s->t[ti].parked &&
           s->t[ti].state == ORCH_TASK_READY;
}

double orch_sched_priority(const orch_sched *s, int ti)
{
    return valid(s, ti) ? s->t[ti].prio : 0;
}

void orch_sched_counts(const orch_sched *s, int *counts)
{
    memset(counts, 0, ORCH_TASK__COUNT * sizeof *counts);
    for (int i = 0; i < s->n; i++)
        counts[orch_sched_state(s, i)]++;
}

int orch_sched_active(const orch_sched *s)
{
    int n = 0;
    for (int i = 0; i < s->n; i++)
        n += !is_finished(s->t[i].state);
    return n;
}

const char *orch_sched_state_name(orch_task_state st)
{
    static const char *names[] = { "pending", "ready",   "running",
                                   "done",    "failed",  "skipped",
                                   "blocked", "cancelled", "paused" };
    return (unsigned)st < ORCH_TASK__COUNT ? names[st] : "?";
}

const char *orch_sched_errkind_name(orch_sched_errkind k)
{
    static const char *names[] = { "duplicate", "empty", "unknown_dep",
                                   "self_dep", "cycle" };
    return (unsigned)k <= ORCH_SCHED_ECYCLE ? names[k] : "?";
}
