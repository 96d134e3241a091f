/* lgit.c - orch.core.git: task worktrees and merges for Lua (see
 * docs/api/git.md).
 *
 *   local repo, msg, code = git.open(dir)       -- discovers the repository
 *   repo:root(), repo:gitdir(), repo:head() -> oid, branch|nil
 *   repo:resolve(rev) -> oid                    repo:tree(commit) -> oid
 *   repo:update_ref(name, oid [, expect [, log]]) -> true
 *   repo:delete_ref(name) -> true               repo:is_ancestor(a, b) -> bool
 *   repo:symref(name [, target]) -> target      (a symbolic ref: read or set)
 *   repo:commit{tree=, parents={...}, message=} -> oid
 *   repo:merge_trees(ours, theirs) -> tree      repo:diff_names(a, b) -> {paths}
 *   repo:exclude_orch() -> true                 repo:dirty() -> {paths}
 *   repo:worktree_names(run, task) -> {path=, branch=, name=}
 *   repo:worktree_create(run, task, base, deps, opts)
 *       -> {path=, branch=, name=, start=, reused=}
 *   repo:worktree_intact(run, task) -> bool
 *   repo:commit_all(path, message) -> committed, head
 *   repo:commit_task(run, task, message) -> committed, head
 *   repo:merge(into, from, strategy, message) -> tip, "merged"|"uptodate"
 *   repo:apply_to_head(from, {merge=, message=, branch=, journal=})
 *       -> tip, "applied"|"uptodate"
 *   repo:worktree_remove(run, task) -> true     repo:prune(run) -> count
 *   repo:close()
 *
 *   repo:worktree_create_async(run, task, base, deps, opts, cb)
 *   repo:worktree_remove_async(run, task, cb)
 *   repo:commit_task_async(run, task, message, cb)
 *   repo:commit_all_async(path, message, cb)
 *   repo:merge_async(into, from, strategy, message, cb)
 *   repo:apply_to_head_async(from, opts, cb)
 *       -- the same work on libuv's thread pool (core/gitjob.c); cb gets
 *       -- what the synchronous call returns, on the loop (via lorch_call)
 *
 * Oids are 40-hex strings. A failure is `nil, msg, code`; a merge that stops
 * on conflicts is `nil, msg, "ECONFLICT", {paths}` and changes nothing.
 * The calls without _async block the loop: see the doc for timings. */
#include "err.h"
#include "gitjob.h"
#include "gitmerge.h"
#include "gitrepo.h"
#include "lorch.h"
#include "worktree.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#define LGIT_REPO "orch.git.repo"

typedef struct {
    orch_git *g;
} lgit_repo;

static orch_git *check_repo(lua_State *L)
{
    lgit_repo *r = luaL_checkudata(L, 1, LGIT_REPO);
    lorch_check_open(L, r->g != NULL, "git repository");
    return r->g;
}

static void push_oid(lua_State *L, const git_oid *oid)
{
    char hex[GIT_OID_HEXSZ + 1];
    git_oid_tostr(hex, sizeof hex, oid);
    lua_pushstring(L, hex);
}

/* Reads the revision at idx (hex or a name) into oid; pushes the failure
 * triple and returns 3 if it does not resolve, else 0. */
static int arg_oid(lua_State *L, orch_git *g, int idx, git_oid *oid)
{
    int rc = orch_git_resolve(g, luaL_checkstring(L, idx), oid);
    return rc < 0 ? lorch_fail(L, rc, orch_err_msg()) : 0;
}

static void push_list(lua_State *L, const orch_strlist *l)
{
    lua_createtable(L, (int)l->n, 0);
    for (size_t i = 0; i < l->n; i++) {
        lua_pushstring(L, l->v[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
}

/* nil, msg, "ECONFLICT", {paths} */
static int push_conflict(lua_State *L, const orch_strlist *l)
{
    lua_pushnil(L);
    lua_pushstring(L, orch_err_msg());
    lua_pushliteral(L, "ECONFLICT");
    push_list(L, l);
    return 4;
}

static int lgit_open(lua_State *L)
{
    const char *dir = luaL_optstring(L, 1, ".");
    lgit_repo *r = lua_newuserdata(L, sizeof *r);
    r->g = NULL;
    luaL_getmetatable(L, LGIT_REPO);
    lua_setmetatable(L, -2);
    int rc = orch_git_open(&r->g, dir);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    return 1;
}

static int lgit_close(lua_State *L)
{
    lgit_repo *r = luaL_checkudata(L, 1, LGIT_REPO);
    orch_git_close(r->g);
    r->g = NULL;
    return 0;
}

static int lgit_root(lua_State *L)
{
    lua_pushstring(L, orch_git_workdir(check_repo(L)));
    return 1;
}

static int lgit_gitdir(lua_State *L)
{
    lua_pushstring(L, orch_git_commondir(check_repo(L)));
    return 1;
}

static int lgit_head(lua_State *L)
{
    git_oid oid;
    char branch[512];
    int rc = orch_git_head(check_repo(L), &oid, branch, sizeof branch);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    push_oid(L, &oid);
    if (branch[0])
        lua_pushstring(L, branch);
    else
        lua_pushnil(L);
    return 2;
}

static int lgit_resolve(lua_State *L)
{
    git_oid oid;
    int n = arg_oid(L, check_repo(L), 2, &oid);
    if (n)
        return n;
    push_oid(L, &oid);
    return 1;
}

static int lgit_tree(lua_State *L)
{
    orch_git *g = check_repo(L);
    git_oid oid, tree;
    int rc, n = arg_oid(L, g, 2, &oid);
    if (n)
        return n;
    if ((rc = orch_git_commit_tree(g, &oid, &tree)) < 0)
        return lorch_fail(L, rc, orch_err_msg());
    push_oid(L, &tree);
    return 1;
}

static int lgit_update_ref(lua_State *L)
{
    orch_git *g = check_repo(L);
    const char *name = luaL_checkstring(L, 2);
    const char *log = luaL_optstring(L, 5, "orch");
    git_oid oid, expect;
    int rc, n = arg_oid(L, g, 3, &oid);
    if (n)
        return n;
    if (!lua_isnoneornil(L, 4) && (n = arg_oid(L, g, 4, &expect)))
        return n;
    rc = orch_git_update_ref(g, name, &oid,
                             lua_isnoneornil(L, 4) ? NULL : &expect, log);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushboolean(L, 1);
    return 1;
}

static int lgit_delete_ref(lua_State *L)
{
    int rc = orch_git_delete_ref(check_repo(L), luaL_checkstring(L, 2));
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushboolean(L, 1);
    return 1;
}

static int lgit_symref(lua_State *L)
{
    orch_git *g = check_repo(L);
    const char *name = luaL_checkstring(L, 2);
    char buf[1024];
    int rc;
    if (!lua_isnoneornil(L, 3)) {
        const char *target = luaL_checkstring(L, 3);
        if ((rc = orch_git_symref_set(g, name, target, "orch")) < 0)
            return lorch_fail(L, rc, orch_err_msg());
        lua_pushstring(L, target);
        return 1;
    }
    if ((rc = orch_git_symref_get(g, name, buf, sizeof buf)) < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushstring(L, buf);
    return 1;
}

static int lgit_is_ancestor(lua_State *L)
{
    orch_git *g = check_repo(L);
    git_oid a, b;
    int n;
    if ((n = arg_oid(L, g, 2, &a)) || (n = arg_oid(L, g, 3, &b)))
        return n;
    lua_pushboolean(L, orch_git_is_ancestor(g, &a, &b));
    return 1;
}

static int lgit_commit(lua_State *L)
{
    orch_git *g = check_repo(L);
    git_oid tree, parents[16], out;
    size_t np;
    int rc, n;
    luaL_checktype(L, 2, LUA_TTABLE);
    const char *msg = lorch_opt_str_field(L, 2, "message", NULL);
    luaL_argcheck(L, msg != NULL, 2, "message is required");
    lua_getfield(L, 2, "tree");
    if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "field 'tree' must be a string");
    /* a tree id as it is; a commit (id or name) gives its tree */
    if (lua_objlen(L, -1) != GIT_OID_HEXSZ ||
        git_oid_fromstr(&tree, lua_tostring(L, -1)) < 0) {
        if ((n = arg_oid(L, g, lua_gettop(L), &tree)))
            return n;
    }
    {
        git_oid t;
        if (orch_git_commit_tree(g, &tree, &t) == 0)
            tree = t;
    }
    lua_pop(L, 1);
    lua_getfield(L, 2, "parents");
    np = lua_istable(L, -1) ? lua_objlen(L, -1) : 0;
    luaL_argcheck(L, np <= 16, 2, "at most 16 parents");
    for (size_t i = 0; i < np; i++) {
        lua_rawgeti(L, -1, (int)i + 1);
        if ((n = arg_oid(L, g, lua_gettop(L), &parents[i])))
            return n;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if ((rc = orch_git_commit(g, &tree, parents, np, NULL, msg, &out)) < 0)
        return lorch_fail(L, rc, orch_err_msg());
    push_oid(L, &out);
    return 1;
}

static int lgit_merge_trees(lua_State *L)
{
    orch_git *g = check_repo(L);
    orch_strlist c = {0};
    git_oid a, b, tree;
    int rc, n;
    if ((n = arg_oid(L, g, 2, &a)) || (n = arg_oid(L, g, 3, &b)))
        return n;
    rc = orch_git_merge_trees(g, &a, &b, &tree, &c);
    if (rc == ORCH_GIT_CONFLICT)
        n = push_conflict(L, &c);
    else if (rc < 0)
        n = lorch_fail(L, rc, orch_err_msg());
    else {
        push_oid(L, &tree);
        n = 1;
    }
    orch_strlist_free(&c);
    return n;
}

static int lgit_diff_names(lua_State *L)
{
    orch_git *g = check_repo(L);
    orch_strlist l = {0};
    git_oid a, b;
    int rc, n;
    /* trees and commits: take hex ids as they are, resolve names */
    for (int i = 2; i <= 3; i++) {
        git_oid *o = i == 2 ? &a : &b;
        const char *s = luaL_checkstring(L, i);
        if (strlen(s) == GIT_OID_HEXSZ && git_oid_fromstr(o, s) == 0)
            continue;
        if ((n = arg_oid(L, g, i, o)))
            return n;
    }
    if ((rc = orch_git_diff_names(g, &a, &b, &l)) < 0)
        n = lorch_fail(L, rc, orch_err_msg());
    else {
        push_list(L, &l);
        n = 1;
    }
    orch_strlist_free(&l);
    return n;
}

static int lgit_exclude_orch(lua_State *L)
{
    int rc = orch_git_exclude_orch(check_repo(L));
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushboolean(L, 1);
    return 1;
}

static int lgit_dirty(lua_State *L)
{
    orch_strlist l = {0};
    int rc = orch_git_dirty(check_repo(L), &l), n;
    if (rc < 0)
        n = lorch_fail(L, rc, orch_err_msg());
    else {
        push_list(L, &l);
        n = 1;
    }
    orch_strlist_free(&l);
    return n;
}

static void push_wt(lua_State *L, const orch_wt *wt, int full)
{
    lua_createtable(L, 0, 5);
    lua_pushstring(L, wt->path);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, wt->branch);
    lua_setfield(L, -2, "branch");
    lua_pushstring(L, wt->name);
    lua_setfield(L, -2, "name");
    if (full) {
        push_oid(L, &wt->start);
        lua_setfield(L, -2, "start");
        lua_pushboolean(L, wt->reused);
        lua_setfield(L, -2, "reused");
    }
}

static int lgit_worktree_names(lua_State *L)
{
    orch_wt wt;
    int rc = orch_wt_names(check_repo(L), luaL_checkstring(L, 2),
                           luaL_checkstring(L, 3), &wt);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    push_wt(L, &wt, 0);
    return 1;
}

static int lgit_worktree_intact(lua_State *L)
{
    orch_git *g = check_repo(L);
    orch_wt wt;
    int rc = orch_wt_names(g, luaL_checkstring(L, 2), luaL_checkstring(L, 3),
                           &wt);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushboolean(L, orch_wt_intact(g, &wt));
    return 1;
}

/* Reads worktree_create's deps (index 5) and opts (index 6). */
static size_t wt_args(lua_State *L, const char **deps, orch_wt_opts *o)
{
    size_t nd = 0;
    o->checkout = ORCH_WT_AUTO;
    o->nthreads = 0;
    if (lua_istable(L, 5)) {
        nd = lua_objlen(L, 5);
        luaL_argcheck(L, nd <= 64, 5, "at most 64 dependencies");
        for (size_t i = 0; i < nd; i++) {
            lua_rawgeti(L, 5, (int)i + 1);
            /* strings only: the table keeps them alive (a converted number
             * would live only on the stack) */
            luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING, 5, "dependency branch names");
            deps[i] = lua_tostring(L, -1);
            lua_pop(L, 1);
        }
    }
    if (lua_istable(L, 6)) {
        const char *mode = lorch_opt_str_field(L, 6, "checkout", "auto");
        o->checkout = !strcmp(mode, "fast")      ? ORCH_WT_FAST
                      : !strcmp(mode, "libgit2") ? ORCH_WT_LIBGIT2
                                                 : ORCH_WT_AUTO;
        o->nthreads = (int)lorch_opt_int_field(L, 6, "threads", 0);
    }
    return nd;
}

static int wt_create_result(lua_State *L, int rc, const orch_wt *wt,
                            const orch_strlist *c)
{
    if (rc == ORCH_GIT_CONFLICT)
        return push_conflict(L, c);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    push_wt(L, wt, 1);
    return 1;
}

static int lgit_worktree_create(lua_State *L)
{
    orch_git *g = check_repo(L);
    const char *run = luaL_checkstring(L, 2), *task = luaL_checkstring(L, 3);
    const char *deps[64];
    orch_wt_opts o;
    orch_strlist c = {0};
    orch_wt wt;
    git_oid base;
    size_t nd;
    int rc, n;
    if ((n = arg_oid(L, g, 4, &base)))
        return n;
    nd = wt_args(L, deps, &o);
    rc = orch_wt_create(g, run, task, &base, deps, nd, &o, &wt, &c);
    n = wt_create_result(L, rc, &wt, &c);
    orch_strlist_free(&c);
    return n;
}

static int lgit_commit_all(lua_State *L)
{
    git_oid head;
    int rc = orch_wt_commit_all(check_repo(L), luaL_checkstring(L, 2),
                                luaL_checkstring(L, 3), &head);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushboolean(L, rc == 1);
    push_oid(L, &head);
    return 2;
}

static int lgit_commit_task(lua_State *L)
{
    git_oid head;
    int rc = orch_wt_commit_task(check_repo(L), luaL_checkstring(L, 2),
                                 luaL_checkstring(L, 3),
                                 luaL_checkstring(L, 4), &head);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushboolean(L, rc == 1);
    push_oid(L, &head);
    return 2;
}

static int merge_result(lua_State *L, int rc, const git_oid *tip,
                        const orch_strlist *c, const char *done)
{
    if (rc == ORCH_GIT_CONFLICT)
        return push_conflict(L, c);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    push_oid(L, tip);
    lua_pushstring(L, rc == ORCH_GIT_UPTODATE ? "uptodate" : done);
    return 2;
}

static int lgit_merge(lua_State *L)
{
    static const char *const names[] = {"merge", "squash", "rebase", NULL};
    orch_git *g = check_repo(L);
    const char *into = luaL_checkstring(L, 2), *from = luaL_checkstring(L, 3);
    int how = luaL_checkoption(L, 4, "merge", names);
    const char *msg = luaL_optstring(L, 5, "orch: merge");
    orch_strlist c = {0};
    git_oid tip;
    int rc = orch_git_merge_into(g, into, from, how, msg, &tip, &c);
    int n = merge_result(L, rc, &tip, &c, "merged");
    orch_strlist_free(&c);
    return n;
}

static int lgit_apply_to_head(lua_State *L)
{
    orch_git *g = check_repo(L);
    const char *from = luaL_checkstring(L, 2);
    orch_apply_opts o = {1, "orch: apply run", NULL, NULL};
    orch_strlist c = {0};
    git_oid tip;
    int n, rc;
    if (lua_istable(L, 3)) {
        o.allow_merge = lorch_opt_bool_field(L, 3, "merge", 1);
        o.msg = lorch_opt_str_field(L, 3, "message", o.msg);
        o.branch = lorch_opt_str_field(L, 3, "branch", NULL);
        o.journal = lorch_opt_str_field(L, 3, "journal", NULL);
    }
    rc = orch_git_apply_to_head(g, from, &o, &tip, &c);
    if (rc == -EBUSY && c.n) { /* dirty: nil, msg, "EBUSY", {paths} */
        n = lorch_fail(L, rc, orch_err_msg());
        push_list(L, &c);
        n++;
    } else
        n = merge_result(L, rc, &tip, &c, "applied");
    orch_strlist_free(&c);
    return n;
}

static int lgit_worktree_remove(lua_State *L)
{
    int rc = orch_wt_remove(check_repo(L), luaL_checkstring(L, 2),
                            luaL_checkstring(L, 3));
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushboolean(L, 1);
    return 1;
}

static int lgit_prune(lua_State *L)
{
    int removed = 0, kept = 0;
    int rc = orch_wt_prune(check_repo(L), luaL_checkstring(L, 2), &removed, &kept);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushinteger(L, removed);
    lua_pushinteger(L, kept);
    return 2;
}

/* ------------------------------------------------------------ async */

/* Pushes what the synchronous call of the job's kind returns. */
static int job_results(lua_State *L, orch_gitjob *j)
{
    orch_err_set(0, "%s", j->msg); /* the helpers read the message from here */
    switch (j->kind) {
    case ORCH_GITJOB_WT_CREATE:
        return wt_create_result(L, j->rc, &j->wt, &j->list);
    case ORCH_GITJOB_WT_REMOVE:
        if (j->rc < 0)
            return lorch_fail(L, j->rc, j->msg);
        lua_pushboolean(L, 1);
        return 1;
    case ORCH_GITJOB_COMMIT_TASK:
    case ORCH_GITJOB_COMMIT_ALL:
        if (j->rc < 0)
            return lorch_fail(L, j->rc, j->msg);
        lua_pushboolean(L, j->rc == 1);
        push_oid(L, &j->oid);
        return 2;
    case ORCH_GITJOB_MERGE:
        return merge_result(L, j->rc, &j->oid, &j->list, "merged");
    case ORCH_GITJOB_APPLY:
        if (j->rc == -EBUSY && j->list.n) {
            int n = lorch_fail(L, j->rc, j->msg);
            push_list(L, &j->list);
            return n + 1;
        }
        return merge_result(L, j->rc, &j->oid, &j->list, "applied");
    }
    return lorch_fail(L, -EINVAL, "unknown git job");
}

/* On the loop: the callback gets the results through lorch_call. */
static void job_done(orch_gitjob *j)
{
    lua_State *L = lorch_state();
    int ref = (int)(intptr_t)j->ud, top = lua_gettop(L), n;
    lorch_push(L, ref);
    lorch_unref(L, &ref);
    n = job_results(L, j);
    orch_gitjob_free(j);
    lorch_call(L, n, 0);
    lua_settop(L, top);
}

/* A job on this repository whose callback is the function at `cbidx`. */
static orch_gitjob *job_new(lua_State *L, orch_git *g, int kind, int cbidx)
{
    orch_gitjob *j;
    luaL_checktype(L, cbidx, LUA_TFUNCTION);
    if (!(j = orch_gitjob_new(kind, orch_git_workdir(g))))
        luaL_error(L, "out of memory");
    return j;
}

/* Queues j (the callback at cbidx); on failure the callback is not called
 * and the failure triple is returned. */
static int job_queue(lua_State *L, orch_gitjob *j, int cbidx)
{
    int rc;
    lua_pushvalue(L, cbidx);
    j->ud = (void *)(intptr_t)lorch_ref(L);
    if ((rc = orch_gitjob_queue(lorch_loop(), j, job_done)) < 0) {
        int ref = (int)(intptr_t)j->ud;
        lorch_unref(L, &ref);
        orch_gitjob_free(j);
        return lorch_fail(L, rc, orch_err_msg());
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* Copies the strings at the given stack slots into the job. */
static void job_strs(lua_State *L, orch_gitjob *j, int ia, int ib, int ic)
{
    if ((ia && orch_gitjob_str(&j->a, lua_tostring(L, ia)) < 0) ||
        (ib && orch_gitjob_str(&j->b, lua_tostring(L, ib)) < 0) ||
        (ic && orch_gitjob_str(&j->c, lua_tostring(L, ic)) < 0)) {
        orch_gitjob_free(j);
        luaL_error(L, "out of memory");
    }
}

static int lgit_worktree_create_async(lua_State *L)
{
    orch_git *g = check_repo(L);
    const char *deps[64];
    orch_wt_opts o;
    orch_gitjob *j;
    git_oid base;
    size_t nd;
    int n, rc;
    luaL_checkstring(L, 2);
    luaL_checkstring(L, 3);
    luaL_checktype(L, 7, LUA_TFUNCTION);
    if ((n = arg_oid(L, g, 4, &base)))
        return n;
    /* on this thread first: concurrent jobs must not all append the line */
    if ((rc = orch_git_exclude_orch(g)) < 0)
        return lorch_fail(L, rc, orch_err_msg());
    nd = wt_args(L, deps, &o); /* may raise: before the job exists */
    j = job_new(L, g, ORCH_GITJOB_WT_CREATE, 7);
    j->wt_opts = o;
    j->base = base;
    job_strs(L, j, 2, 3, 0);
    if (nd && !(j->deps = calloc(nd, sizeof *j->deps))) {
        orch_gitjob_free(j);
        return luaL_error(L, "out of memory");
    }
    for (size_t i = 0; i < nd; i++, j->ndeps++)
        if (orch_gitjob_str(&j->deps[i], deps[i]) < 0) {
            orch_gitjob_free(j);
            return luaL_error(L, "out of memory");
        }
    return job_queue(L, j, 7);
}

static int lgit_worktree_remove_async(lua_State *L)
{
    orch_git *g = check_repo(L);
    orch_gitjob *j;
    luaL_checkstring(L, 2);
    luaL_checkstring(L, 3);
    j = job_new(L, g, ORCH_GITJOB_WT_REMOVE, 4);
    job_strs(L, j, 2, 3, 0);
    return job_queue(L, j, 4);
}

static int lgit_commit_task_async(lua_State *L)
{
    orch_git *g = check_repo(L);
    orch_gitjob *j;
    luaL_checkstring(L, 2);
    luaL_checkstring(L, 3);
    luaL_checkstring(L, 4);
    j = job_new(L, g, ORCH_GITJOB_COMMIT_TASK, 5);
    job_strs(L, j, 2, 3, 4);
    return job_queue(L, j, 5);
}

static int lgit_commit_all_async(lua_State *L)
{
    orch_git *g = check_repo(L);
    orch_gitjob *j;
    luaL_checkstring(L, 2);
    luaL_checkstring(L, 3);
    j = job_new(L, g, ORCH_GITJOB_COMMIT_ALL, 4);
    job_strs(L, j, 2, 0, 3);
    return job_queue(L, j, 4);
}

static const char *const lgit_strategies[] = {"merge", "squash", "rebase", NULL};

static int lgit_merge_async(lua_State *L)
{
    orch_git *g = check_repo(L);
    orch_gitjob *j;
    int how;
    luaL_checkstring(L, 2);
    luaL_checkstring(L, 3);
    how = luaL_checkoption(L, 4, "merge", lgit_strategies);
    if (lua_isnoneornil(L, 5)) {
        lua_pushliteral(L, "orch: merge");
        lua_replace(L, 5);
    }
    luaL_checkstring(L, 5);
    j = job_new(L, g, ORCH_GITJOB_MERGE, 6);
    j->how = how;
    job_strs(L, j, 2, 3, 5);
    return job_queue(L, j, 6);
}

static int lgit_apply_to_head_async(lua_State *L)
{
    orch_git *g = check_repo(L);
    orch_gitjob *j;
    const char *msg = "orch: apply run", *branch = NULL, *journal = NULL;
    int allow = 1;
    luaL_checkstring(L, 2);
    if (lua_istable(L, 3)) {
        allow = lorch_opt_bool_field(L, 3, "merge", 1);
        msg = lorch_opt_str_field(L, 3, "message", msg);
        branch = lorch_opt_str_field(L, 3, "branch", NULL);
        journal = lorch_opt_str_field(L, 3, "journal", NULL);
    }
    j = job_new(L, g, ORCH_GITJOB_APPLY, 4);
    j->apply.allow_merge = allow;
    job_strs(L, j, 2, 0, 0);
    if (orch_gitjob_str(&j->c, msg) < 0 || orch_gitjob_str(&j->d, branch) < 0 ||
        orch_gitjob_str(&j->e, journal) < 0) {
        orch_gitjob_free(j);
        return luaL_error(L, "out of memory");
    }
    return job_queue(L, j, 4);
}

static const luaL_Reg lgit_methods[] = {
    {"root", lgit_root},
    {"gitdir", lgit_gitdir},
    {"head", lgit_head},
    {"resolve", lgit_resolve},
    {"tree", lgit_tree},
    {"update_ref", lgit_update_ref},
    {"delete_ref", lgit_delete_ref},
    {"symref", lgit_symref},
    {"is_ancestor", lgit_is_ancestor},
    {"commit", lgit_commit},
    {"merge_trees", lgit_merge_trees},
    {"diff_names", lgit_diff_names},
    {"exclude_orch", lgit_exclude_orch},
    {"dirty", lgit_dirty},
    {"worktree_names", lgit_worktree_names},
    {"worktree_intact", lgit_worktree_intact},
    {"worktree_create", lgit_worktree_create},
    {"commit_all", lgit_commit_all},
    {"commit_task", lgit_commit_task},
    {"merge", lgit_merge},
    {"apply_to_head", lgit_apply_to_head},
    {"worktree_remove", lgit_worktree_remove},
    {"prune", lgit_prune},
    {"worktree_create_async", lgit_worktree_create_async},
    {"worktree_remove_async", lgit_worktree_remove_async},
    {"commit_task_async", lgit_commit_task_async},
    {"commit_all_async", lgit_commit_all_async},
    {"merge_async", lgit_merge_async},
    {"apply_to_head_async", lgit_apply_to_head_async},
    {"close", lgit_close},
    {"__gc", lgit_close},
    {NULL, NULL},
};

int lorch_open_git(lua_State *L)
{
    lorch_class(L, LGIT_REPO, lgit_methods);
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, lgit_open);
    lua_setfield(L, -2, "open");
    return 1;
}
