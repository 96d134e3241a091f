/* test_worktree.c - task worktrees and merges on real repositories made here
 * (git CLI for setting up and checking). */
#include "err.h"
#include "gitmerge.h"
#include "gitrepo.h"
#include "worktree.h"

#include "t.h"

#include <errno.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[512];

static int sh(const char *fmt, ...) ORCH_PRINTF(1, 2);
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* The output of a command, trailing newline removed (static buffer). */
static const char *out(const char *fmt, ...) ORCH_PRINTF(1, 2);
static const char *out(const char *fmt, ...)
{
    static char buf[8192];
    char cmd[4096];
    va_list ap;
    size_t n;
    FILE *p;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    buf[0] = '\0';
    if (!(p = popen(cmd, "r")))
        return buf;
    n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = '\0';
    pclose(p);
    while (n && buf[n - 1] == '\n')
        buf[--n] = '\0';
    return buf;
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* A fresh repo with one commit, in a directory whose name has spaces. */
static void make_repo(char *dir, size_t n, const char *name)
{
    snprintf(dir, n, "%s/%s", root, name);
    sh("mkdir -p '%s' && cd '%s' && git init -q -b main . && "
       "git config user.name Tester && git config user.email t@example.com "
       "&& printf 'one\\ntwo\\nthree\\n' > shared.txt && mkdir -p src && "
       "echo 'int x;' > src/a.c && printf '#!/bin/sh\\n' > run.sh && "
       "chmod +x run.sh && ln -s shared.txt link && git add -A && "
       "git commit -qm init", dir, dir);
}

static void test_empty_repo(void)
{
    char dir[600];
    orch_git *g = NULL;
    snprintf(dir, sizeof dir, "%s/empty repo", root);
    sh("mkdir -p '%s' && git -C '%s' init -q", dir, dir);
    T_EQ_INT(orch_git_open(&g, dir), -EINVAL);
    T_CHECK(strstr(orch_err_msg(), "needs a first commit") != NULL);
    T_CHECK(g == NULL);
    snprintf(dir, sizeof dir, "%s/not a repo", root);
    sh("mkdir -p '%s'", dir);
    T_EQ_INT(orch_git_open(&g, dir), -ENOENT);
}

/* Creates task T (deps optional), writes `file` with `text` in it, commits. */
static int task(orch_git *g, const char *run, const char *t,
                const git_oid *base, const char *const *deps, size_t nd,
                const char *file, const char *text, orch_wt *wt)
{
    orch_strlist c = {0};
    git_oid head;
    char p[4600];
    int rc = orch_wt_create(g, run, t, base, deps, nd, NULL, wt, &c);
    orch_strlist_free(&c);
    if (rc != 0)
        return rc;
    snprintf(p, sizeof p, "%s/%s", wt->path, file);
    put(p, text);
    return orch_wt_commit_all(g, wt->path, "orch: task", &head);
}

static void test_four_and_deps(void)
{
    char dir[600], p[4600], branch[64];
    orch_git *g = NULL;
    orch_wt wt[4], b;
    orch_strlist c = {0};
    git_oid base, tip;
    const char *names[4] = {"t1", "t2", "t3", "t4"};
    make_repo(dir, sizeof dir, "four tasks");
    T_EQ_INT(orch_git_open(&g, dir), 0);
    T_EQ_INT(orch_git_head(g, &base, branch, sizeof branch), 0);
    T_EQ_STR(branch, "main");
    T_EQ_INT(orch_git_update_ref(g, "orch/r1/integration", &base, NULL, "t"),
             0);
    for (int i = 0; i < 4; i++) {
        char f[32], text[4200];
        snprintf(f, sizeof f, "%s.txt", names[i]);
        T_EQ_INT(orch_wt_create(g, "r1", names[i], &base, NULL, 0, NULL,
                                &wt[i], &c), 0);
        snprintf(text, sizeof text, "%.2000s\n", wt[i].path);
        snprintf(p, sizeof p, "%.2000s/%s", wt[i].path, f);
        put(p, text);
        T_CHECK(strcmp(wt[i].path, dir) != 0);
        for (int k = 0; k < i; k++)
            T_CHECK(strcmp(wt[i].path, wt[k].path) != 0);
        /* a fresh worktree is clean for git: the fast index is right */
        T_EQ_STR(out("cd '%s' && git status --porcelain --untracked-files=no",
                     wt[i].path), "");
        T_EQ_STR(out("cd '%s' && git rev-parse --abbrev-ref HEAD",
                     wt[i].path), wt[i].branch);
        T_CHECK(access(out("printf '%%s/run.sh' '%s'", wt[i].path), X_OK) ==
                0);
    }
    T_EQ_STR(out("cd '%s' && git worktree list | wc -l", dir), "5");
    for (int i = 0; i < 4; i++) {
        T_EQ_INT(orch_wt_commit_all(g, wt[i].path, "orch r1/t", &tip), 1);
        T_EQ_INT(orch_git_merge_into(g, "orch/r1/integration", wt[i].branch,
                                     ORCH_MERGE_COMMIT, "merge", &tip, &c), 0);
        T_EQ_INT(orch_wt_commit_all(g, wt[i].path, "again", &tip), 0);
    }
    T_EQ_STR(out("cd '%s' && git ls-tree --name-only orch/r1/integration | "
                 "grep -c '^t.\\.txt$'", dir), "4");
    T_EQ_STR(out("cd '%s' && git rev-list --parents -1 orch/r1/integration "
                 "| wc -w", dir), "3");
    T_EQ_STR(out("cd '%s' && git status --porcelain", dir), "");
    T_EQ_STR(out("cd '%s' && grep -c '^/.orch/$' .git/info/exclude", dir), "1");

    /* b depends on t1 and t2: it sees both files */
    const char *deps[] = {"orch/r1/t1", "orch/r1/t2"};
    T_EQ_INT(orch_wt_create(g, "r1", "b", &base, deps, 2, NULL, &b, &c), 0);
    snprintf(p, sizeof p, "%s/t1.txt", b.path);
    T_CHECK(exists(p));
    snprintf(p, sizeof p, "%s/t2.txt", b.path);
    T_CHECK(exists(p));
    snprintf(p, sizeof p, "%s/t3.txt", b.path);
    T_CHECK(!exists(p));
    T_EQ_STR(out("cd '%s' && git status --porcelain", b.path), "");

    /* removal, then prune of the whole run */
    T_EQ_INT(orch_wt_remove(g, "r1", "t1"), 0);
    T_CHECK(!exists(wt[0].path));
    T_EQ_STR(out("cd '%s' && git worktree list | wc -l", dir), "5");
    int removed = 0;
    T_EQ_INT(orch_wt_prune(g, "r1", &removed, NULL), 0);
    T_EQ_INT(removed, 6);
    T_EQ_STR(out("cd '%s' && git worktree list | wc -l", dir), "1");
    T_EQ_STR(out("cd '%s' && git branch --list 'orch/*' | wc -l", dir), "0");
    T_EQ_STR(out("cd '%s' && git worktree prune -n -v", dir), "");
    orch_strlist_free(&c);
    orch_git_close(g);
}

static void test_conflict_and_user_changes(void)
{
    char dir[600], p[700], *before;
    orch_git *g = NULL;
    orch_wt a, b;
    orch_strlist c = {0};
    git_oid base, tip, integ;
    make_repo(dir, sizeof dir, "conflict repo");
    /* the user's uncommitted work: a modified tracked file, an untracked one */
    sh("cd '%s' && printf 'one\\nTWO user\\nthree\\n\\001\\377' > shared.txt && "
       "printf 'scratch' > notes.txt && echo 'int y;' >> src/a.c && "
       "git add src/a.c", dir);
    snprintf(p, sizeof p, "cd '%s' && cat shared.txt notes.txt src/a.c | "
             "sha1sum && git diff --cached | sha1sum", dir);
    before = strdup(out("%s", p));
    T_EQ_INT(orch_git_open(&g, dir), 0);
    T_EQ_INT(orch_git_head(g, &base, NULL, 0), 0);
    T_EQ_INT(orch_git_update_ref(g, "orch/r2/integration", &base, NULL, "t"),
             0);
    T_EQ_INT(task(g, "r2", "a", &base, NULL, 0, "shared.txt",
                  "one\nA\nthree\n", &a), 1);
    T_EQ_INT(task(g, "r2", "b", &base, NULL, 0, "shared.txt",
                  "one\nB\nthree\n", &b), 1);
    T_EQ_INT(orch_git_merge_into(g, "orch/r2/integration", a.branch,
                                 ORCH_MERGE_COMMIT, "merge a", &tip, &c), 0);
    integ = tip;
    T_EQ_INT(orch_git_merge_into(g, "orch/r2/integration", b.branch,
                                 ORCH_MERGE_COMMIT, "merge b", &tip, &c),
             ORCH_GIT_CONFLICT);
    T_EQ_INT(c.n, 1);
    T_EQ_STR(c.n ? c.v[0] : "", "shared.txt");
    T_CHECK(strstr(orch_err_msg(), "shared.txt") != NULL);
    orch_strlist_free(&c);
    T_EQ_INT(orch_git_resolve(g, "orch/r2/integration", &tip), 0);
    T_CHECK(git_oid_equal(&tip, &integ));
    /* the same conflict through squash and rebase: nothing moves */
    T_EQ_INT(orch_git_merge_into(g, "orch/r2/integration", b.branch,
                                 ORCH_MERGE_SQUASH, "s", &tip, &c),
             ORCH_GIT_CONFLICT);
    orch_strlist_free(&c);
    T_EQ_INT(orch_git_merge_into(g, "orch/r2/integration", b.branch,
                                 ORCH_MERGE_REBASE, "s", &tip, &c),
             ORCH_GIT_CONFLICT);
    orch_strlist_free(&c);
    T_EQ_INT(orch_git_resolve(g, "orch/r2/integration", &tip), 0);
    T_CHECK(git_oid_equal(&tip, &integ));
    /* b's branch is intact and its commit reachable */
    T_EQ_STR(out("cd '%s' && git show orch/r2/b:shared.txt | sed -n 2p", dir),
             "B");
    T_CHECK(exists(b.path));
    /* resolving: merge integration into b in its worktree, commit_all, merge */
    sh("cd '%s' && git merge -q orch/r2/integration >/dev/null 2>&1; "
       "printf 'one\\nA and B\\nthree\\n' > shared.txt && git add shared.txt",
       b.path);
    T_EQ_INT(orch_wt_commit_all(g, b.path, "resolved", &tip), 1);
    T_EQ_STR(out("cd '%s' && git rev-list --parents -1 HEAD | wc -w", b.path),
             "3");
    T_EQ_INT(orch_git_merge_into(g, "orch/r2/integration", b.branch,
                                 ORCH_MERGE_COMMIT, "merge b", &tip, &c), 0);
    T_EQ_STR(out("cd '%s' && git show orch/r2/integration:shared.txt | "
                 "sed -n 2p", dir), "A and B");
    /* the user's branch and changes are untouched */
    T_CHECK(git_oid_equal(&base, &tip) == 0);
    T_EQ_INT(orch_git_resolve(g, "main", &tip), 0);
    T_CHECK(git_oid_equal(&tip, &base));
    T_EQ_STR(out("%s", p), before);
    /* applying is refused while the user's tree is dirty */
    T_EQ_INT(orch_git_apply_to_head(g, "orch/r2/integration", &(const orch_apply_opts){1, "apply", NULL, NULL},
                                    &tip, &c), -EBUSY);
    T_CHECK(strstr(orch_err_msg(), "uncommitted") != NULL);
    T_EQ_INT(c.n, 2);
    orch_strlist_free(&c);
    T_EQ_STR(out("%s", p), before);
    T_EQ_INT(orch_git_resolve(g, "main", &tip), 0);
    T_CHECK(git_oid_equal(&tip, &base));
    /* once clean (the untracked file stays): fast-forward */
    sh("cd '%s' && git checkout -q -- shared.txt && git reset -q && "
       "git checkout -q -- src/a.c", dir);
    T_EQ_INT(orch_git_apply_to_head(g, "orch/r2/integration", &(const orch_apply_opts){0, "apply", NULL, NULL},
                                    &tip, &c), 0);
    T_EQ_INT(orch_git_resolve(g, "orch/r2/integration", &integ), 0);
    T_CHECK(git_oid_equal(&tip, &integ));
    T_EQ_STR(out("cd '%s' && git rev-parse main", dir),
             out("cd '%s' && git rev-parse orch/r2/integration", dir));
    T_EQ_STR(out("cd '%s' && sed -n 2p shared.txt && cat notes.txt", dir),
             "A and B\nscratch");
    T_EQ_STR(out("cd '%s' && git status --porcelain", dir), "?? notes.txt");
    T_EQ_INT(orch_git_apply_to_head(g, "orch/r2/integration", &(const orch_apply_opts){0, "apply", NULL, NULL},
                                    &tip, &c), ORCH_GIT_UPTODATE);
    free(before);
    orch_git_close(g);
}

static void test_squash_rebase_apply_merge(void)
{
    char dir[600];
    orch_git *g = NULL;
    orch_wt a, b;
    orch_strlist c = {0};
    git_oid base, tip;
    make_repo(dir, sizeof dir, "strategies");
    T_EQ_INT(orch_git_open(&g, dir), 0);
    T_EQ_INT(orch_git_head(g, &base, NULL, 0), 0);
    T_EQ_INT(orch_git_update_ref(g, "orch/r3/integration", &base, NULL, "t"),
             0);
    T_EQ_INT(task(g, "r3", "a", &base, NULL, 0, "a.txt", "a\n", &a), 1);
    T_EQ_INT(task(g, "r3", "b", &base, NULL, 0, "b.txt", "b\n", &b), 1);
    sh("cd '%s' && echo more > b2.txt && git add b2.txt && "
       "git commit -qm 'second b commit'", b.path);
    T_EQ_INT(orch_git_merge_into(g, "orch/r3/integration", a.branch,
                                 ORCH_MERGE_SQUASH, "squash a", &tip, &c), 0);
    T_EQ_STR(out("cd '%s' && git rev-list --parents -1 orch/r3/integration | "
                 "wc -w", dir), "2");
    T_EQ_INT(orch_git_merge_into(g, "orch/r3/integration", b.branch,
                                 ORCH_MERGE_REBASE, "", &tip, &c), 0);
    T_EQ_STR(out("cd '%s' && git log --format=%%s orch/r3/integration | "
                 "head -3 | tr '\\n' '|'", dir),
             "second b commit|orch: task|squash a|");
    T_EQ_STR(out("cd '%s' && git ls-tree --name-only orch/r3/integration | "
                 "grep -c '^[ab]'", dir), "3");
    T_EQ_INT(orch_git_merge_into(g, "orch/r3/integration", b.branch,
                                 ORCH_MERGE_REBASE, "", &tip, &c),
             ORCH_GIT_UPTODATE); /* replaying again changes nothing */
    /* the user committed meanwhile: applying needs a merge commit */
    sh("cd '%s' && echo user > user.txt && git add user.txt && "
       "git commit -qm user", dir);
    T_EQ_INT(orch_git_apply_to_head(g, "orch/r3/integration", &(const orch_apply_opts){0, "apply", NULL, NULL},
                                    &tip, &c), -EAGAIN);
    T_EQ_INT(orch_git_apply_to_head(g, "orch/r3/integration",
                                    &(const orch_apply_opts){1, "orch: apply run r3", NULL, NULL},
                                    &tip, &c), 0);
    T_EQ_STR(out("cd '%s' && git rev-list --parents -1 main | wc -w", dir),
             "3");
    T_EQ_STR(out("cd '%s' && ls a.txt b.txt b2.txt user.txt | wc -l && "
                 "git status --porcelain", dir), "4");
    orch_strlist_free(&c);
    orch_git_close(g);
}

static void test_detached_and_dep_conflict(void)
{
    char dir[600], branch[64] = "x";
    orch_git *g = NULL;
    orch_wt a, b, d;
    orch_strlist c = {0};
    git_oid base, tip;
    make_repo(dir, sizeof dir, "detached head");
    sh("cd '%s' && git checkout -q --detach", dir);
    T_EQ_INT(orch_git_open(&g, dir), 0);
    T_EQ_INT(orch_git_head(g, &base, branch, sizeof branch), 0);
    T_EQ_STR(branch, "");
    T_EQ_INT(orch_git_update_ref(g, "orch/r4/integration", &base, NULL, "t"),
             0);
    T_EQ_INT(task(g, "r4", "a", &base, NULL, 0, "shared.txt", "A\n", &a), 1);
    T_EQ_INT(task(g, "r4", "b", &base, NULL, 0, "shared.txt", "B\n", &b), 1);
    const char *deps[] = {"orch/r4/a", "orch/r4/b"};
    T_EQ_INT(orch_wt_create(g, "r4", "d", &base, deps, 2, NULL, &d, &c),
             ORCH_GIT_CONFLICT);
    T_EQ_INT(c.n, 1);
    T_CHECK(strstr(orch_err_msg(), "shared.txt") != NULL);
    orch_strlist_free(&c);
    T_EQ_INT(orch_git_merge_into(g, "orch/r4/integration", a.branch,
                                 ORCH_MERGE_COMMIT, "m", &tip, &c), 0);
    T_EQ_INT(orch_git_apply_to_head(g, "orch/r4/integration", &(const orch_apply_opts){0, "apply", NULL, NULL},
                                    &tip, &c), 0);
    T_EQ_STR(out("cd '%s' && git rev-parse HEAD", dir),
             out("cd '%s' && git rev-parse orch/r4/integration", dir));
    T_EQ_STR(out("cd '%s' && cat shared.txt && git symbolic-ref -q HEAD", dir),
             "A");
    T_EQ_INT(orch_wt_names(g, "r4", "bad id", &d), -EINVAL);
    T_EQ_INT(orch_wt_names(g, "r4", "integration", &d), -EINVAL);
    orch_strlist_free(&c);
    orch_git_close(g);
}

static void test_recovery(void)
{
    char dir[600], p[4700];
    orch_git *g = NULL;
    orch_wt w, w2;
    orch_strlist c = {0};
    git_oid base, tip;
    orch_wt_opts lg = {ORCH_WT_LIBGIT2, 0};
    make_repo(dir, sizeof dir, "recovery");
    T_EQ_INT(orch_git_open(&g, dir), 0);
    T_EQ_INT(orch_git_head(g, &base, NULL, 0), 0);
    /* a directory with no admin entry (crash before git knew of it) */
    T_EQ_INT(orch_wt_names(g, "r5", "a", &w), 0);
    sh("mkdir -p '%s/src' && echo junk > '%s/junk'", w.path, w.path);
    T_EQ_INT(orch_wt_create(g, "r5", "a", &base, NULL, 0, NULL, &w, &c), 0);
    T_EQ_INT(w.reused, 0);
    snprintf(p, sizeof p, "%s/junk", w.path);
    T_CHECK(!exists(p));
    T_CHECK(orch_wt_intact(g, &w));
    /* intact: reused, a stale index.lock cleared, work kept */
    snprintf(p, sizeof p, "%s/worktrees/%s/index.lock", orch_git_commondir(g),
             w.name);
    put(p, "");
    snprintf(p, sizeof p, "%s/new.txt", w.path);
    put(p, "work\n");
    T_EQ_INT(orch_wt_create(g, "r5", "a", &base, NULL, 0, NULL, &w, &c), 0);
    T_EQ_INT(w.reused, 1);
    T_CHECK(exists(p));
    T_EQ_INT(orch_wt_commit_all(g, w.path, "work", &tip), 1);
    /* killed during initialisation: the locked mark is still there */
    snprintf(p, sizeof p, "%s/worktrees/%s/locked", orch_git_commondir(g),
             w.name);
    put(p, "orch: initializing\n");
    T_CHECK(!orch_wt_intact(g, &w));
    T_EQ_INT(orch_wt_create(g, "r5", "a", &base, NULL, 0, NULL, &w, &c), 0);
    T_EQ_INT(w.reused, 0);
    T_CHECK(!exists(p));
    snprintf(p, sizeof p, "%s/new.txt", w.path); /* committed work is back */
    T_CHECK(exists(p));
    /* an admin entry whose directory is gone */
    sh("rm -rf '%s'", w.path);
    T_EQ_INT(orch_wt_create(g, "r5", "a", &base, NULL, 0, NULL, &w, &c), 0);
    T_CHECK(orch_wt_intact(g, &w));
    T_EQ_STR(out("cd '%s' && git status --porcelain && cat new.txt", w.path),
             "work");
    /* libgit2's checkout path gives the same worktree */
    T_EQ_INT(orch_wt_create(g, "r5", "lg", &base, NULL, 0, &lg, &w2, &c), 0);
    T_EQ_STR(out("cd '%s' && git status --porcelain && readlink link", w2.path),
             "shared.txt");
    T_EQ_INT(orch_wt_commit_all(g, w2.path, "nothing", &tip), 0);
    /* deletions are committed too */
    sh("cd '%s' && rm src/a.c && echo n > 'with space.txt'", w2.path);
    T_EQ_INT(orch_wt_commit_all(g, w2.path, "orch r5/lg", &tip), 1);
    T_EQ_STR(out("cd '%s' && git show --name-status --format=%%s HEAD | "
                 "tr '\\t\\n' ' |'", w2.path),
             "orch r5/lg||D src/a.c|A with space.txt|");
    /* a worktree directory removed by hand: prune still cleans the admin */
    sh("rm -rf '%s'", w2.path);
    T_EQ_INT(orch_wt_prune(g, "r5", NULL, NULL), 0);
    T_EQ_STR(out("cd '%s' && ls .git/worktrees 2>/dev/null | wc -l", dir),
             "0");
    orch_strlist_free(&c);
    orch_git_close(g);
}

/* With a .gitattributes the worktree comes from libgit2's checkout, so
 * eol conversion applies as with git. */
static void test_attributes(void)
{
    char dir[600];
    orch_git *g = NULL;
    orch_wt w;
    orch_strlist c = {0};
    git_oid base;
    make_repo(dir, sizeof dir, "attributes");
    sh("cd '%s' && echo '*.txt text eol=crlf' > .gitattributes && "
       "printf 'a\nb\n' > e.txt && git add -A 2>/dev/null && "
       "git commit -qm attrs", dir);
    T_EQ_INT(orch_git_open(&g, dir), 0);
    T_EQ_INT(orch_git_head(g, &base, NULL, 0), 0);
    T_EQ_INT(orch_wt_create(g, "r6", "a", &base, NULL, 0, NULL, &w, &c), 0);
    T_EQ_STR(out("cd '%s' && od -c e.txt | head -1", w.path),
             "0000000   a  \\r  \\n   b  \\r  \\n");
    T_EQ_STR(out("cd '%s' && git status --porcelain", w.path), "");
    orch_strlist_free(&c);
    orch_git_close(g);
}

int main(void)
{
    char tmpl[] = "/tmp/orch test wt XXXXXX";
    if (!mkdtemp(tmpl)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(root, sizeof root, "%s", tmpl);
    setenv("HOME", root, 1);
    setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
    unsetenv("XDG_CONFIG_HOME");
    test_empty_repo();
    test_four_and_deps();
    test_conflict_and_user_changes();
    test_squash_rebase_apply_merge();
    test_detached_and_dep_conflict();
    test_recovery();
    test_attributes();
    if (!t_failures)
        sh("rm -rf '%s'", root);
    T_DONE();
}
