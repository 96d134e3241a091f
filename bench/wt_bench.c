/* wt_bench.c - the C side of bench/worktree.sh (built by that script against
 * the orchcore library; not part of the CMake build).
 *
 *   wt_bench create REPO RUN TASK MODE   MODE: fast | fast1 | libgit2 | default
 *   wt_bench merge REPO RUN              a task changing 100 files, merged back
 *
 * Prints "seconds" lines on stdout; exits non-zero on failure. */
#include "err.h"
#include "gitmerge.h"
#include "gitrepo.h"
#include "worktree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int die(const char *what)
{
    fprintf(stderr, "wt_bench: %s: %s\n", what, orch_err_msg());
    return 1;
}

/* libgit2's own git_worktree_add with default options (what DESIGN.md
 * measured). */
static int libgit2_default(orch_git *g, const char *run, const char *task)
{
    git_worktree_add_options wo;
    git_worktree *wt = NULL;
    git_reference *ref = NULL;
    git_commit *head = NULL;
    git_oid oid;
    char path[4096], name[512], branch[512];
    int grc;
    snprintf(path, sizeof path, "%s/.orch/worktrees/%s/%s",
             orch_git_workdir(g), run, task);
    snprintf(name, sizeof name, "orch-%s-%s", run, task);
    snprintf(branch, sizeof branch, "orch/%s/%s", run, task);
    git_worktree_add_options_init(&wo, GIT_WORKTREE_ADD_OPTIONS_VERSION);
    /* libgit2's default: every blob read is re-hashed (orch turns it off) */
    git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, 1);
    if (orch_git_head(g, &oid, NULL, 0) < 0)
        return -1;
    if ((grc = git_commit_lookup(&head, orch_git_repo(g), &oid)) < 0 ||
        (grc = git_branch_create(&ref, orch_git_repo(g), branch, head, 0)) <
            0) {
        git_commit_free(head);
        return orch_git_fail(grc, "branch");
    }
    wo.ref = ref;
    grc = git_worktree_add(&wt, orch_git_repo(g), name, path, &wo);
    git_worktree_free(wt);
    git_reference_free(ref);
    git_commit_free(head);
    return grc < 0 ? orch_git_fail(grc, "git_worktree_add") : 0;
}

static int create(const char *repo, const char *run, const char *task,
                  const char *mode)
{
    orch_git *g = NULL;
    orch_wt wt;
    orch_strlist c = {0};
    orch_wt_opts o = {ORCH_WT_FAST, 0};
    git_oid base;
    double t0 = now();
    int rc;
    if (orch_git_open(&g, repo) < 0)
        return die("open");
    if (orch_git_head(g, &base, NULL, 0) < 0)
        return die("head");
    if (!strcmp(mode, "default")) {
        char dir[4200];
        snprintf(dir, sizeof dir, "mkdir -p '%s/.orch/worktrees/%s'",
                 orch_git_workdir(g), run);
        if (system(dir) != 0)
            return die("mkdir");
        rc = libgit2_default(g, run, task);
    } else {
        if (!strcmp(mode, "libgit2"))
            o.checkout = ORCH_WT_LIBGIT2;
        if (!strcmp(mode, "fast1"))
            o.nthreads = 1;
        rc = orch_wt_create(g, run, task, &base, NULL, 0, &o, &wt, &c);
    }
    if (rc != 0)
        return die("create");
    printf("%.3f\n", now() - t0);
    orch_strlist_free(&c);
    orch_git_close(g);
    return 0;
}

static int merge(const char *repo, const char *run)
{
    orch_git *g = NULL;
    orch_wt wt;
    orch_strlist c = {0};
    git_oid base, tip;
    char integ[256];
    double t0, t1, t2;
    if (orch_git_open(&g, repo) < 0)
        return die("open");
    if (orch_git_head(g, &base, NULL, 0) < 0)
        return die("head");
    snprintf(integ, sizeof integ, "orch/%s/integration", run);
    if (orch_git_update_ref(g, integ, &base, NULL, "bench") < 0 ||
        orch_wt_create(g, run, "t", &base, NULL, 0, NULL, &wt, &c) != 0)
        return die("setup");
    for (int i = 0; i < 100; i++) { /* one file in each of 100 directories */
        char p[4400];
        FILE *f;
        snprintf(p, sizeof p, "%s/d%02d/s%d/f%05d.txt", wt.path, i % 20,
                 (i / 20) % 10, i);
        if (!(f = fopen(p, "a")))
            return die("open file");
        fprintf(f, "changed by the task %d\n", i);
        fclose(f);
    }
    t0 = now();
    if (orch_wt_commit_all(g, wt.path, "bench task", &tip) != 1)
        return die("commit_all");
    t1 = now();
    if (orch_git_merge_into(g, integ, wt.branch, ORCH_MERGE_COMMIT, "merge",
                            &tip, &c) != 0)
        return die("merge");
    t2 = now();
    printf("%.3f %.3f\n", t1 - t0, t2 - t1);
    orch_strlist_free(&c);
    orch_git_close(g);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 6 && !strcmp(argv[1], "create"))
        return create(argv[2], argv[3], argv[4], argv[5]);
    if (argc == 4 && !strcmp(argv[1], "merge"))
        return merge(argv[2], argv[3]);
    fprintf(stderr, "usage: wt_bench create REPO RUN TASK MODE | "
                    "merge REPO RUN\n");
    return 2;
}
