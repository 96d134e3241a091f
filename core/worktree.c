/* worktree.c - task worktrees: create, commit, remove, prune, recover (see
 * worktree.h). */
#include "worktree.h"

#include "err.h"
#include "wtcheckout.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INIT_MARK "orch: initializing"

/* A run or task id must be usable as one path and one ref component. */
static int valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 200 || id[0] == '.' || id[0] == '-')
        return 0;
    if (strstr(id, "..") || (n >= 5 && !strcmp(id + n - 5, ".lock")))
        return 0;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
              *p == '.'))
            return 0;
    return 1;
}

int orch_wt_names(orch_git *g, const char *run, const char *task,
                  orch_wt *out)
{
    memset(out, 0, sizeof *out);
    if (!valid_id(run))
        return orch_err_set(-EINVAL, "run id '%s' cannot name a branch "
                            "(letters, digits, '.', '_', '-')", run);
    if (!valid_id(task))
        return orch_err_set(-EINVAL, "task id '%s' cannot name a branch "
                            "(letters, digits, '.', '_', '-')", task);
    if (!strcmp(task, "integration"))
        return orch_err_set(-EINVAL, "task id 'integration' is reserved for "
                            "the run's integration branch orch/%s/integration",
                            run);
    snprintf(out->path, sizeof out->path, "%s/.orch/worktrees/%s/%s",
             orch_git_workdir(g), run, task);
    snprintf(out->branch, sizeof out->branch, "orch/%s/%s", run, task);
    snprintf(out->name, sizeof out->name, "orch-%s-%s", run, task);
    return 0;
}

static int rm_cb(const char *path, const struct stat *st, int flag,
                 struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP ? rmdir(path) : unlink(path))
        return errno == ENOENT ? 0 : -1;
    return 0;
}

int orch_wt_rmtree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : orch_err_set(-errno, "%s: %s", path,
                                                  strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(path) < 0)
            return orch_err_set(-errno, "rm %s: %s", path, strerror(errno));
        return 0;
    }
    if (nftw(path, rm_cb, 32, FTW_DEPTH | FTW_PHYS) != 0)
        return orch_err_set(-errno, "rm -r %s: %s", path, strerror(errno));
    return 0;
}

static int mkdirs_once(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0777) < 0 && errno != EEXIST)
            return orch_err_set(-errno, "mkdir %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) < 0 && errno != EEXIST)
        return orch_err_set(-errno, "mkdir %s: %s", buf, strerror(errno));
    return 0;
}

/* mkdir -p. A parent may vanish under it: the removal of another task's
 * worktree, on another thread of the pool, removes the run's directory
 * once it is empty (orch_wt_remove); then the chain is made again. */
static int mkdirs(const char *path)
{
    int rc = 0;
    for (int tries = 0; tries < 8; tries++)
        if ((rc = mkdirs_once(path)) != -ENOENT)
            break;
    return rc;
}

static int write_file(const char *path, const char *text)
{
    int rc = 0;
    FILE *f = fopen(path, "w");
    if (!f)
        return orch_err_set(-errno, "create %s: %s", path, strerror(errno));
    if (fputs(text, f) < 0)
        rc = orch_err_set(-EIO, "write %s", path);
    if (fclose(f) != 0 && rc == 0)
        rc = orch_err_set(-errno, "write %s: %s", path, strerror(errno));
    return rc;
}

static void admin_path(orch_git *g, const orch_wt *wt, const char *file,
                       char *buf, size_t n)
{
    snprintf(buf, n, "%s/worktrees/%s%s%s", orch_git_commondir(g), wt->name,
             file ? "/" : "", file ? file : "");
}

int orch_wt_intact(orch_git *g, const orch_wt *wt)
{
    char p[4400], line[64] = "";
    struct stat st;
    FILE *f;
    snprintf(p, sizeof p, "%s/.git", wt->path);
    if (stat(p, &st) < 0 || !S_ISREG(st.st_mode))
        return 0;
    static const char *const need[] = {"gitdir", "HEAD", "commondir",
                                       "index"};
    for (size_t i = 0; i < sizeof need / sizeof *need; i++) {
        admin_path(g, wt, need[i], p, sizeof p);
        if (stat(p, &st) < 0)
            return 0;
    }
    admin_path(g, wt, "locked", p, sizeof p);
    if ((f = fopen(p, "r"))) {
        int half = fgets(line, sizeof line, f) &&
                   !strncmp(line, INIT_MARK, strlen(INIT_MARK));
        fclose(f);
        if (half)
            return 0;
    }
    return 1;
}

/* Merges the dependency branches into `base`, giving the start commit. */
static int start_commit(orch_git *g, const char *run, const char *task,
                        const git_oid *base, const char *const *deps,
                        size_t ndeps, git_oid *out, orch_strlist *conflicts)
{
    git_repository *repo = orch_git_repo(g);
    git_oid cur = *base, d, tree, parents[2];
    int rc = 0, grc;
    for (size_t i = 0; i < ndeps; i++) {
        git_commit *cc = NULL, *cd = NULL;
        git_index *idx = NULL;
        char msg[1024];
        if ((rc = orch_git_resolve(g, deps[i], &d)) < 0)
            return rc;
        if (orch_git_is_ancestor(g, &d, &cur))
            continue;
        if (orch_git_is_ancestor(g, &cur, &d)) {
            cur = d;
            continue;
        }
        if ((grc = git_commit_lookup(&cc, repo, &cur)) < 0 ||
            (grc = git_commit_lookup(&cd, repo, &d)) < 0 ||
            (grc = git_merge_commits(&idx, repo, cc, cd, NULL)) < 0) {
            rc = orch_git_fail(grc, "merging dependencies");
            goto next;
        }
        if (git_index_has_conflicts(idx)) {
            if ((rc = orch_git_index_conflicts(idx, conflicts)) == 0)
                rc = ORCH_GIT_CONFLICT;
            goto next;
        }
        if ((grc = git_index_write_tree_to(&tree, idx, repo)) < 0) {
            rc = orch_git_fail(grc, "merging dependencies");
            goto next;
        }
        parents[0] = cur;
        parents[1] = d;
        snprintf(msg, sizeof msg, "orch %s/%s: start from dependency %s\n",
                 run, task, deps[i]);
        rc = orch_git_commit(g, &tree, parents, 2, NULL, msg, &cur);
    next:
        git_index_free(idx);
        git_commit_free(cc);
        git_commit_free(cd);
        if (rc == ORCH_GIT_CONFLICT) {
            char files[600] = "";
            for (size_t k = 0; k < conflicts->n; k++)
                snprintf(files + strlen(files), sizeof files - strlen(files),
                         "%s%s", k ? ", " : "", conflicts->v[k]);
            return orch_err_set(ORCH_GIT_CONFLICT, "the dependencies of task "
                                "%s conflict when merged (at %s): %s", task,
                                deps[i], files);
        }
        if (rc < 0)
            return rc;
    }
    *out = cur;
    return 0;
}

/* Writes the admin entry and the worktree's .git file, with the "being
 * initialised" mark. */
static int write_admin(orch_git *g, const orch_wt *wt)
{
    char p[4400], text[4600];
    int rc;
    admin_path(g, wt, NULL, p, sizeof p);
    if ((rc = mkdirs(p)) < 0 || (rc = mkdirs(wt->path)) < 0)
        return rc;
    admin_path(g, wt, "locked", p, sizeof p);
    if ((rc = write_file(p, INIT_MARK "\n")) < 0)
        return rc;
    admin_path(g, wt, "gitdir", p, sizeof p);
    snprintf(text, sizeof text, "%s/.git\n", wt->path);
    if ((rc = write_file(p, text)) < 0)
        return rc;
    admin_path(g, wt, "commondir", p, sizeof p);
    if ((rc = write_file(p, "../..\n")) < 0)
        return rc;
    admin_path(g, wt, "HEAD", p, sizeof p);
    snprintf(text, sizeof text, "ref: refs/heads/%s\n", wt->branch);
    if ((rc = write_file(p, text)) < 0)
        return rc;
    admin_path(g, wt, NULL, p, sizeof p);
    snprintf(text, sizeof text, "gitdir: %s\n", p);
    snprintf(p, sizeof p, "%s/.git", wt->path);
    return write_file(p, text);
}

static int populate(orch_git *g, const orch_wt *wt, const orch_wt_opts *o)
{
    git_repository *wtrepo = NULL;
    git_oid tree;
    char objects[4200], index[4400];
    int rc, mode = o ? o->checkout : ORCH_WT_AUTO, grc;
    if ((rc = orch_git_commit_tree(g, &wt->start, &tree)) < 0)
        return rc;
    if (mode == ORCH_WT_AUTO) {
        if ((rc = orch_wtco_fast_ok(orch_git_repo(g), &tree)) < 0)
            return rc;
        mode = rc ? ORCH_WT_FAST : ORCH_WT_LIBGIT2;
    }
    if (mode == ORCH_WT_FAST) {
        snprintf(objects, sizeof objects, "%s/objects", orch_git_commondir(g));
        admin_path(g, wt, "index", index, sizeof index);
        return orch_wtco_fast(orch_git_repo(g), objects, &tree, wt->path,
                              index, o ? o->nthreads : 0);
    }
    if ((grc = git_repository_open(&wtrepo, wt->path)) < 0)
        return orch_git_fail(grc, wt->path);
    rc = orch_wtco_libgit2(wtrepo, &tree);
    git_repository_free(wtrepo);
    return rc;
}

int orch_wt_create(orch_git *g, const char *run, const char *task,
                   const git_oid *base, const char *const *deps, size_t ndeps,
                   const orch_wt_opts *opts, orch_wt *out,
                   orch_strlist *conflicts)
{
    char p[4400], ref[600];
    int rc, has_branch;
    if ((rc = orch_wt_names(g, run, task, out)) < 0)
        return rc;
    if ((rc = orch_git_exclude_orch(g)) < 0)
        return rc;
    snprintf(ref, sizeof ref, "refs/heads/%s", out->branch);
    has_branch = git_reference_name_to_id(&out->start, orch_git_repo(g),
                                          ref) == 0;
    if (has_branch && orch_wt_intact(g, out)) {
        /* A crash may leave git's lock on the index behind: nobody else
         * works in this worktree while orch prepares it. */
        admin_path(g, out, "index.lock", p, sizeof p);
        unlink(p);
        out->reused = 1;
        return 0;
    }
    /* absent or half-made: clear whatever is there */
    if ((rc = orch_wt_rmtree(out->path)) < 0)
        return rc;
    admin_path(g, out, NULL, p, sizeof p);
    if ((rc = orch_wt_rmtree(p)) < 0)
        return rc;
    if (!has_branch) {
        rc = start_commit(g, run, task, base, deps, ndeps, &out->start,
                          conflicts);
        if (rc != 0)
            return rc;
        if ((rc = orch_git_update_ref(g, out->branch, &out->start, NULL,
                                      "orch: task branch")) < 0)
            return rc;
    }
    if ((rc = write_admin(g, out)) < 0 || (rc = populate(g, out, opts)) < 0)
        return rc;
    admin_path(g, out, "locked", p, sizeof p);
    if (unlink(p) < 0)
        return orch_err_set(-errno, "rm %s: %s", p, strerror(errno));
    return 0;
}

static int add_merge_head(const git_oid *oid, void *payload)
{
    git_oid *parents = payload;
    if (git_oid_is_zero(&parents[1])) /* orch takes the first one only */
        git_oid_cpy(&parents[1], oid);
    return 0;
}

/* Stages every change of the worktree like `git add -A` (ignored files
 * excepted). Not with git_index_add_all/git_index_update_all: in libgit2 1.5
 * their workdir diff leaks ~82 KB per call in a repository with an
 * uninitialised submodule (the submodule lookup it makes); a status list that
 * excludes submodules does not, and gives the same set. Conflicted paths are
 * left alone (the commit is then refused), and untracked directories that
 * hold a repository of their own ("sub/", a nested .git) go to `nested`. */
static int stage_all(git_repository *wt, git_index *idx, const char *path,
                     orch_strlist *nested)
{
    git_status_options so;
    git_status_list *st = NULL;
    int rc = 0, grc;
    git_status_options_init(&so, GIT_STATUS_OPTIONS_VERSION);
    so.show = GIT_STATUS_SHOW_WORKDIR_ONLY;
    so.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED |
               GIT_STATUS_OPT_RECURSE_UNTRACKED_DIRS |
               GIT_STATUS_OPT_EXCLUDE_SUBMODULES;
    if ((grc = git_status_list_new(&st, wt, &so)) < 0)
        return orch_git_fail(grc, path);
    for (size_t i = 0; rc == 0 && i < git_status_list_entrycount(st); i++) {
        const git_status_entry *e = git_status_byindex(st, i);
        const git_diff_delta *d = e->index_to_workdir;
        const char *p;
        size_t n;
        if (!d || (e->status & GIT_STATUS_CONFLICTED))
            continue;
        if (e->status & GIT_STATUS_WT_DELETED) {
            if ((grc = git_index_remove_bypath(idx, d->old_file.path)) < 0)
                rc = orch_git_fail(grc, d->old_file.path);
            continue;
        }
        p = d->new_file.path ? d->new_file.path : d->old_file.path;
        n = strlen(p);
        if (n && p[n - 1] == '/') {
            rc = orch_strlist_push(nested, p);
            continue;
        }
        if ((grc = git_index_add_bypath(idx, p)) < 0)
            rc = orch_git_fail(grc, p);
    }
    git_status_list_free(st);
    return rc;
}

/* "a/, b/" from a list, for messages. */
static void join_list(const orch_strlist *l, char *buf, size_t n)
{
    buf[0] = '\0';
    for (size_t k = 0; k < l->n && strlen(buf) + 1 < n; k++)
        snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", k ? ", " : "",
                 l->v[k]);
}

/* The branch the worktree is meant to be on (`branch`, a short name, or
 * NULL: whatever HEAD names) and where HEAD actually is: *parent gets the
 * commit the new work goes on. If HEAD left the task branch (the agent ran
 * `git checkout -b X` or detached it), *moved is set and the task branch
 * must be an ancestor of HEAD (else the work cannot be brought back on it
 * without a merge: refused, saying where it is). */
static int wt_head(git_repository *wt, orch_git *g, const char *path,
                   const char *branch, git_oid *parent, int *moved,
                   git_oid *branch_tip)
{
    git_reference *h = NULL;
    char full[600];
    int rc = 0, grc;
    *moved = 0;
    if ((grc = git_reference_name_to_id(parent, wt, "HEAD")) < 0)
        return orch_git_fail(grc, "HEAD of the worktree");
    if (!branch)
        return 0;
    snprintf(full, sizeof full, "refs/heads/%s", branch);
    if ((grc = git_reference_name_to_id(branch_tip, orch_git_repo(g), full)) < 0)
        return orch_git_fail(grc, full);
    if ((grc = git_reference_lookup(&h, wt, "HEAD")) < 0)
        return orch_git_fail(grc, "HEAD of the worktree");
    if (git_reference_type(h) == GIT_REFERENCE_SYMBOLIC &&
        !strcmp(git_reference_symbolic_target(h), full))
        goto cleanup;
    *moved = 1;
    if (!orch_git_is_ancestor(g, branch_tip, parent)) {
        const char *where = git_reference_type(h) == GIT_REFERENCE_SYMBOLIC
                                ? git_reference_symbolic_target(h)
                                : "a detached HEAD";
        if (!strncmp(where, "refs/heads/", 11))
            where += 11;
        rc = orch_err_set(-EXDEV, "the worktree %s left its branch %s: it is "
                          "on %s (at %.12s), which does not contain %s; the "
                          "work is there, not committed by orch: cd '%s'; "
                          "git checkout %s; git merge %s (or cherry-pick), "
                          "then orch resume", path, branch, where,
                          git_oid_tostr_s(parent), branch, path, branch,
                          git_oid_tostr_s(parent));
    }
cleanup:
    git_reference_free(h);
    return rc;
}

/* Commits the worktree repository `wt` (at `path`) onto `branch` (NULL:
 * HEAD's). See orch_wt_commit_all / orch_wt_commit_task. */
static int commit_in(orch_git *g, git_repository *wt, const char *path,
                     const char *branch, const char *msg, git_oid *head)
{
    git_index *idx = NULL;
    orch_strlist nested = {0};
    git_oid tree, parents[2], htree, btip;
    int rc = 0, grc, nparents = 1, moved = 0;
    memset(parents, 0, sizeof parents);
    if ((rc = wt_head(wt, g, path, branch, &parents[0], &moved, &btip)) < 0)
        return rc;
    *head = parents[0];
    if ((grc = git_repository_index(&idx, wt)) < 0) {
        rc = orch_git_fail(grc, path);
        goto cleanup;
    }
    if ((rc = stage_all(wt, idx, path, &nested)) < 0)
        goto cleanup;
    if (nested.n) {
        char list[700];
        join_list(&nested, list, sizeof list);
        rc = orch_err_set(-EXDEV, "the task made a git repository of its own "
                          "inside its worktree (%s: a .git inside), which "
                          "orch cannot commit into the task branch; the work "
                          "is kept, not committed, in %s", list, path);
        goto cleanup;
    }
    if (git_index_has_conflicts(idx)) {
        rc = orch_err_set(-EBUSY, "%s has unresolved merge conflicts: "
                          "resolve them and `git add` the files", path);
        goto cleanup;
    }
    if ((grc = git_index_write_tree(&tree, idx)) < 0 ||
        (grc = git_index_write(idx)) < 0) {
        rc = orch_git_fail(grc, path);
        goto cleanup;
    }
    /* a merge the user resolved in the worktree but did not commit */
    git_repository_mergehead_foreach(wt, add_merge_head, parents);
    if (!git_oid_is_zero(&parents[1]))
        nparents = 2;
    else if ((rc = orch_git_commit_tree(g, &parents[0], &htree)) < 0)
        goto cleanup;
    if (nparents == 2 || !git_oid_equal(&htree, &tree)) {
        if ((rc = orch_git_commit(g, &tree, parents, (size_t)nparents, NULL,
                                  msg, head)) < 0)
            goto cleanup;
        rc = 1;
    }
    if (moved) {
        /* bring the task branch up to the work and HEAD back onto it */
        char full[600];
        snprintf(full, sizeof full, "refs/heads/%s", branch);
        if (!git_oid_equal(head, &btip)) {
            if ((rc = orch_git_update_ref(g, full, head, &btip,
                                          "orch: work from another branch")) < 0)
                goto cleanup;
            rc = 1;
        }
        if ((grc = git_repository_set_head(wt, full)) < 0) {
            rc = orch_git_fail(grc, "putting the worktree back on its branch");
            goto cleanup;
        }
    } else if (rc == 1) {
        git_reference *h = NULL, *m = NULL;
        if ((grc = git_repository_head(&h, wt)) == 0)
            grc = git_reference_set_target(&m, h, head, "orch: commit");
        git_reference_free(h);
        git_reference_free(m);
        if (grc < 0) {
            rc = orch_git_fail(grc, "moving the task branch");
            goto cleanup;
        }
    }
    if (rc == 1)
        git_repository_state_cleanup(wt);
cleanup:
    orch_strlist_free(&nested);
    git_index_free(idx);
    return rc;
}

int orch_wt_commit_all(orch_git *g, const char *path, const char *msg,
                       git_oid *head)
{
    git_repository *wt = NULL;
    int rc, grc;
    if ((grc = git_repository_open(&wt, path)) < 0)
        return orch_git_fail(grc, path);
    rc = commit_in(g, wt, path, NULL, msg, head);
    git_repository_free(wt);
    return rc;
}

int orch_wt_repair(orch_git *g, const orch_wt *wt)
{
    char p[4400], text[4600];
    struct stat st;
    int rc;
    if (stat(wt->path, &st) < 0 || !S_ISDIR(st.st_mode))
        return orch_err_set(-ENOENT, "the worktree %s is gone", wt->path);
    snprintf(p, sizeof p, "%s/.git", wt->path);
    if (lstat(p, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return orch_err_set(-EXDEV, "the task replaced its worktree's .git "
                                "file with a repository of its own (%s): orch "
                                "cannot commit it into the task branch; the "
                                "work is kept, not committed, in %s", p,
                                wt->path);
        if (orch_wt_intact(g, wt))
            return 0;
    }
    /* .git deleted (or git's admin entry lost): write both again, pointing
     * at the task branch; a lost index makes every file count as new, which
     * the commit then takes as it is */
    admin_path(g, wt, NULL, p, sizeof p);
    if ((rc = mkdirs(p)) < 0)
        return rc;
    admin_path(g, wt, "gitdir", p, sizeof p);
    snprintf(text, sizeof text, "%s/.git\n", wt->path);
    if ((rc = write_file(p, text)) < 0)
        return rc;
    admin_path(g, wt, "commondir", p, sizeof p);
    if ((rc = write_file(p, "../..\n")) < 0)
        return rc;
    admin_path(g, wt, "HEAD", p, sizeof p);
    if (stat(p, &st) < 0) {
        snprintf(text, sizeof text, "ref: refs/heads/%s\n", wt->branch);
        if ((rc = write_file(p, text)) < 0)
            return rc;
    }
    admin_path(g, wt, "locked", p, sizeof p);
    unlink(p);
    admin_path(g, wt, NULL, p, sizeof p);
    snprintf(text, sizeof text, "gitdir: %s\n", p);
    snprintf(p, sizeof p, "%s/.git", wt->path);
    return write_file(p, text);
}

int orch_wt_commit_task(orch_git *g, const char *run, const char *task,
                        const char *msg, git_oid *head)
{
    git_repository *repo = NULL;
    orch_wt wt;
    int rc, grc;
    if ((rc = orch_wt_names(g, run, task, &wt)) < 0 ||
        (rc = orch_wt_repair(g, &wt)) < 0)
        return rc;
    if ((grc = git_repository_open(&repo, wt.path)) < 0)
        return orch_git_fail(grc, wt.path);
    rc = commit_in(g, repo, wt.path, wt.branch, msg, head);
    git_repository_free(repo);
    return rc;
}

/* Removes the worktree at `path` and admin entry `name`. */
static int remove_pair(orch_git *g, const char *path, const char *name)
{
    char p[4400];
    int rc;
    if (path && (rc = orch_wt_rmtree(path)) < 0)
        return rc;
    snprintf(p, sizeof p, "%s/worktrees/%s", orch_git_commondir(g), name);
    return orch_wt_rmtree(p);
}

int orch_wt_remove(orch_git *g, const char *run, const char *task)
{
    orch_wt wt;
    char p[4400];
    int rc;
    if ((rc = orch_wt_names(g, run, task, &wt)) < 0)
        return rc;
    if ((rc = remove_pair(g, wt.path, wt.name)) < 0)
        return rc;
    snprintf(p, sizeof p, "%s/.orch/worktrees/%s", orch_git_workdir(g), run);
    rmdir(p); /* the run's directory, once empty */
    return 0;
}

/* Removes the admin entries whose gitdir points under `dir`/ (entries left
 * behind by a worktree directory removed by hand). */
static int prune_admin(orch_git *g, const char *dir)
{
    char p[4400], line[4400];
    struct dirent *de;
    DIR *d;
    int rc = 0;
    snprintf(p, sizeof p, "%s/worktrees", orch_git_commondir(g));
    if (!(d = opendir(p)))
        return 0;
    while (rc == 0 && (de = readdir(d))) {
        FILE *f;
        int mine = 0;
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/worktrees/%s/gitdir", orch_git_commondir(g),
                 de->d_name);
        if ((f = fopen(p, "r"))) {
            mine = fgets(line, sizeof line, f) &&
                   !strncmp(line, dir, strlen(dir)) &&
                   line[strlen(dir)] == '/';
            fclose(f);
        }
        if (mine)
            rc = remove_pair(g, NULL, de->d_name);
    }
    closedir(d);
    return rc;
}

/* Whether branch (a full ref name) is checked out in any worktree. */
static int wt_branch_checked_out(orch_git *g, const char *name)
{
    git_reference *ref = NULL;
    int out = 0;
    if (git_reference_lookup(&ref, orch_git_repo(g), name) == 0)
        out = git_branch_is_checked_out(ref) == 1;
    git_reference_free(ref);
    return out;
}

int orch_wt_prune(orch_git *g, const char *run, int *removed, int *kept)
{
    git_reference_iterator *it = NULL;
    git_reference *ref;
    orch_strlist names = {0};
    char dir[4200], prefix[600], p[4400];
    struct dirent *de;
    DIR *d;
    int rc = 0, grc;
    if (removed)
        *removed = 0;
    if (!valid_id(run))
        return orch_err_set(-EINVAL, "bad run id '%s'", run);
    snprintf(dir, sizeof dir, "%s/.orch/worktrees/%s", orch_git_workdir(g),
             run);
    if ((d = opendir(dir))) {
        while (rc == 0 && (de = readdir(d)))
            if (de->d_name[0] != '.')
                rc = orch_strlist_push(&names, de->d_name);
        closedir(d);
    }
    for (size_t i = 0; rc == 0 && i < names.n; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names.v[i]);
        rc = orch_wt_rmtree(p);
    }
    orch_strlist_free(&names);
    if (rc < 0 || (rc = prune_admin(g, dir)) < 0)
        return rc;
    rmdir(dir);
    char prefix2[600];
    snprintf(prefix, sizeof prefix, "refs/heads/orch/%s/", run);
    snprintf(prefix2, sizeof prefix2, "refs/orch/%s/", run);
    if ((grc = git_reference_iterator_new(&it, orch_git_repo(g))) < 0)
        return orch_git_fail(grc, "listing branches");
    while ((grc = git_reference_next(&ref, it)) == 0) {
        const char *rn = git_reference_name(ref);
        if (!strncmp(rn, prefix, strlen(prefix)) ||
            !strncmp(rn, prefix2, strlen(prefix2)))
            rc = orch_strlist_push(&names, rn);
        git_reference_free(ref);
        if (rc < 0)
            break;
    }
    git_reference_iterator_free(it);
    for (size_t i = 0; rc == 0 && i < names.n; i++) {
        int is_branch = !strncmp(names.v[i], "refs/heads/", 11);
        if (is_branch && wt_branch_checked_out(g, names.v[i])) {
            /* the user (or a worktree outside the run) is on it: keep it */
            if (kept)
                (*kept)++;
            continue;
        }
        if ((rc = orch_git_delete_ref(g, names.v[i])) == 0 && removed && is_branch)
            (*removed)++;
    }
    orch_strlist_free(&names);
    return rc;
}
