/* gitrepo.h - a git repository as orch uses it (libgit2 1.5).
 *
 * The handle wraps a git_repository opened by discovery from any directory
 * inside the user's checkout, and provides the primitives every other git
 * module (worktree.c, gitmerge.c) and the Lua binding build on: resolving
 * revisions, updating refs safely (compare-and-swap), committing trees with
 * orch's signature, listing changed paths, and excluding .orch/ from git.
 *
 * Nothing here touches the user's working tree or index. Every function
 * returns 0 (or a documented non-negative value) on success and a negative
 * errno after orch_err_set() on failure. Blocking: these call libgit2
 * synchronously. */
#ifndef ORCH_GITREPO_H
#define ORCH_GITREPO_H

#include <git2.h>
#include <stddef.h>

/* A growable list of owned strings (conflicting paths, changed names). */
typedef struct orch_strlist {
    char **v;
    size_t n, cap;
} orch_strlist;

int orch_strlist_push(orch_strlist *l, const char *s);
void orch_strlist_free(orch_strlist *l);

typedef struct orch_git orch_git;

/* Returned (positive) by merges that stopped on conflicting paths. */
#define ORCH_GIT_CONFLICT 1
/* Returned (positive) by merges that had nothing to do. */
#define ORCH_GIT_UPTODATE 2

/* Opens the repository containing `dir` (discovery upwards). Refuses a bare
 * repository and one with no commit yet ("needs a first commit"). */
int orch_git_open(orch_git **out, const char *dir);
void orch_git_close(orch_git *g);

git_repository *orch_git_repo(orch_git *g);
/* The user's working directory, absolute, no trailing slash. */
const char *orch_git_workdir(const orch_git *g);
/* The common git directory (.git of the main checkout), no trailing slash. */
const char *orch_git_commondir(const orch_git *g);

/* The commit HEAD points at; `branch` (size n) receives the short branch name
 * or "" on a detached HEAD. */
int orch_git_head(orch_git *g, git_oid *oid, char *branch, size_t n);

/* Resolves a revision (hex, branch name, "HEAD", "orch/r/t", ...) to the
 * commit it names. -ENOENT if there is none. */
int orch_git_resolve(orch_git *g, const char *rev, git_oid *oid);

/* Points refs/heads/<branch> (or a full "refs/..." name) at `oid`. With
 * `expect` non-NULL the update happens only if the ref currently points
 * there (-EAGAIN otherwise); with expect NULL it is created or moved. */
int orch_git_update_ref(orch_git *g, const char *name, const git_oid *oid,
                        const git_oid *expect, const char *log);

/* Points the full ref `name` ("refs/orch/R/onto") at the ref `target`
 * ("refs/heads/main") as a symbolic ref, created or replaced. */
int orch_git_symref_set(orch_git *g, const char *name, const char *target,
                        const char *log);

/* The target of the symbolic ref `name` into buf (size n); -ENOENT if there
 * is no such ref, -EINVAL if it is not symbolic. */
int orch_git_symref_get(orch_git *g, const char *name, char *buf, size_t n);

/* Deletes a branch (or full ref name); 0 also if it did not exist. */
int orch_git_delete_ref(orch_git *g, const char *name);

/* The signature orch commits with: user.name/user.email from the repo's
 * config, else "orch <orch@localhost>". Free with git_signature_free. */
int orch_git_signature(orch_git *g, git_signature **out);

/* Writes a commit of `tree` with the given parents (and author, or orch's
 * signature if NULL). Does not move any ref. */
int orch_git_commit(orch_git *g, const git_oid *tree, const git_oid *parents,
                    size_t nparents, const git_signature *author,
                    const char *msg, git_oid *out);

/* The tree of a commit. */
int orch_git_commit_tree(orch_git *g, const git_oid *commit, git_oid *tree);

/* 1 if `ancestor` is reachable from `desc` (or equal), 0 if not. */
int orch_git_is_ancestor(orch_git *g, const git_oid *ancestor,
                         const git_oid *desc);

/* The paths that differ between two commits (or trees), sorted. */
int orch_git_diff_names(orch_git *g, const git_oid *a, const git_oid *b,
                        orch_strlist *out);

/* Adds "/.orch/" to <commondir>/info/exclude unless a line already names it. */
int orch_git_exclude_orch(orch_git *g);

/* Appends the paths with conflicts in `idx` (each once) to `out`. */
int orch_git_index_conflicts(git_index *idx, orch_strlist *out);

/* Records libgit2's last error as orch's message and returns -EIO (or a
 * closer errno for libgit2's not-found/exists/locked codes). */
int orch_git_fail(int gitrc, const char *what);

#endif
