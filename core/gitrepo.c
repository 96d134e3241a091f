/* gitrepo.c - the repository handle and git primitives (see gitrepo.h). */
#include "gitrepo.h"

#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct orch_git {
    git_repository *repo;
    char *workdir;
    char *commondir;
};

int orch_strlist_push(orch_strlist *l, const char *s)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return orch_err_set(-ENOMEM, "out of memory");
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(s)))
        return orch_err_set(-ENOMEM, "out of memory");
    l->n++;
    return 0;
}

void orch_strlist_free(orch_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

int orch_git_fail(int gitrc, const char *what)
{
    const git_error *e = git_error_last();
    int code = -EIO;
    if (gitrc == GIT_ENOTFOUND)
        code = -ENOENT;
    else if (gitrc == GIT_EEXISTS)
        code = -EEXIST;
    else if (gitrc == GIT_ELOCKED || gitrc == GIT_EMODIFIED)
        code = -EAGAIN;
    return orch_err_set(code, "%s: %s", what,
                        e && e->message ? e->message : "libgit2 error");
}

/* A copy of `p` without its trailing slashes. */
static char *strip_slash(const char *p)
{
    char *s = strdup(p);
    size_t n = s ? strlen(s) : 0;
    while (n > 1 && s[n - 1] == '/')
        s[--n] = '\0';
    return s;
}

int orch_git_open(orch_git **out, const char *dir)
{
    int rc = 0, grc;
    orch_git *g = calloc(1, sizeof *g);
    *out = NULL;
    if (!g)
        return orch_err_set(-ENOMEM, "out of memory");
    git_libgit2_init();
    /* Reading 200 MB of blobs, libgit2 would re-hash each one; git itself
     * trusts its object store on read, and so does orch. */
    git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, 0);
    if ((grc = git_repository_open_ext(&g->repo, dir, 0, NULL)) < 0) {
        if (grc == GIT_ENOTFOUND)
            rc = orch_err_set(-ENOENT, "not a git repository: %s", dir);
        else
            rc = orch_git_fail(grc, dir);
        goto cleanup;
    }
    if (git_repository_is_bare(g->repo)) {
        rc = orch_err_set(-EINVAL, "%s is a bare repository: orch needs a "
                          "working tree", dir);
        goto cleanup;
    }
    if ((grc = git_repository_head_unborn(g->repo)) != 0) {
        if (grc < 0)
            rc = orch_git_fail(grc, "reading HEAD");
        else
            rc = orch_err_set(-EINVAL, "the repository at %s has no commit "
                              "yet: orch needs a first commit (git commit "
                              "--allow-empty -m init)",
                              git_repository_workdir(g->repo));
        goto cleanup;
    }
    g->workdir = strip_slash(git_repository_workdir(g->repo));
    g->commondir = strip_slash(git_repository_commondir(g->repo));
    if (!g->workdir || !g->commondir) {
        rc = orch_err_set(-ENOMEM, "out of memory");
        goto cleanup;
    }
    *out = g;
    return 0;
cleanup:
    orch_git_close(g);
    return rc;
}

void orch_git_close(orch_git *g)
{
    if (!g)
        return;
    git_repository_free(g->repo);
    free(g->workdir);
    free(g->commondir);
    free(g);
    git_libgit2_shutdown();
}

git_repository *orch_git_repo(orch_git *g)
{
    return g->repo;
}

const char *orch_git_workdir(const orch_git *g)
{
    return g->workdir;
}

const char *orch_git_commondir(const orch_git *g)
{
    return g->commondir;
}

int orch_git_head(orch_git *g, git_oid *oid, char *branch, size_t n)
{
    git_reference *head = NULL;
    int grc = git_repository_head(&head, g->repo);
    if (grc < 0)
        return orch_git_fail(grc, "reading HEAD");
    if (branch && n) {
        branch[0] = '\0';
        if (git_reference_is_branch(head))
            snprintf(branch, n, "%s", git_reference_shorthand(head));
    }
    git_oid_cpy(oid, git_reference_target(head));
    git_reference_free(head);
    return 0;
}

int orch_git_resolve(orch_git *g, const char *rev, git_oid *oid)
{
    git_object *obj = NULL, *commit = NULL;
    int rc = 0, grc = git_revparse_single(&obj, g->repo, rev);
    if (grc == GIT_ENOTFOUND || grc == GIT_EAMBIGUOUS || grc == GIT_EINVALIDSPEC)
        return orch_err_set(-ENOENT, "no commit named '%s'", rev);
    if (grc < 0)
        return orch_git_fail(grc, rev);
    if ((grc = git_object_peel(&commit, obj, GIT_OBJECT_COMMIT)) < 0) {
        rc = orch_err_set(-ENOENT, "'%s' does not name a commit", rev);
        goto cleanup;
    }
    git_oid_cpy(oid, git_object_id(commit));
cleanup:
    git_object_free(commit);
    git_object_free(obj);
    return rc;
}

/* "orch/r" -> "refs/heads/orch/r"; full names are kept. */
static void ref_name(char *buf, size_t n, const char *name)
{
    if (strncmp(name, "refs/", 5) == 0 || strcmp(name, "HEAD") == 0)
        snprintf(buf, n, "%s", name);
    else
        snprintf(buf, n, "refs/heads/%s", name);
}

int orch_git_update_ref(orch_git *g, const char *name, const git_oid *oid,
                        const git_oid *expect, const char *log)
{
    char full[1024];
    git_reference *ref = NULL;
    int grc;
    ref_name(full, sizeof full, name);
    if (expect)
        grc = git_reference_create_matching(&ref, g->repo, full, oid, 1,
                                            expect, log);
    else
        grc = git_reference_create(&ref, g->repo, full, oid, 1, log);
    git_reference_free(ref);
    if (grc == GIT_EMODIFIED)
        return orch_err_set(-EAGAIN, "%s moved while orch was updating it",
                            full);
    return grc < 0 ? orch_git_fail(grc, full) : 0;
}

int orch_git_symref_set(orch_git *g, const char *name, const char *target,
                        const char *log)
{
    git_reference *ref = NULL;
    int grc = git_reference_symbolic_create(&ref, g->repo, name, target, 1,
                                            log);
    git_reference_free(ref);
    return grc < 0 ? orch_git_fail(grc, name) : 0;
}

int orch_git_symref_get(orch_git *g, const char *name, char *buf, size_t n)
{
    git_reference *ref = NULL;
    int rc = 0, grc = git_reference_lookup(&ref, g->repo, name);
    if (grc == GIT_ENOTFOUND)
        return orch_err_set(-ENOENT, "no ref %s", name);
    if (grc < 0)
        return orch_git_fail(grc, name);
    if (git_reference_type(ref) != GIT_REFERENCE_SYMBOLIC)
        rc = orch_err_set(-EINVAL, "%s is not a symbolic ref", name);
    else
        snprintf(buf, n, "%s", git_reference_symbolic_target(ref));
    git_reference_free(ref);
    return rc;
}

int orch_git_delete_ref(orch_git *g, const char *name)
{
    char full[1024];
    git_reference *ref = NULL;
    int grc;
    ref_name(full, sizeof full, name);
    grc = git_reference_lookup(&ref, g->repo, full);
    if (grc == GIT_ENOTFOUND)
        return 0;
    if (grc < 0)
        return orch_git_fail(grc, full);
    grc = git_reference_delete(ref);
    git_reference_free(ref);
    return grc < 0 ? orch_git_fail(grc, full) : 0;
}

int orch_git_signature(orch_git *g, git_signature **out)
{
    if (git_signature_default(out, g->repo) == 0)
        return 0;
    if (git_signature_now(out, "orch", "orch@localhost") < 0)
        return orch_git_fail(-1, "signature");
    return 0;
}

int orch_git_commit(orch_git *g, const git_oid *tree, const git_oid *parents,
                    size_t nparents, const git_signature *author,
                    const char *msg, git_oid *out)
{
    git_tree *t = NULL;
    git_commit **pc = NULL;
    git_signature *sig = NULL;
    int rc = 0, grc;
    if ((rc = orch_git_signature(g, &sig)) < 0)
        return rc;
    if ((grc = git_tree_lookup(&t, g->repo, tree)) < 0) {
        rc = orch_git_fail(grc, "commit: tree");
        goto cleanup;
    }
    if (nparents && !(pc = calloc(nparents, sizeof *pc))) {
        rc = orch_err_set(-ENOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < nparents; i++)
        if ((grc = git_commit_lookup(&pc[i], g->repo, &parents[i])) < 0) {
            rc = orch_git_fail(grc, "commit: parent");
            goto cleanup;
        }
    grc = git_commit_create(out, g->repo, NULL, author ? author : sig, sig,
                            NULL, msg, t, nparents,
                            (const git_commit **)pc);
    if (grc < 0)
        rc = orch_git_fail(grc, "commit");
cleanup:
    for (size_t i = 0; pc && i < nparents; i++)
        git_commit_free(pc[i]);
    free(pc);
    git_tree_free(t);
    git_signature_free(sig);
    return rc;
}

int orch_git_commit_tree(orch_git *g, const git_oid *commit, git_oid *tree)
{
    git_commit *c = NULL;
    int grc = git_commit_lookup(&c, g->repo, commit);
    if (grc < 0)
        return orch_git_fail(grc, "commit");
    git_oid_cpy(tree, git_commit_tree_id(c));
    git_commit_free(c);
    return 0;
}

int orch_git_is_ancestor(orch_git *g, const git_oid *ancestor,
                         const git_oid *desc)
{
    if (git_oid_equal(ancestor, desc))
        return 1;
    return git_graph_descendant_of(g->repo, desc, ancestor) == 1;
}

/* Peels a commit or tree id to its tree. */
static int lookup_tree(orch_git *g, const git_oid *id, git_tree **out)
{
    git_object *obj = NULL;
    int grc = git_object_lookup(&obj, g->repo, id, GIT_OBJECT_ANY);
    if (grc == 0) {
        grc = git_object_peel((git_object **)out, obj, GIT_OBJECT_TREE);
        git_object_free(obj);
    }
    return grc < 0 ? orch_git_fail(grc, "tree") : 0;
}

int orch_git_diff_names(orch_git *g, const git_oid *a, const git_oid *b,
                        orch_strlist *out)
{
    git_tree *ta = NULL, *tb = NULL;
    git_diff *diff = NULL;
    int rc = 0, grc;
    if ((rc = lookup_tree(g, a, &ta)) < 0 || (rc = lookup_tree(g, b, &tb)) < 0)
        goto cleanup;
    if ((grc = git_diff_tree_to_tree(&diff, g->repo, ta, tb, NULL)) < 0) {
        rc = orch_git_fail(grc, "diff");
        goto cleanup;
    }
    for (size_t i = 0; i < git_diff_num_deltas(diff); i++) {
        const git_diff_delta *d = git_diff_get_delta(diff, i);
        const char *p = d->new_file.path ? d->new_file.path : d->old_file.path;
        if ((rc = orch_strlist_push(out, p)) < 0)
            goto cleanup;
    }
cleanup:
    git_diff_free(diff);
    git_tree_free(ta);
    git_tree_free(tb);
    return rc;
}

int orch_git_exclude_orch(orch_git *g)
{
    char path[4096], line[512];
    FILE *f;
    int found = 0, last_nl = 1, rc = 0;
    snprintf(path, sizeof path, "%s/info", g->commondir);
    if (mkdir(path, 0777) < 0 && errno != EEXIST)
        return orch_err_set(-errno, "mkdir %s: %s", path, strerror(errno));
    snprintf(path, sizeof path, "%s/info/exclude", g->commondir);
    if ((f = fopen(path, "r"))) {
        while (fgets(line, sizeof line, f)) {
            size_t n = strlen(line);
            last_nl = n && line[n - 1] == '\n';
            line[strcspn(line, "\r\n")] = '\0';
            if (!strcmp(line, "/.orch/") || !strcmp(line, ".orch/") ||
                !strcmp(line, ".orch") || !strcmp(line, "/.orch"))
                found = 1;
        }
        fclose(f);
    }
    if (found)
        return 0;
    if (!(f = fopen(path, "a")))
        return orch_err_set(-errno, "open %s: %s", path, strerror(errno));
    if (fprintf(f, "%s# orch: state and task worktrees\n/.orch/\n",
                last_nl ? "" : "\n") < 0)
        rc = orch_err_set(-EIO, "write %s", path);
    if (fclose(f) != 0 && rc == 0)
        rc = orch_err_set(-errno, "write %s: %s", path, strerror(errno));
    return rc;
}

int orch_git_index_conflicts(git_index *idx, orch_strlist *out)
{
    git_index_conflict_iterator *it = NULL;
    const git_index_entry *anc, *ours, *theirs;
    int rc = 0, grc;
    if ((grc = git_index_conflict_iterator_new(&it, idx)) < 0)
        return orch_git_fail(grc, "conflicts");
    while ((grc = git_index_conflict_next(&anc, &ours, &theirs, it)) == 0) {
        const git_index_entry *e = ours ? ours : theirs ? theirs : anc;
        if (out->n && !strcmp(out->v[out->n - 1], e->path))
            continue;
        if ((rc = orch_strlist_push(out, e->path)) < 0)
            break;
    }
    if (rc == 0 && grc != GIT_ITEROVER)
        rc = orch_git_fail(grc, "conflicts");
    git_index_conflict_iterator_free(it);
    return rc;
}
