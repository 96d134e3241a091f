/* gitjob.h - git work on libuv's thread pool.
 *
 * Creating a worktree of a large repository takes up to a second or more,
 * committing and merging a fraction of one, applying a run to the user's
 * checkout as long as writing its files; done on the loop thread, each
 * would stall every timer, pipe and socket of a run. A job runs one such
 * operation on libuv's thread pool (uv_queue_work) with a repository handle
 * of its own (opened from `root` in the worker: libgit2 objects are not
 * shared between threads), and `done` is called on the loop thread with the
 * result in the job. The caller fills the arguments, queues the job, and
 * frees it with orch_gitjob_free() in (or after) `done`.
 *
 * What must not race is the caller's to order: two jobs moving the same ref
 * (merges into one integration branch) are run one after the other by the
 * Lua workspace; refs are updated with compare-and-swap either way. */
#ifndef ORCH_GITJOB_H
#define ORCH_GITJOB_H

#include "gitmerge.h"
#include "worktree.h"

#include <uv.h>

enum orch_gitjob_kind {
    ORCH_GITJOB_WT_CREATE,   /* orch_wt_create(run=a, task=b, base, deps) */
    ORCH_GITJOB_WT_REMOVE,   /* orch_wt_remove(run=a, task=b) */
    ORCH_GITJOB_COMMIT_TASK, /* orch_wt_commit_task(run=a, task=b, msg=c) */
    ORCH_GITJOB_COMMIT_ALL,  /* orch_wt_commit_all(path=a, msg=c) */
    ORCH_GITJOB_MERGE,       /* orch_git_merge_into(into=a, from=b, how, msg=c) */
    ORCH_GITJOB_APPLY,       /* orch_git_apply_to_head(from=a, apply) */
};

typedef struct orch_gitjob orch_gitjob;
typedef void (*orch_gitjob_cb)(orch_gitjob *job);

struct orch_gitjob {
    uv_work_t req;
    int kind;
    char *root;          /* the repository (any directory in its checkout) */
    char *a, *b, *c, *d; /* string arguments (see the kinds), owned */
    char *e;
    char **deps;         /* dependency branches (WT_CREATE), owned */
    size_t ndeps;
    git_oid base;        /* WT_CREATE */
    orch_wt_opts wt_opts;
    int how;             /* MERGE: ORCH_MERGE_* */
    orch_apply_opts apply; /* APPLY: msg, branch, journal point at c, d, e */
    /* results, valid in `done` */
    int rc;              /* what the function returned */
    char msg[1024];      /* orch_err_msg() of the worker when rc != 0 */
    git_oid oid;         /* head / tip */
    orch_wt wt;          /* WT_CREATE */
    orch_strlist list;   /* conflicting or dirty paths */
    orch_gitjob_cb done;
    void *ud;
};

/* A zeroed job of `kind` on the repository at `root`; NULL without memory. */
orch_gitjob *orch_gitjob_new(int kind, const char *root);

/* Copies s into *slot (NULL stays NULL); 0 or -ENOMEM. */
int orch_gitjob_str(char **slot, const char *s);

/* Queues the job; `done` is called on the loop thread. 0 or < 0. */
int orch_gitjob_queue(uv_loop_t *loop, orch_gitjob *job, orch_gitjob_cb done);

void orch_gitjob_free(orch_gitjob *job);

#endif
