/* gitjob.c - git operations on libuv's thread pool (see gitjob.h). */
#include "gitjob.h"

#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

orch_gitjob *orch_gitjob_new(int kind, const char *root)
{
    orch_gitjob *job = calloc(1, sizeof *job);
    if (!job)
        return NULL;
    job->kind = kind;
    if (orch_gitjob_str(&job->root, root) < 0) {
        free(job);
        return NULL;
    }
    return job;
}

int orch_gitjob_str(char **slot, const char *s)
{
    free(*slot);
    *slot = NULL;
    if (s && !(*slot = strdup(s)))
        return orch_err_set(-ENOMEM, "out of memory");
    return 0;
}

void orch_gitjob_free(orch_gitjob *job)
{
    if (!job)
        return;
    free(job->root);
    free(job->a);
    free(job->b);
    free(job->c);
    free(job->d);
    free(job->e);
    for (size_t i = 0; i < job->ndeps; i++)
        free(job->deps[i]);
    free(job->deps);
    orch_strlist_free(&job->list);
    free(job);
}

/* Runs the job's operation on a repository handle of its own. */
static int orch_gitjob_run(orch_gitjob *j, orch_git *g)
{
    switch (j->kind) {
    case ORCH_GITJOB_WT_CREATE:
        return orch_wt_create(g, j->a, j->b, &j->base,
                              (const char *const *)j->deps, j->ndeps,
                              &j->wt_opts, &j->wt, &j->list);
    case ORCH_GITJOB_WT_REMOVE:
        return orch_wt_remove(g, j->a, j->b);
    case ORCH_GITJOB_COMMIT_TASK:
        return orch_wt_commit_task(g, j->a, j->b, j->c, &j->oid);
    case ORCH_GITJOB_COMMIT_ALL:
        return orch_wt_commit_all(g, j->a, j->c, &j->oid);
    case ORCH_GITJOB_MERGE:
        return orch_git_merge_into(g, j->a, j->b, j->how, j->c, &j->oid,
                                   &j->list);
    case ORCH_GITJOB_APPLY:
        j->apply.msg = j->c;
        j->apply.branch = j->d;
        j->apply.journal = j->e;
        return orch_git_apply_to_head(g, j->a, &j->apply, &j->oid, &j->list);
    }
    return orch_err_set(-EINVAL, "unknown git job %d", j->kind);
}

/* A pool thread that runs git work yields to the loop thread: nice +5 for
 * this thread (Linux keeps nice values per thread; the checkout's writer
 * threads it starts inherit it), once per thread. Background work either
 * way; on a loaded machine the loop's timers and pipes come first. */
static void orch_gitjob_yield_to_loop(void)
{
    static _Thread_local int done;
    if (done)
        return;
    done = 1;
    errno = 0;
    int cur = getpriority(PRIO_PROCESS, 0);
    if (errno == 0 && cur < 15)
        setpriority(PRIO_PROCESS, 0, cur + 5);
}

static void orch_gitjob_work(uv_work_t *req)
{
    orch_gitjob *j = req->data;
    orch_git *g = NULL;
    orch_gitjob_yield_to_loop();
    orch_err_clear();
    j->rc = orch_git_open(&g, j->root);
    if (j->rc == 0)
        j->rc = orch_gitjob_run(j, g);
    /* the message is the worker thread's: copy it before the thread moves on */
    if (j->rc != 0)
        snprintf(j->msg, sizeof j->msg, "%s", orch_err_msg());
    orch_git_close(g);
}

static void orch_gitjob_after(uv_work_t *req, int status)
{
    orch_gitjob *j = req->data;
    if (status == UV_ECANCELED) {
        j->rc = -ECANCELED;
        snprintf(j->msg, sizeof j->msg, "git job cancelled");
    }
    j->done(j);
}

int orch_gitjob_queue(uv_loop_t *loop, orch_gitjob *job, orch_gitjob_cb done)
{
    static int held;
    int rc;
    /* libgit2 keeps an error state per thread and frees the other threads'
     * only if it stays initialised until they exit: once a pool thread ran
     * git work, keep one reference for the life of the process (a
     * repository handle's close would otherwise shut libgit2 down under the
     * pool threads, leaking their states). */
    if (!held) {
        git_libgit2_init();
        held = 1;
    }
    job->done = done;
    job->req.data = job;
    rc = uv_queue_work(loop, &job->req, orch_gitjob_work, orch_gitjob_after);
    if (rc < 0)
        return orch_err_set(rc, "queueing git work: %s", uv_strerror(rc));
    return 0;
}
