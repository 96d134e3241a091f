/* gitmerge.c - in-memory merges onto branches, and the final apply to the
 * user's checkout (see gitmerge.h). */
#include "gitmerge.h"

#include "err.h"

#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Turns an index with conflicts into ORCH_GIT_CONFLICT + the paths + a
 * message naming them. */
static int conflict_result(git_index *idx, orch_strlist *conflicts,
                           const char *what)
{
    char files[700] = "";
    int rc = orch_git_index_conflicts(idx, conflicts);
    if (rc < 0)
        return rc;
    for (size_t k = 0; k < conflicts->n; k++)
        snprintf(files + strlen(files), sizeof files - strlen(files), "%s%s",
                 k ? ", " : "", conflicts->v[k]);
    return orch_err_set(ORCH_GIT_CONFLICT, "%s conflicts in: %s", what, files);
}

int orch_git_merge_trees(orch_git *g, const git_oid *ours,
                         const git_oid *theirs, git_oid *tree,
                         orch_strlist *conflicts)
{
    git_repository *repo = orch_git_repo(g);
    git_commit *co = NULL, *ct = NULL;
    git_index *idx = NULL;
    int rc = 0, grc;
    if ((grc = git_commit_lookup(&co, repo, ours)) < 0 ||
        (grc = git_commit_lookup(&ct, repo, theirs)) < 0 ||
        (grc = git_merge_commits(&idx, repo, co, ct, NULL)) < 0) {
        rc = orch_git_fail(grc, "merge");
        goto cleanup;
    }
    if (git_index_has_conflicts(idx))
        rc = conflict_result(idx, conflicts, "merge");
    else if ((grc = git_index_write_tree_to(tree, idx, repo)) < 0)
        rc = orch_git_fail(grc, "merge: writing the tree");
cleanup:
    git_index_free(idx);
    git_commit_free(co);
    git_commit_free(ct);
    return rc;
}

/* Replays the commits of `from` missing from `onto` (merges skipped), each
 * on the previous result. Writes objects only. */
static int replay(orch_git *g, const git_oid *onto, const git_oid *from,
                  git_oid *tip, orch_strlist *conflicts)
{
    git_repository *repo = orch_git_repo(g);
    git_revwalk *walk = NULL;
    git_oid id, tree, cur = *onto;
    int rc = 0, grc;
    if ((grc = git_revwalk_new(&walk, repo)) < 0 ||
        (grc = git_revwalk_sorting(walk, GIT_SORT_TOPOLOGICAL |
                                             GIT_SORT_REVERSE)) < 0 ||
        (grc = git_revwalk_push(walk, from)) < 0 ||
        (grc = git_revwalk_hide(walk, onto)) < 0) {
        rc = orch_git_fail(grc, "rebase: walking the task branch");
        goto cleanup;
    }
    while (rc == 0 && (grc = git_revwalk_next(&id, walk)) == 0) {
        git_commit *c = NULL, *on = NULL;
        git_index *idx = NULL;
        git_oid htree;
        if ((grc = git_commit_lookup(&c, repo, &id)) < 0 ||
            (grc = git_commit_lookup(&on, repo, &cur)) < 0) {
            rc = orch_git_fail(grc, "rebase");
            goto next;
        }
        if (git_commit_parentcount(c) != 1)
            goto next; /* merges: their changes come from the replayed side */
        if ((grc = git_cherrypick_commit(&idx, repo, c, on, 0, NULL)) < 0) {
            rc = orch_git_fail(grc, "rebase: replaying a commit");
            goto next;
        }
        if (git_index_has_conflicts(idx)) {
            char what[128];
            snprintf(what, sizeof what, "rebase of commit %.12s",
                     git_oid_tostr_s(&id));
            rc = conflict_result(idx, conflicts, what);
            goto next;
        }
        if ((grc = git_index_write_tree_to(&tree, idx, repo)) < 0) {
            rc = orch_git_fail(grc, "rebase: writing the tree");
            goto next;
        }
        git_oid_cpy(&htree, git_commit_tree_id(on));
        if (git_oid_equal(&tree, &htree))
            goto next; /* already there: drop the empty commit */
        rc = orch_git_commit(g, &tree, &cur, 1, git_commit_author(c),
                             git_commit_message(c), &cur);
    next:
        git_index_free(idx);
        git_commit_free(c);
        git_commit_free(on);
    }
    if (rc == 0 && grc != GIT_ITEROVER)
        rc = orch_git_fail(grc, "rebase: walking the task branch");
    if (rc == 0)
        *tip = cur;
cleanup:
    git_revwalk_free(walk);
    return rc;
}

int orch_git_merge_into(orch_git *g, const char *into, const char *from,
                        int how, const char *msg, git_oid *tip,
                        orch_strlist *conflicts)
{
    git_oid ours, theirs, tree, parents[2];
    int rc;
    if ((rc = orch_git_resolve(g, into, &ours)) < 0 ||
        (rc = orch_git_resolve(g, from, &theirs)) < 0)
        return rc;
    *tip = ours;
    if (orch_git_is_ancestor(g, &theirs, &ours))
        return ORCH_GIT_UPTODATE;
    if (how == ORCH_MERGE_REBASE) {
        rc = replay(g, &ours, &theirs, tip, conflicts);
    } else {
        if ((rc = orch_git_merge_trees(g, &ours, &theirs, &tree,
                                       conflicts)) != 0)
            return rc;
        parents[0] = ours;
        parents[1] = theirs;
        rc = orch_git_commit(g, &tree, parents,
                             how == ORCH_MERGE_SQUASH ? 1 : 2, NULL, msg, tip);
    }
    if (rc != 0)
        return rc;
    if (git_oid_equal(tip, &ours))
        return ORCH_GIT_UPTODATE;
    return orch_git_update_ref(g, into, tip, &ours, "orch: merge");
}

int orch_git_dirty(orch_git *g, orch_strlist *paths)
{
    git_status_options so;
    git_status_list *st = NULL;
    int rc = 0, grc;
    git_status_options_init(&so, GIT_STATUS_OPTIONS_VERSION);
    so.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR;
    so.flags = GIT_STATUS_OPT_EXCLUDE_SUBMODULES;
    if ((grc = git_status_list_new(&st, orch_git_repo(g), &so)) < 0)
        return orch_git_fail(grc, "status");
    for (size_t i = 0; rc == 0 && i < git_status_list_entrycount(st); i++) {
        const git_status_entry *e = git_status_byindex(st, i);
        const git_diff_delta *d = e->head_to_index ? e->head_to_index
                                                   : e->index_to_workdir;
        if (e->status == GIT_STATUS_CURRENT || !d)
            continue;
        rc = orch_strlist_push(paths, d->new_file.path ? d->new_file.path
                                                       : d->old_file.path);
    }
    git_status_list_free(st);
    return rc;
}

/* "a, b, c" of a list, for messages. */
static void join_paths(const orch_strlist *l, char *buf, size_t n)
{
    buf[0] = '\0';
    for (size_t k = 0; k < l->n && strlen(buf) + 1 < n; k++)
        snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", k ? ", " : "",
                 l->v[k]);
}

/* The journal's two refs: PREFIX-head, PREFIX-tip. */
static void journal_names(const char *prefix, char *head, char *tipref,
                          size_t n)
{
    snprintf(head, n, "%s-head", prefix);
    snprintf(tipref, n, "%s-tip", prefix);
}

/* The blob id of the file at `path` in the working tree as git would store
 * it (filters applied; a symlink's target text), or zero if it is absent. */
static int workdir_blob(git_repository *repo, const char *path, git_oid *out)
{
    char full[4400], link[4096];
    struct stat st;
    ssize_t n;
    int grc;
    memset(out, 0, sizeof *out);
    snprintf(full, sizeof full, "%s%s", git_repository_workdir(repo), path);
    if (lstat(full, &st) < 0)
        return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
    if (S_ISDIR(st.st_mode))
        return 1; /* a directory where a file was: never ours */
    if (S_ISLNK(st.st_mode)) {
        if ((n = readlink(full, link, sizeof link)) < 0)
            return -errno;
        grc = git_odb_hash(out, link, (size_t)n, GIT_OBJECT_BLOB);
    } else
        grc = git_repository_hashfile(out, repo, path, GIT_OBJECT_BLOB, NULL);
    return grc < 0 ? orch_git_fail(grc, path) : 0;
}

/* The blob at `path` in `tree` (zero if none). */
static void tree_blob(git_tree *tree, const char *path, git_oid *out)
{
    git_tree_entry *e = NULL;
    memset(out, 0, sizeof *out);
    if (git_tree_entry_bypath(&e, tree, path) == 0) {
        if (git_tree_entry_type(e) == GIT_OBJECT_BLOB)
            git_oid_cpy(out, git_tree_entry_id(e));
        git_tree_entry_free(e);
    }
}

/* Moves the checked-out branch (or the detached HEAD) from `cur` to `tip`. */
static int move_head(git_repository *repo, const git_oid *cur,
                     const git_oid *tip)
{
    git_reference *head = NULL, *moved = NULL;
    int grc = git_repository_head(&head, repo);
    if (grc == 0) {
        if (git_reference_is_branch(head))
            grc = git_reference_set_target(&moved, head, tip,
                                           "orch: apply run");
        else
            grc = git_repository_set_head_detached(repo, tip);
    }
    (void)cur;
    git_reference_free(moved);
    git_reference_free(head);
    return grc < 0 ? orch_git_fail(grc, "moving your branch") : 0;
}

/* Test hook: ORCH_TEST_APPLY_KILL=N kills orch (SIGKILL) once the apply's
 * checkout wrote N files, so that the specs can interrupt an apply at a
 * known point instead of racing a kill against it. */
static void apply_progress(const char *path, size_t done, size_t total,
                           void *payload)
{
    long at = *(long *)payload;
    (void)path;
    (void)total;
    if (at > 0 && (long)done >= at)
        raise(SIGKILL);
}

/* Writes `tip`'s tree into the working tree (SAFE: libgit2 finds every
 * conflict before it writes anything). With `paths`, only those, FORCEd:
 * the completion of an interrupted apply whose paths were checked. */
static int checkout(git_repository *repo, const git_oid *tip,
                    const orch_strlist *paths)
{
    git_checkout_options co;
    git_object *target = NULL;
    const char *kill_at = getenv("ORCH_TEST_APPLY_KILL");
    long at = kill_at ? atol(kill_at) : 0;
    int rc = 0, grc;
    git_checkout_options_init(&co, GIT_CHECKOUT_OPTIONS_VERSION);
    co.checkout_strategy = GIT_CHECKOUT_SAFE |
                           GIT_CHECKOUT_DONT_OVERWRITE_IGNORED;
    if (paths) {
        co.checkout_strategy = GIT_CHECKOUT_FORCE |
                               GIT_CHECKOUT_DISABLE_PATHSPEC_MATCH;
        co.paths.strings = paths->v;
        co.paths.count = paths->n;
    } else if (at > 0) {
        co.progress_cb = apply_progress;
        co.progress_payload = &at;
    }
    if ((grc = git_object_lookup(&target, repo, tip, GIT_OBJECT_COMMIT)) < 0 ||
        (grc = git_checkout_tree(repo, target, &co)) < 0) {
        if (grc == GIT_ECONFLICT)
            rc = orch_err_set(-EBUSY, "applying would overwrite untracked "
                              "files in your working tree: %s",
                              git_error_last() ? git_error_last()->message
                                               : "");
        else
            rc = orch_git_fail(grc, "updating your working tree");
    }
    git_object_free(target);
    return rc;
}

/* An apply recorded in the journal and interrupted while HEAD was still at
 * `jhead`: checks every path it changes (as before, or as the tip has it:
 * nothing else may have touched it) and every other tracked path (clean),
 * then writes the rest and moves HEAD. */
static int apply_recover(orch_git *g, const git_oid *jhead,
                         const git_oid *jtip, orch_strlist *conflicts)
{
    git_repository *repo = orch_git_repo(g);
    git_commit *ch = NULL, *ct = NULL;
    git_tree *th = NULL, *tt = NULL;
    orch_strlist changed = {0}, dirty = {0};
    char lock[4400];
    int rc;
    if ((rc = orch_git_diff_names(g, jhead, jtip, &changed)) < 0 ||
        (rc = orch_git_dirty(g, &dirty)) < 0)
        goto cleanup;
    if ((rc = git_commit_lookup(&ch, repo, jhead)) < 0 ||
        (rc = git_commit_lookup(&ct, repo, jtip)) < 0 ||
        (rc = git_commit_tree(&th, ch)) < 0 ||
        (rc = git_commit_tree(&tt, ct)) < 0) {
        rc = orch_git_fail(rc, "the interrupted apply");
        goto cleanup;
    }
    for (size_t i = 0; i < dirty.n; i++) {
        int mine = 0;
        for (size_t k = 0; k < changed.n && !mine; k++)
            mine = !strcmp(dirty.v[i], changed.v[k]);
        if (!mine && (rc = orch_strlist_push(conflicts, dirty.v[i])) < 0)
            goto cleanup;
    }
    for (size_t k = 0; k < changed.n; k++) {
        git_oid w, b, t;
        if ((rc = workdir_blob(repo, changed.v[k], &w)) < 0)
            goto cleanup;
        tree_blob(th, changed.v[k], &b);
        tree_blob(tt, changed.v[k], &t);
        if (rc == 1 || (!git_oid_equal(&w, &b) && !git_oid_equal(&w, &t)))
            if ((rc = orch_strlist_push(conflicts, changed.v[k])) < 0)
                goto cleanup;
        rc = 0;
    }
    if (conflicts->n) {
        char files[600];
        join_paths(conflicts, files, sizeof files);
        rc = orch_err_set(-EBUSY, "your working tree has uncommitted changes "
                          "(%s) since orch's interrupted apply of this run: "
                          "commit or stash them, then apply again; nothing "
                          "was changed", files);
        goto cleanup;
    }
    /* killed while libgit2 wrote the index: its lock is orch's own */
    snprintf(lock, sizeof lock, "%s/index.lock", git_repository_path(repo));
    unlink(lock);
    if (changed.n && (rc = checkout(repo, jtip, &changed)) < 0)
        goto cleanup;
    rc = move_head(repo, jhead, jtip);
cleanup:
    orch_strlist_free(&changed);
    orch_strlist_free(&dirty);
    git_tree_free(th);
    git_tree_free(tt);
    git_commit_free(ch);
    git_commit_free(ct);
    return rc;
}

/* Finds the journal of an earlier apply and settles it: completed (HEAD
 * moved), completed now (HEAD still at its start: returns 1), or stale
 * (HEAD moved elsewhere since: the user's doing; dropped). */
static int apply_journal(orch_git *g, const char *prefix,
                         orch_strlist *conflicts)
{
    char jh[600], jt[600];
    git_oid head, jhead, jtip;
    int rc;
    journal_names(prefix, jh, jt, sizeof jh);
    if (orch_git_resolve(g, jh, &jhead) < 0 ||
        orch_git_resolve(g, jt, &jtip) < 0) {
        orch_git_delete_ref(g, jh);
        orch_git_delete_ref(g, jt);
        return 0;
    }
    if ((rc = orch_git_head(g, &head, NULL, 0)) < 0)
        return rc;
    if (git_oid_equal(&head, &jhead)) {
        if ((rc = apply_recover(g, &jhead, &jtip, conflicts)) < 0)
            return rc;
        rc = 1;
    }
    orch_git_delete_ref(g, jt);
    orch_git_delete_ref(g, jh);
    return rc;
}

/* -EXDEV unless `branch` is checked out. */
static int check_branch(orch_git *g, const char *branch)
{
    char cur[512];
    git_oid oid;
    int rc = orch_git_head(g, &oid, cur, sizeof cur);
    if (rc < 0 || !branch || !strcmp(cur, branch))
        return rc;
    return orch_err_set(-EXDEV, "the run started from branch %s, but %s is "
                        "checked out: switch back (git checkout %s) and apply "
                        "again; nothing was changed", branch,
                        cur[0] ? cur : "a detached HEAD", branch);
}

int orch_git_apply_to_head(orch_git *g, const char *from,
                           const orch_apply_opts *o, git_oid *tip,
                           orch_strlist *conflicts)
{
    git_oid cur, theirs, tree, parents[2];
    char jh[600], jt[600];
    int rc, recovered = 0;
    if ((rc = check_branch(g, o->branch)) < 0)
        return rc;
    if (o->journal && (recovered = apply_journal(g, o->journal, conflicts)) < 0)
        return recovered;
    if ((rc = orch_git_dirty(g, conflicts)) < 0)
        return rc;
    if (conflicts->n) {
        char files[600];
        join_paths(conflicts, files, sizeof files);
        return orch_err_set(-EBUSY, "your working tree has uncommitted "
                            "changes (%s): commit or stash them, then apply "
                            "again; nothing was changed", files);
    }
    if ((rc = orch_git_head(g, &cur, NULL, 0)) < 0)
        return rc;
    *tip = cur;
    if ((rc = orch_git_resolve(g, from, &theirs)) < 0)
        return rc;
    if (orch_git_is_ancestor(g, &theirs, &cur))
        return recovered ? 0 : ORCH_GIT_UPTODATE;
    if (orch_git_is_ancestor(g, &cur, &theirs)) {
        *tip = theirs;
    } else if (!o->allow_merge) {
        return orch_err_set(-EAGAIN, "your branch has moved on since the run "
                            "started: not a fast-forward (apply with a merge "
                            "commit)");
    } else {
        if ((rc = orch_git_merge_trees(g, &cur, &theirs, &tree,
                                       conflicts)) != 0)
            return rc;
        parents[0] = cur;
        parents[1] = theirs;
        if ((rc = orch_git_commit(g, &tree, parents, 2, NULL,
                                  o->msg ? o->msg : "orch: apply run",
                                  tip)) < 0)
            return rc;
    }
    if (o->journal) {
        journal_names(o->journal, jh, jt, sizeof jh);
        if ((rc = orch_git_update_ref(g, jh, &cur, NULL, "orch: applying")) < 0 ||
            (rc = orch_git_update_ref(g, jt, tip, NULL, "orch: applying")) < 0)
            return rc;
    }
    if ((rc = checkout(orch_git_repo(g), tip, NULL)) < 0 ||
        (rc = move_head(orch_git_repo(g), &cur, tip)) < 0)
        goto unjournal;
    rc = 0;
unjournal:
    /* done, or refused before writing anything (SAFE checks first): no
     * journal left; after any other failure it stays for the next apply */
    if (o->journal && (rc == 0 || rc == -EBUSY)) {
        orch_git_delete_ref(g, jt);
        orch_git_delete_ref(g, jh);
    }
    return rc;
}
