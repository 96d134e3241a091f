/* test_sched.c - the DAG scheduler and the file lock table. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lock.h"
#include "sched.h"
#include "t.h"

#define ADD(s, id, deps, files, w)                                            \
    orch_sched_add((s), (id), (deps), sizeof(deps) / sizeof *(deps) - 1,      \
                   (files), sizeof(files) / sizeof *(files) - 1, (w))

static const char *none[] = { NULL };

static const char *next_id(orch_sched *s)
{
    int t = orch_sched_next(s);
    return t >= 0 ? orch_sched_id(s, t) : NULL;
}

static int fin(orch_sched *s, const char *id, orch_outcome out)
{
    return orch_sched_finish(s, orch_sched_find(s, id), out);
}

static void test_normalise(void)
{
    static const struct { const char *in, *out; int dir; } cases[] = {
        { "src/a.c", "src/a.c", 0 },     { "./src//a.c", "src/a.c", 0 },
        { "././src/./a.c", "src/a.c", 0 }, { "src/", "src/", 1 },
        { "src//", "src/", 1 },          { "src/.", "src/", 1 },
        { ".", "", 1 },                  { "./", "", 1 },
        { "a/../b", "b", 0 },            { "../x", "../x", 0 },
        { "../../x/", "../../x/", 1 },   { "/abs//p", "/abs/p", 0 },
        { "/..", "/", 1 },               { "a/b/..", "a/", 1 },
    };
    char buf[64];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int dir = -1;
        int n = orch_lock_normalise(cases[i].in, strlen(cases[i].in), buf,
                                    &dir);
        T_EQ_INT(n, (int)strlen(cases[i].out));
        T_EQ_STR(buf, cases[i].out);
        T_EQ_INT(dir, cases[i].dir);
    }
    int dir;
    T_EQ_INT(orch_lock_normalise("", 0, buf, &dir), -EINVAL);
}

static void test_locks(void)
{
    orch_locks lt;
    orch_lockset a, b, c, d;
    const char *pa[] = { "src/a.c", "README" }, *pb[] = { "./src//a.c" };
    const char *pc[] = { "src/" }, *pd[] = { "srcs/a.c", "docs/" };
    int who = -2;

    orch_locks_init(&lt);
    T_EQ_INT(orch_locks_compile(&lt, pa, NULL, 2, &a), 0);
    T_EQ_INT(orch_locks_compile(&lt, pb, NULL, 1, &b), 0);
    T_EQ_INT(orch_locks_compile(&lt, pc, NULL, 1, &c), 0);
    T_EQ_INT(orch_locks_compile(&lt, pd, NULL, 2, &d), 0);
    T_CHECK(orch_locks_overlap(&lt, &a, &b));
    T_CHECK(orch_locks_overlap(&lt, &a, &c));
    T_CHECK(orch_locks_overlap(&lt, &c, &b));
    T_CHECK(!orch_locks_overlap(&lt, &c, &d));
    T_EQ_INT(orch_locks_try(&lt, &a, 7, &who), 0);
    T_EQ_INT(orch_locks_try(&lt, &b, 8, &who), -EBUSY);
    T_EQ_INT(who, 7);
    T_EQ_INT(orch_locks_try(&lt, &c, 9, &who), -EBUSY);
    T_EQ_INT(who, -1); /* held below src/: the caller finds who */
    T_EQ_INT(orch_locks_try(&lt, &d, 10, &who), 0);
    orch_locks_release(&lt, &a);
    T_EQ_INT(orch_locks_try(&lt, &c, 9, &who), 0);
    T_EQ_INT(orch_locks_try(&lt, &b, 8, &who), -EBUSY);
    T_EQ_INT(who, 9); /* src/ holds src/a.c */
    orch_locks_release(&lt, &c);
    orch_locks_release(&lt, &d);
    T_EQ_INT(orch_locks_try(&lt, &b, 8, &who), 0);
    orch_locks_release(&lt, &b);
    orch_lockset_free(&a);
    orch_lockset_free(&b);
    orch_lockset_free(&c);
    orch_lockset_free(&d);
    orch_locks_free(&lt);
}

static void test_critical_path(void)
{
    /* a -> b -> c (3 long), d alone, e alone but weight 5, f -> g */
    orch_sched *s = orch_sched_new(1);
    const char *da[] = { "a", NULL }, *db[] = { "b", NULL }, *df[] = { "f", NULL };
    ADD(s, "d", none, none, 0);
    ADD(s, "c", db, none, 0);
    ADD(s, "b", da, none, 0);
    ADD(s, "a", none, none, 0);
    ADD(s, "e", none, none, 5);
    ADD(s, "g", df, none, 1);
    ADD(s, "f", none, none, 1.5);
    T_EQ_INT(orch_sched_check(s), 0);
    T_CHECK(orch_sched_priority(s, orch_sched_find(s, "a")) == 3.0);
    T_CHECK(orch_sched_priority(s, orch_sched_find(s, "f")) == 2.5);
    const char *want[] = { "e", "a", "f", "b", "d", "c", "g" };
    /* a done makes b (2) ready next to f (2.5): f first; ties go in file
     * order (d was added first) */
    const char *got[7];
    for (int i = 0; i < 7; i++) {
        got[i] = next_id(s);
        T_CHECK(got[i] != NULL);
        if (!got[i])
            break;
        T_EQ_INT(orch_sched_next(s), -EAGAIN); /* concurrency 1 */
        T_EQ_INT(fin(s, got[i], ORCH_OUT_DONE), 0);
    }
    for (int i = 0; i < 7; i++)
        T_EQ_STR(got[i], want[i]);
    T_EQ_INT(orch_sched_active(s), 0);
    orch_sched_free(s);
}

static void test_concurrency(void)
{
    orch_sched *s = orch_sched_new(3);
    char id[16];
    int running = 0, maxrun = 0, finished = 0, order[10];
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof id, "t%d", i);
        ADD(s, id, none, none, 1);
    }
    T_EQ_INT(orch_sched_check(s), 0);
    for (int i = 0; i < 3; i++)
        T_CHECK((order[i] = orch_sched_next(s)) >= 0);
    T_EQ_INT(orch_sched_next(s), -EAGAIN);
    int counts[ORCH_TASK__COUNT];
    orch_sched_counts(s, counts);
    T_EQ_INT(counts[ORCH_TASK_RUNNING], 3);
    T_EQ_INT(counts[ORCH_TASK_READY], 7);
    /* raise while running */
    T_EQ_INT(orch_sched_set_concurrency(s, 5), 0);
    T_CHECK(orch_sched_next(s) >= 0);
    T_CHECK(orch_sched_next(s) >= 0);
    T_EQ_INT(orch_sched_next(s), -EAGAIN);
    /* lower while running: nothing new until below the bound */
    T_EQ_INT(orch_sched_set_concurrency(s, 2), 0);
    running = 5;
    while (finished < 10) {
        int t;
        while ((t = orch_sched_next(s)) >= 0)
            running++;
        if (running > maxrun && finished > 0)
            maxrun = running;
        /* finish the lowest running task */
        for (int i = 0; i < 10; i++)
            if (orch_sched_state(s, i) == ORCH_TASK_RUNNING) {
                T_EQ_INT(orch_sched_finish(s, i, ORCH_OUT_DONE), 0);
                running--;
                finished++;
                break;
            }
    }
    T_EQ_INT(maxrun, 4); /* 5 -> 4 after the first finish, never refilled */
    T_EQ_INT(orch_sched_set_concurrency(s, -1), -EINVAL);
    orch_sched_free(s);
}

static void test_lock_exclusion(void)
{
    orch_sched *s = orch_sched_new(4);
    const char *f1[] = { "src/a.c", NULL }, *f2[] = { "./src//a.c", NULL };
    const char *f3[] = { "src/", NULL }, *f4[] = { "docs/x", NULL };
    ADD(s, "t1", none, f1, 1);
    ADD(s, "t2", none, f2, 1);
    ADD(s, "t3", none, f3, 1);
    ADD(s, "t4", none, f4, 1);
    T_EQ_INT(orch_sched_check(s), 0);
    T_EQ_STR(next_id(s), "t1");
    T_EQ_STR(next_id(s), "t4"); /* t2, t3 wait for t1's lock */
    T_EQ_INT(orch_sched_next(s), -EAGAIN);
    T_CHECK(orch_sched_waiting(s, orch_sched_find(s, "t2")));
    T_CHECK(orch_sched_waiting(s, orch_sched_find(s, "t3")));
    T_EQ_INT(fin(s, "t4", ORCH_OUT_DONE), 0);
    T_EQ_INT(orch_sched_next(s), -EAGAIN); /* still held by t1 */
    T_EQ_INT(fin(s, "t1", ORCH_OUT_DONE), 0);
    T_EQ_STR(next_id(s), "t2");
    T_EQ_INT(orch_sched_next(s), -EAGAIN); /* t3 (src/) vs t2 (src/a.c) */
    T_EQ_INT(fin(s, "t2", ORCH_OUT_DONE), 0);
    T_EQ_STR(next_id(s), "t3");
    T_EQ_INT(fin(s, "t3", ORCH_OUT_DONE), 0);
    T_EQ_INT(orch_sched_active(s), 0);
    orch_sched_free(s);
}

static void test_wait_holds_no_slot(void)
{
    /* X (weight 10) and Y (5) share f; Z (1) has g. With 2 slots, Y waits
     * for X's lock without holding a slot, and Z goes ahead of it. */
    orch_sched *s = orch_sched_new(2);
    const char *f[] = { "f", NULL }, *g[] = { "g", NULL };
    ADD(s, "Z", none, g, 1);
    ADD(s, "Y", none, f, 5);
    ADD(s, "X", none, f, 10);
    T_EQ_INT(orch_sched_check(s), 0);
    T_EQ_STR(next_id(s), "X");
    T_EQ_STR(next_id(s), "Z");
    T_EQ_INT(orch_sched_next(s), -EAGAIN);
    T_EQ_INT(fin(s, "Z", ORCH_OUT_DONE), 0);
    T_EQ_INT(orch_sched_next(s), -EAGAIN); /* a free slot, but f is held */
    T_EQ_INT(fin(s, "X", ORCH_OUT_DONE), 0);
    T_EQ_STR(next_id(s), "Y");
    orch_sched_free(s);
}

static int in_blocked(orch_sched *s, const char *id)
{
    int n;
    const int *b = orch_sched_blocked(s, &n);
    for (int i = 0; i < n; i++)
        if (strcmp(orch_sched_id(s, b[i]), id) == 0)
            return 1;
    return 0;
}

static orch_sched *failure_plan(void)
{
    /* a -> b -> c, a -> d, e alone */
    orch_sched *s = orch_sched_new(4);
    const char *da[] = { "a", NULL }, *db[] = { "b", NULL };
    ADD(s, "a", none, none, 3);
    ADD(s, "b", da, none, 1);
    ADD(s, "c", db, none, 1);
    ADD(s, "d", da, none, 1);
    ADD(s, "e", none, none, 1);
    return s;
}

static void test_failures(void)
{
    orch_sched *s = failure_plan();
    T_EQ_INT(orch_sched_check(s), 0);
    T_EQ_STR(next_id(s), "a");
    T_EQ_STR(next_id(s), "e");
    T_EQ_INT(fin(s, "a", ORCH_OUT_FAILED), 3);
    T_CHECK(in_blocked(s, "b") && in_blocked(s, "c") && in_blocked(s, "d"));
    T_EQ_INT(orch_sched_state(s, orch_sched_find(s, "c")), ORCH_TASK_BLOCKED);
    T_EQ_INT(orch_sched_next(s), -EAGAIN);
    T_EQ_INT(fin(s, "e", ORCH_OUT_DONE), 0);
    T_EQ_INT(orch_sched_active(s), 0);
    T_EQ_INT(fin(s, "e", ORCH_OUT_DONE), -EINVAL); /* not running */
    orch_sched_free(s);

    orch_outcome outs[] = { ORCH_OUT_FAILED_SOFT, ORCH_OUT_SKIPPED };
    orch_task_state st[] = { ORCH_TASK_FAILED, ORCH_TASK_SKIPPED };
    for (int k = 0; k < 2; k++) {
        s = failure_plan();
        T_EQ_INT(orch_sched_check(s), 0);
        T_EQ_STR(next_id(s), "a");
        T_EQ_INT(fin(s, "a", outs[k]), 0);
        T_EQ_INT(orch_sched_state(s, 0), st[k]);
        T_EQ_INT(orch_sched_soft(s, 0), k == 0);
        const char *x = next_id(s), *y = next_id(s), *z = next_id(s);
        T_CHECK(x && y && z);
        T_EQ_INT(fin(s, "b", ORCH_OUT_DONE), 0);
        T_EQ_STR(next_id(s), "c");
        orch_sched_free(s);
    }
}

static void test_errors(void)
{
    orch_sched *s = orch_sched_new(4);
    const char *dc[] = { "c", NULL }, *da[] = { "a", NULL }, *db[] = { "b", NULL };
    const char *dself[] = { "s", NULL }, *dmiss[] = { "nope", NULL };
    ADD(s, "x", none, none, 1);
    ADD(s, "a", dc, none, 1);
    ADD(s, "b", da, none, 1);
    ADD(s, "c", db, none, 1);
    ADD(s, "s", dself, none, 1);
    ADD(s, "m", dmiss, none, 1);
    T_EQ_INT(ADD(s, "x", none, none, 1), -EEXIST);
    T_EQ_INT(ADD(s, "", none, none, 1), -EINVAL);
    T_EQ_INT(orch_sched_check(s), -EINVAL);
    T_EQ_INT(orch_sched_next(s), -EINVAL);
    int seen = 0;
    for (int i = 0; i < orch_sched_error_count(s); i++) {
        const orch_sched_error *e = orch_sched_error_at(s, i);
        switch (e->kind) {
        case ORCH_SCHED_EDUP:
            T_EQ_STR(e->ids[0], "x");
            seen |= 1;
            break;
        case ORCH_SCHED_EEMPTY:
            seen |= 2;
            break;
        case ORCH_SCHED_ESELF:
            T_EQ_STR(e->ids[0], "s");
            seen |= 4;
            break;
        case ORCH_SCHED_EUNKNOWN:
            T_EQ_STR(e->ids[0], "m");
            T_EQ_STR(e->ids[1], "nope");
            seen |= 8;
            break;
        case ORCH_SCHED_ECYCLE:
            T_EQ_INT(e->n, 3);
            T_EQ_STR(e->ids[0], "a");
            T_EQ_STR(e->ids[1], "b");
            T_EQ_STR(e->ids[2], "c");
            seen |= 16;
            break;
        }
    }
    T_EQ_INT(seen, 31);
    T_EQ_INT(orch_sched_error_count(s), 5);
    orch_sched_free(s);
}

static void test_big_cycle(void)
{
    enum { N = 10000 };
    orch_sched *s = orch_sched_new(4);
    char id[16], dep[16];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "t%d", i);
        snprintf(dep, sizeof dep, "t%d", (i + N - 1) % N);
        const char *deps[] = { dep };
        orch_sched_add(s, id, deps, 1, NULL, 0, 1);
    }
    T_EQ_INT(orch_sched_check(s), -EINVAL);
    T_EQ_INT(orch_sched_error_count(s), 1);
    const orch_sched_error *e = orch_sched_error_at(s, 0);
    T_EQ_INT(e->kind, ORCH_SCHED_ECYCLE);
    T_EQ_INT(e->n, N);
    T_EQ_STR(e->ids[0], "t0");
    T_EQ_STR(e->ids[1], "t1");
    T_EQ_STR(e->ids[N - 1], "t9999");
    orch_sched_free(s);

    /* a long chain (no cycle) hanging off a small cycle: one cycle of 2 */
    s = orch_sched_new(4);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "t%d", i);
        snprintf(dep, sizeof dep, "t%d", i == 0 ? 1 : i - 1);
        const char *deps[] = { dep };
        orch_sched_add(s, id, deps, 1, NULL, 0, 1);
    }
    T_EQ_INT(orch_sched_check(s), -EINVAL);
    T_EQ_INT(orch_sched_error_count(s), 1);
    T_EQ_INT(orch_sched_error_at(s, 0)->n, 2);
    orch_sched_free(s);
}

static void test_resume(void)
{
    orch_sched *s = failure_plan();
    T_EQ_INT(orch_sched_mark_done(s, orch_sched_find(s, "a")), 0);
    T_EQ_INT(orch_sched_mark_done(s, orch_sched_find(s, "b")), 0);
    T_EQ_INT(orch_sched_check(s), 0);
    const char *x = next_id(s), *y = next_id(s), *z = next_id(s);
    T_CHECK(x && y && z); /* c, d, e: not a, not b */
    T_EQ_INT(orch_sched_next(s), -EAGAIN);
    T_EQ_INT(orch_sched_state(s, 0), ORCH_TASK_DONE);
    T_EQ_INT(orch_sched_state(s, 1), ORCH_TASK_DONE);
    orch_sched_free(s);

    /* mark_done after check resolves dependents at once */
    s = failure_plan();
    T_EQ_INT(orch_sched_check(s), 0);
    T_EQ_INT(orch_sched_mark_done(s, 0), 0);
    T_EQ_STR(next_id(s), "b");
    T_EQ_INT(orch_sched_mark_done(s, orch_sched_find(s, "b")), -EINVAL);
    orch_sched_free(s);
}

static void test_pause_requeue_cancel(void)
{
    orch_sched *s = failure_plan();
    T_EQ_INT(orch_sched_check(s), 0);
    T_EQ_INT(orch_sched_pause(s, orch_sched_find(s, "a")), 0);
    T_EQ_INT(orch_sched_state(s, 0), ORCH_TASK_PAUSED);
    T_EQ_STR(next_id(s), "e");
    T_EQ_INT(orch_sched_next(s), -EAGAIN);
    T_EQ_INT(orch_sched_resume(s, 0), 0);
    T_EQ_STR(next_id(s), "a");
    /* crash: a goes back to ready and runs again */
    T_EQ_INT(orch_sched_requeue(s, 0), 0);
    T_EQ_INT(orch_sched_state(s, 0), ORCH_TASK_READY);
    T_EQ_STR(next_id(s), "a");
    T_EQ_INT(fin(s, "a", ORCH_OUT_DONE), 0);
    /* cancel d before it runs, b while running */
    T_EQ_INT(orch_sched_cancel(s, orch_sched_find(s, "d")), 0);
    T_EQ_STR(next_id(s), "b");
    T_EQ_INT(orch_sched_cancel(s, orch_sched_find(s, "b")), 1);
    T_CHECK(in_blocked(s, "c"));
    T_EQ_INT(orch_sched_cancel(s, orch_sched_find(s, "b")), -EINVAL);
    T_EQ_INT(fin(s, "e", ORCH_OUT_DONE), 0);
    T_EQ_INT(orch_sched_active(s), 0);
    int counts[ORCH_TASK__COUNT];
    orch_sched_counts(s, counts);
    T_EQ_INT(counts[ORCH_TASK_DONE], 2);
    T_EQ_INT(counts[ORCH_TASK_CANCELLED], 2);
    T_EQ_INT(counts[ORCH_TASK_BLOCKED], 1);
    orch_sched_free(s);
}

static void test_add_while_running(void)
{
    orch_sched *s = orch_sched_new(2);
    const char *da[] = { "a", NULL };
    ADD(s, "a", none, none, 1);
    T_EQ_INT(orch_sched_check(s), 0);
    T_EQ_STR(next_id(s), "a");
    ADD(s, "review", da, none, 1); /* a follow-up added during the run */
    T_EQ_INT(orch_sched_check(s), 0);
    T_EQ_INT(orch_sched_next(s), -EAGAIN);
    T_EQ_INT(fin(s, "a", ORCH_OUT_DONE), 0);
    T_EQ_STR(next_id(s), "review");
    /* added without a check(): a hard failure still blocks it, and says so */
    const char *dr[] = { "review", NULL };
    ADD(s, "fix", dr, none, 1);
    T_EQ_INT(fin(s, "review", ORCH_OUT_FAILED), 1);
    T_CHECK(in_blocked(s, "fix"));
    T_EQ_INT(orch_sched_active(s), 0);
    orch_sched_free(s);
}

/* A random layered DAG with shared files, run to the end: every task runs
 * once, after its deps, never beside a task with an overlapping file. */
static void test_random_dag(void)
{
    enum { N = 10000, W = 50 };
    orch_sched *s = orch_sched_new(8);
    unsigned seed = 42;
    char id[16], dep[3][16], file[2][16];
    for (int i = 0; i < N; i++) {
        const char *deps[3], *files[2];
        int nd = 0, nf = 0, layer = i / W;
        snprintf(id, sizeof id, "t%d", i);
        for (int k = 0; k < 3 && layer > 0; k++) {
            seed = seed * 1103515245u + 12345u;
            int d = (layer - 1) * W + (int)((seed >> 16) % W);
            snprintf(dep[nd], sizeof dep[nd], "t%d", d);
            deps[nd] = dep[nd];
            nd++;
        }
        seed = seed * 1103515245u + 12345u;
        if ((seed >> 16) % 4 == 0) {
            snprintf(file[nf], sizeof file[nf], "f%u", (seed >> 20) % 20);
            files[nf] = file[nf];
            nf++;
        }
        orch_sched_add(s, id, deps, (size_t)nd, files, (size_t)nf,
                       1 + (seed >> 8) % 7);
    }
    T_EQ_INT(orch_sched_check(s), 0);
    int done = 0, bad = 0, runs = 0;
    int *run = calloc(N, sizeof *run);
    int nrun = 0;
    while (done < N && runs < 2 * N) {
        int t;
        while ((t = orch_sched_next(s)) >= 0) {
            run[nrun++] = t;
            runs++;
        }
        if (nrun == 0)
            break;
        /* finish the oldest */
        int t0 = run[0];
        memmove(run, run + 1, (size_t)--nrun * sizeof *run);
        bad += orch_sched_finish(s, t0, ORCH_OUT_DONE) != 0;
        done++;
    }
    T_EQ_INT(done, N);
    T_EQ_INT(runs, N);
    T_EQ_INT(bad, 0);
    free(run);
    orch_sched_free(s);
}

int main(void)
{
    test_normalise();
    test_locks();
    test_critical_path();
    test_concurrency();
    test_lock_exclusion();
    test_wait_holds_no_slot();
    test_failures();
    test_errors();
    test_big_cycle();
    test_resume();
    test_pause_requeue_cancel();
    test_add_while_running();
    test_random_dag();
    T_DONE();
}
