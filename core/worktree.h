/* worktree.h - one git worktree per task (libgit2 1.5).
 *
 * Layout, for run R and task T of the repository at REPO (common dir GIT):
 *   branch    orch/R/T                          the task's work
 *   worktree  REPO/.orch/worktrees/R/T          its checkout (".git" file)
 *   admin     GIT/worktrees/orch-R-T            git's record of it (HEAD,
 *                                               gitdir, commondir, index)
 * The admin entry is the one `git worktree add` writes, so `git worktree
 * list`, `git -C WORKTREE ...` and `git worktree remove` all work on it.
 * While a worktree is being made, GIT/worktrees/orch-R-T/locked holds
 * "orch: initializing"; a worktree with that file (or with a directory but
 * no admin entry, or an admin entry but no directory) is half-made and the
 * next orch_wt_create() removes and re-creates it.
 *
 * Nothing here touches the user's checkout or index. Blocking calls. */
#ifndef ORCH_WORKTREE_H
#define ORCH_WORKTREE_H

#include "gitrepo.h"

/* How to fill a new worktree. */
enum {
    ORCH_WT_AUTO = 0,  /* the fast path unless attributes/filters may apply */
    ORCH_WT_FAST,      /* always the fast path (tests, benchmark) */
    ORCH_WT_LIBGIT2,   /* libgit2's checkout */
};

typedef struct orch_wt_opts {
    int checkout;  /* ORCH_WT_AUTO, ... */
    int nthreads;  /* fast path writers (0: one per CPU, at most 4) */
} orch_wt_opts;

typedef struct orch_wt {
    char path[4096];   /* the worktree directory */
    char branch[512];  /* orch/R/T */
    char name[512];    /* admin entry name, orch-R-T */
    git_oid start;     /* the commit the worktree was created at */
    int reused;        /* 1 if an intact worktree from before was kept */
} orch_wt;

/* Fills the names of task T's worktree (no I/O). -EINVAL for ids that cannot
 * be a path component or a ref component. */
int orch_wt_names(orch_git *g, const char *run, const char *task,
                  orch_wt *out);

/* Creates (or, if intact, reuses) task T's branch and worktree. The start
 * commit is `base` merged with each of `deps` (branch names, in order); if
 * the branch exists already it is kept as it is (work is never dropped).
 * Returns 0, or ORCH_GIT_CONFLICT with `conflicts` filled (paths) if the
 * dependencies do not merge, or a negative errno. `opts` may be NULL. */
int orch_wt_create(orch_git *g, const char *run, const char *task,
                   const git_oid *base, const char *const *deps, size_t ndeps,
                   const orch_wt_opts *opts, orch_wt *out,
                   orch_strlist *conflicts);

/* Commits everything left uncommitted in the worktree at `path` (new,
 * modified and deleted files, ignored files excepted) on its branch with the
 * message `msg`. Returns 1 if a commit was made, 0 if there was nothing to
 * commit; `head` receives the branch's commit either way. Submodules are
 * left as they are (their gitlinks are not updated). */
int orch_wt_commit_all(orch_git *g, const char *path, const char *msg,
                       git_oid *head);

/* Commits task T's work: repairs the worktree first if the task deleted its
 * .git file (or git's admin entry), then commits like orch_wt_commit_all
 * onto the task branch orch/R/T. If the worktree left the branch (`git
 * checkout -b X`, a detached HEAD) and X contains the task branch, the
 * branch is moved up to X's work and the worktree put back on it. Refused
 * with -EXDEV and a message that says where the work is (it is never
 * dropped) when X does not contain the task branch, when the task made a
 * repository of its own inside the worktree (an untracked X/.git), or when
 * it replaced the worktree's .git file with a directory. */
int orch_wt_commit_task(orch_git *g, const char *run, const char *task,
                        const char *msg, git_oid *head);

/* Writes the worktree's .git file and git's admin entry again if either is
 * missing (a task deleted them); 0 if intact, -EXDEV if .git is a
 * directory, -ENOENT if the worktree directory is gone. */
int orch_wt_repair(orch_git *g, const orch_wt *wt);

/* Removes task T's worktree directory and admin entry (the branch stays).
 * 0 also if there was nothing to remove. */
int orch_wt_remove(orch_git *g, const char *run, const char *task);

/* Removes every worktree of run R and deletes its branches orch/R/... and
 * its refs refs/orch/R/... (`orch clean R`). `removed` (may be NULL)
 * receives the number of branches deleted. */
int orch_wt_prune(orch_git *g, const char *run, int *removed, int *kept);

/* 1 if task T's worktree is intact (directory, admin entry, not being
 * initialised), 0 if it is absent or half-made. */
int orch_wt_intact(orch_git *g, const orch_wt *wt);

/* Removes a directory tree without following symlinks; 0 if it is absent. */
int orch_wt_rmtree(const char *path);

#endif
