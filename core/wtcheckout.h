/* wtcheckout.h - materialise a tree into an empty directory, fast.
 *
 * A new task worktree starts empty, so checking it out needs none of what
 * makes a general checkout slow (diffing against a baseline, per-file
 * attribute and filter lookups, re-stating every file to refresh the index,
 * re-hashing every blob read). orch_wtco_fast() walks the tree once, creates
 * the directories, writes the blobs with plain open/write/close from a few
 * threads (each with its own object database handle), and writes the index
 * straight from the tree with the stat data of the files it just wrote, so
 * `git status` in the worktree is clean without hashing anything.
 *
 * It applies only when no content filter can apply: orch_wtco_fast_ok() says
 * no if the tree has a .gitattributes anywhere, the repository has
 * info/attributes, or core.autocrlf / core.attributesFile is set. Otherwise
 * orch_wtco_libgit2() checks the tree out with libgit2 (filters honoured). */
#ifndef ORCH_WTCHECKOUT_H
#define ORCH_WTCHECKOUT_H

#include <git2.h>

/* 1 if the fast path gives the same files as git would, 0 if not, <0 on
 * error. */
int orch_wtco_fast_ok(git_repository *repo, const git_oid *tree);

/* Writes `tree` into the existing empty directory `dir` and writes the index
 * file `index_path` for it. `objects_dir` is the repository's object store;
 * `nthreads` writers (0: one per CPU, at most 4). */
int orch_wtco_fast(git_repository *repo, const char *objects_dir,
                   const git_oid *tree, const char *dir,
                   const char *index_path, int nthreads);

/* Checks `tree` out into the worktree repository `wt` (whose workdir is
 * empty) with libgit2's checkout, updating its index. */
int orch_wtco_libgit2(git_repository *wt, const git_oid *tree);

#endif
