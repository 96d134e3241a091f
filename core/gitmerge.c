/* gitmerge.c - in-memory merges onto branches, and the final apply to the
 * user's checkout (see gitmerge.h). */
#include "gitmerge.h"

#include "err.h"

#include <errno.h>
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

int orch_git_apply_to_head(orch_git *g, const char *from, int allow_merge,
                           const char *msg, git_oid *tip,
                           orch_strlist *conflicts)
{
    git_repository *repo = orch_git_repo(g);
    git_checkout_options co;
    git_reference *head = NULL, *moved = NULL;
    git_object *target = NULL;
    git_oid cur, theirs, tree, parents[2];
    int rc, grc;
    if ((rc = orch_git_dirty(g, conflicts)) < 0)
        return rc;
    if (conflicts->n) {
        char files[600] = "";
        for (size_t k = 0; k < conflicts->n; k++)
            snprintf(files + strlen(files), sizeof files - strlen(files),
                     "%s%s", k ? ", " : "", conflicts->v[k]);
        return orch_err_set(-EBUSY, "your working tree has uncommitted "
                            "changes (%s): commit or stash them, then apply "
                            "again; nothing was changed", files);
    }
    if ((grc = git_repository_head(&head, repo)) < 0)
        return orch_git_fail(grc, "HEAD");
    git_oid_cpy(&cur, git_reference_target(head));
    *tip = cur;
    if ((rc = orch_git_resolve(g, from, &theirs)) < 0)
        goto cleanup;
    if (orch_git_is_ancestor(g, &theirs, &cur)) {
        rc = ORCH_GIT_UPTODATE;
        goto cleanup;
    }
    if (orch_git_is_ancestor(g, &cur, &theirs)) {
        *tip = theirs;
    } else if (!allow_merge) {
        rc = orch_err_set(-EAGAIN, "%s has moved on since the run started: "
                          "not a fast-forward (apply with a merge commit)",
                          git_reference_shorthand(head));
        goto cleanup;
    } else {
        if ((rc = orch_git_merge_trees(g, &cur, &theirs, &tree,
                                       conflicts)) != 0)
            goto cleanup;
        parents[0] = cur;
        parents[1] = theirs;
        if ((rc = orch_git_commit(g, &tree, parents, 2, NULL, msg, tip)) < 0)
            goto cleanup;
    }
    git_checkout_options_init(&co, GIT_CHECKOUT_OPTIONS_VERSION);
    /* SAFE: libgit2 finds every conflict before it writes anything */
    co.checkout_strategy = GIT_CHECKOUT_SAFE |
                           GIT_CHECKOUT_DONT_OVERWRITE_IGNORED;
    if ((grc = git_object_lookup(&target, repo, tip, GIT_OBJECT_COMMIT)) < 0 ||
        (grc = git_checkout_tree(repo, target, &co)) < 0) {
        if (grc == GIT_ECONFLICT)
            rc = orch_err_set(-EBUSY, "applying would overwrite untracked "
                              "files in your working tree: %s",
                              git_error_last() ? git_error_last()->message
                                               : "");
        else
            rc = orch_git_fail(grc, "updating your working tree");
        goto cleanup;
    }
    if (git_reference_is_branch(head))
        grc = git_reference_set_target(&moved, head, tip, "orch: apply run");
    else
        grc = git_repository_set_head_detached(repo, tip);
    if (grc < 0)
        rc = orch_git_fail(grc, "moving your branch");
cleanup:
    git_object_free(target);
    git_reference_free(moved);
    git_reference_free(head);
    return rc;
}
