/* fuzz_sched.c - drives the scheduler with a byte-coded program and checks
 * its invariants after every step: next() never starts a task beyond the
 * concurrency, no two running tasks with overlapping file sets, every
 * running task's deps resolved. Paths are also fed to the normaliser. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lock.h"
#include "sched.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *paths[] = { "a", "a/", "a/b", "./a//b", "a/b/", "b",
                               "c/d/e", "c/", ".", "a/../b", "x/./y", "x/" };
#define NPATHS (sizeof paths / sizeof *paths)

static void check_invariants(orch_sched *s, const char *const (*files)[3],
                             const int *nfiles, char (*deps)[3][16],
                             const int *ndeps, int ntasks, int started)
{
    int running = 0;
    orch_locks lt;
    orch_lockset sets[32];
    int n = 0;

    orch_locks_init(&lt);
    for (int i = 0; i < ntasks; i++) {
        if (orch_sched_state(s, i) != ORCH_TASK_RUNNING)
            continue;
        running++;
        if (n < 32 && orch_locks_compile(&lt, files[i], NULL,
                                         (size_t)nfiles[i], &sets[n]) == 0)
            n++;
        for (int d = 0; d < ndeps[i]; d++) {
            int di = orch_sched_find(s, deps[i][d]);
            orch_task_state st = orch_sched_state(s, di);
            if (di < 0 || !(st == ORCH_TASK_DONE || st == ORCH_TASK_SKIPPED ||
                            orch_sched_soft(s, di)))
                abort();
        }
    }
    /* lowering the concurrency does not stop running tasks, but next()
     * never starts one beyond it */
    if (started && running > orch_sched_concurrency(s))
        abort();
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (orch_locks_overlap(&lt, &sets[i], &sets[j]))
                abort();
    for (int i = 0; i < n; i++)
        orch_lockset_free(&sets[i]);
    orch_locks_free(&lt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum { MAXT = 24 };
    const char *files[MAXT][3];
    int nfiles[MAXT], ndeps[MAXT];
    char ids[MAXT][16], depbuf[MAXT][3][16];
    int ntasks = 0;
    size_t i = 0;
    char norm[64];
    int dir;

    for (size_t k = 0; k + 1 < size && k < 48; k++) {
        size_t len = size - k < 40 ? size - k : 40;
        int n = orch_lock_normalise((const char *)data + k, len, norm, &dir);
        if (n > (int)len + 1 || (n >= 0 && (int)strlen(norm) != n))
            abort();
    }
    if (size < 2)
        return 0;
    orch_sched *s = orch_sched_new(data[i++] % 5);
    while (i + 2 < size) {
        uint8_t op = data[i++], a = data[i++], b = data[i++];
        if (op % 8 < 3 && ntasks < MAXT) {
            const char *deps[3];
            int nd = a % 4 > 2 ? 2 : a % 4;
            snprintf(ids[ntasks], sizeof ids[ntasks], "t%d", ntasks);
            for (int d = 0; d < nd; d++) {
                snprintf(depbuf[ntasks][d], sizeof depbuf[ntasks][d], "t%d", (b >> (d * 3)) % MAXT);
                deps[d] = depbuf[ntasks][d];
            }
            nfiles[ntasks] = (a >> 2) % 3;
            for (int f = 0; f < nfiles[ntasks]; f++)
                files[ntasks][f] = paths[(b + f * 5 + (a >> 4)) % NPATHS];
            ndeps[ntasks] = nd;
            if (orch_sched_add(s, ids[ntasks], deps, (size_t)nd,
                               files[ntasks], (size_t)nfiles[ntasks],
                               (a & 3) + 0.5) >= 0)
                ntasks++;
            continue;
        }
        int t = ntasks ? a % ntasks : 0, started = 0;
        switch (op % 8) {
        case 3:
            orch_sched_check(s);
            break;
        case 4:
            started = orch_sched_next(s) >= 0;
            break;
        case 5:
            orch_sched_finish(s, t, (orch_outcome)(b % 4));
            break;
        case 6:
            switch (b % 5) {
            case 0: orch_sched_cancel(s, t); break;
            case 1: orch_sched_pause(s, t); break;
            case 2: orch_sched_resume(s, t); break;
            case 3: orch_sched_requeue(s, t); break;
            default: orch_sched_mark_done(s, t); break;
            }
            break;
        default:
            orch_sched_set_concurrency(s, b % 6);
            break;
        }
        check_invariants(s, (const char *const (*)[3])files, nfiles, depbuf,
                         ndeps, ntasks, started);
    }
    orch_sched_free(s);
    return 0;
}
