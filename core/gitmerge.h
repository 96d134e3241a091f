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

/* Brings the user's checked-out branch (or detached HEAD) up to `from`: a
 * fast-forward, or with `allow_merge` a merge commit with message `msg`;
 * updates the working tree and index. Refused (-EBUSY, the paths in
 * `conflicts`) if a tracked file has uncommitted changes; -EAGAIN if it is
 * not a fast-forward and merges are not allowed. Returns 0 with `tip`,
 * ORCH_GIT_UPTODATE, ORCH_GIT_CONFLICT, or < 0. */
int orch_git_apply_to_head(orch_git *g, const char *from, int allow_merge,
                           const char *msg, git_oid *tip,
                           orch_strlist *conflicts);

#endif
