/* gitmerge.h - merging task branches without a checkout (libgit2 1.5).
 *
 * Task branches are merged onto the run's integration branch entirely in
 * the object store: trees are merged in memory, commits written, and the
 * integration ref moved with compare-and-swap. The user's checkout, index
 * and HEAD are never touched, and a conflict changes nothing (no ref moves);
 * it returns ORCH_GIT_CONFLICT with the conflicting paths.
 *
 * Only orch_git_apply_to_head() touches the user's checkout: once, at the
 * end, with their approval, and only if their tracked files are clean. */
#ifndef ORCH_GITMERGE_H
#define ORCH_GITMERGE_H

#include "gitrepo.h"

enum {
    ORCH_MERGE_COMMIT = 0, /* a merge commit, two parents (--no-ff) */
    ORCH_MERGE_SQUASH,     /* one commit with the merged tree, one parent */
    ORCH_MERGE_REBASE,     /* each task commit replayed on the tip */
};

/* Merges commit `theirs` into commit `ours` (merge base found by libgit2)
 * and writes the result's tree to `tree`. 0, or ORCH_GIT_CONFLICT with
 * `conflicts` filled, or a negative errno. */
int orch_git_merge_trees(orch_git *g, const git_oid *ours,
                         const git_oid *theirs, git_oid *tree,
                         orch_strlist *conflicts);

/* Merges the commit `from` (a revision) into branch `into` the way `how`
 * says, with message `msg` (the task commits' own messages for a rebase).
 * 0 with `tip` = the branch's new commit; ORCH_GIT_UPTODATE if `from` is
 * already in `into`; ORCH_GIT_CONFLICT with `conflicts`; or < 0. */
int orch_git_merge_into(orch_git *g, const char *into, const char *from,
                        int how, const char *msg, git_oid *tip,
                        orch_strlist *conflicts);

/* The tracked paths with uncommitted changes (staged or not) in the user's
 * checkout. Untracked and ignored files do not count. */
int orch_git_dirty(orch_git *g, orch_strlist *paths);

/* How orch_git_apply_to_head() applies. */
typedef struct orch_apply_opts {
    int allow_merge;     /* a merge commit if not a fast-forward */
    const char *msg;     /* its message */
    /* The branch (short name) that must be checked out: the one the run
     * started from. NULL: whatever is checked out (or a detached HEAD). */
    const char *branch;
    /* The journal: a ref prefix ("refs/orch/R/apply") under which the apply
     * records HEAD's commit (-head) and the commit it brings HEAD to (-tip)
     * before it writes a file, and deletes both once HEAD moved. NULL: no
     * journal (an interrupted apply is then not recognised). */
    const char *journal;
} orch_apply_opts;

/* Brings the user's checked-out branch (or detached HEAD) up to `from`: a
 * fast-forward, or with `allow_merge` a merge commit; updates the working
 * tree and index. Refused (-EBUSY, the paths in `conflicts`) if a tracked file
 * has uncommitted changes; -EXDEV if `branch` is set and not checked out;
 * -EAGAIN if it is not a fast-forward and merges are not allowed.
 *
 * With a journal, an apply interrupted (kill -9) while it wrote the working
 * tree is recognised by the next call: HEAD still at the recorded commit,
 * every changed path either as it was or as the recorded tip has it. It is
 * then completed (the remaining paths written, the branch moved) before
 * anything else; a path changed since in any other way is the user's work:
 * refused (-EBUSY), nothing touched. Returns 0 with `tip`,
 * ORCH_GIT_UPTODATE, ORCH_GIT_CONFLICT, or < 0. */
int orch_git_apply_to_head(orch_git *g, const char *from,
                           const orch_apply_opts *o, git_oid *tip,
                           orch_strlist *conflicts);

#endif
