/* wtcheckout.c - fast checkout of a tree into an empty worktree (see
 * wtcheckout.h). */
#include "wtcheckout.h"

#include "err.h"
#include "gitrepo.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct wt_file {
    char *path; /* relative to the worktree */
    git_oid id;
    git_filemode_t mode;
    struct stat st;
} wt_file;

typedef struct wt_job {
    wt_file *files;
    size_t n, cap;
    const char *dir, *objects_dir;
    atomic_size_t next;
    atomic_int failed;
    pthread_mutex_t mu;
    int rc;             /* first error, under mu */
    char msg[512];      /* its message */
    int has_attributes; /* a .gitattributes was seen in the tree */
} wt_job;

static void job_fail(wt_job *j, int rc, const char *msg)
{
    pthread_mutex_lock(&j->mu);
    if (!j->rc) {
        j->rc = rc;
        snprintf(j->msg, sizeof j->msg, "%s", msg);
    }
    pthread_mutex_unlock(&j->mu);
    atomic_store(&j->failed, 1);
}

static int push_file(wt_job *j, const char *path, const git_tree_entry *e)
{
    if (j->n == j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 1024;
        wt_file *f = realloc(j->files, cap * sizeof *f);
        if (!f)
            return orch_err_set(-ENOMEM, "out of memory");
        j->files = f;
        j->cap = cap;
    }
    wt_file *f = &j->files[j->n];
    memset(f, 0, sizeof *f);
    if (!(f->path = strdup(path)))
        return orch_err_set(-ENOMEM, "out of memory");
    git_oid_cpy(&f->id, git_tree_entry_id(e));
    f->mode = git_tree_entry_filemode(e);
    j->n++;
    return 0;
}

/* Whether a tree entry name is safe to write: not empty, ".", "..", a name
 * with a '/', or ".git" in any case (nor ".git" with trailing dots or spaces,
 * which some filesystems drop). git's own checkout refuses the same; a tree
 * holding them can be made by hand or fetched without fsck, and must not
 * write outside the worktree or over its .git file. */
static int safe_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
        return 0;
    while (n > 0 && (name[n - 1] == '.' || name[n - 1] == ' '))
        n--;
    return !(n == 4 && strncasecmp(name, ".git", 4) == 0);
}

/* Walks `tree` (at relative path `prefix`), creating directories under
 * `dir` when `mk` and collecting the files in index order. */
static int walk(git_repository *repo, const git_tree *tree, char *prefix,
                size_t plen, size_t cap, wt_job *j, int mk)
{
    int rc = 0;
    for (size_t i = 0; i < git_tree_entrycount(tree); i++) {
        const git_tree_entry *e = git_tree_entry_byindex(tree, i);
        const char *name = git_tree_entry_name(e);
        size_t nlen = strlen(name);
        if (!safe_name(name))
            return orch_err_set(-EINVAL, "refusing the unsafe path '%s%s' in the tree",
                                prefix, name);
        if (plen + nlen + 2 >= cap)
            return orch_err_set(-ENAMETOOLONG, "path too long: %s%s", prefix,
                                name);
        memcpy(prefix + plen, name, nlen + 1);
        if (git_tree_entry_type(e) == GIT_OBJECT_TREE) {
            git_tree *sub = NULL;
            if (mk) {
                char full[8192];
                snprintf(full, sizeof full, "%s/%s", j->dir, prefix);
                if (mkdir(full, 0777) < 0 && errno != EEXIST)
                    return orch_err_set(-errno, "mkdir %s: %s", full,
                                        strerror(errno));
            }
            int grc = git_tree_lookup(&sub, repo, git_tree_entry_id(e));
            if (grc < 0)
                return orch_git_fail(grc, "reading tree");
            prefix[plen + nlen] = '/';
            prefix[plen + nlen + 1] = '\0';
            rc = walk(repo, sub, prefix, plen + nlen + 1, cap, j, mk);
            git_tree_free(sub);
            if (rc < 0)
                return rc;
        } else {
            if (!strcmp(name, ".gitattributes"))
                j->has_attributes = 1;
            if ((rc = push_file(j, prefix, e)) < 0)
                return rc;
        }
        prefix[plen] = '\0';
    }
    return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes one file of the job; returns 0 or a negative errno with `msg`. */
static int write_one(wt_job *j, git_odb *odb, wt_file *f, char *msg,
                     size_t msz)
{
    char full[8192];
    git_odb_object *obj = NULL;
    int rc = 0, fd;
    snprintf(full, sizeof full, "%s/%s", j->dir, f->path);
    if (f->mode == GIT_FILEMODE_COMMIT) { /* submodule: an empty directory */
        if (mkdir(full, 0777) < 0 && errno != EEXIST)
            rc = -errno;
        goto done;
    }
    if (git_odb_read(&obj, odb, &f->id) < 0) {
        const git_error *e = git_error_last();
        snprintf(msg, msz, "reading %s: %s", f->path,
                 e && e->message ? e->message : "object missing");
        return -EIO;
    }
    const char *data = git_odb_object_data(obj);
    size_t size = git_odb_object_size(obj);
    if (f->mode == GIT_FILEMODE_LINK) {
        char target[4096];
        snprintf(target, sizeof target, "%.*s", (int)size, data);
        if (symlink(target, full) < 0 || lstat(full, &f->st) < 0)
            rc = -errno;
        goto done;
    }
    fd = open(full, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
              f->mode == GIT_FILEMODE_BLOB_EXECUTABLE ? 0777 : 0666);
    if (fd < 0) {
        rc = -errno;
        goto done;
    }
    rc = write_all(fd, data, size);
    if (rc == 0 && fstat(fd, &f->st) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
done:
    git_odb_object_free(obj);
    if (rc < 0)
        snprintf(msg, msz, "writing %.300s: %s", f->path, strerror(-rc));
    return rc;
}

static void *worker(void *arg)
{
    wt_job *j = arg;
    git_odb *odb = NULL;
    char msg[512];
    if (git_odb_open(&odb, j->objects_dir) < 0) {
        const git_error *e = git_error_last();
        job_fail(j, -EIO, e && e->message ? e->message : "opening odb");
        return NULL;
    }
    for (;;) {
        size_t start = atomic_fetch_add(&j->next, 32);
        if (start >= j->n || atomic_load(&j->failed))
            break;
        size_t end = start + 32 < j->n ? start + 32 : j->n;
        for (size_t i = start; i < end; i++) {
            int rc = write_one(j, odb, &j->files[i], msg, sizeof msg);
            if (rc < 0) {
                job_fail(j, rc, msg);
                goto out;
            }
        }
    }
out:
    git_odb_free(odb);
    return NULL;
}

static int write_index(wt_job *j, const char *index_path)
{
    git_index *idx = NULL;
    int rc = 0, grc;
    unlink(index_path);
    if ((grc = git_index_open(&idx, index_path)) < 0)
        return orch_git_fail(grc, index_path);
    for (size_t i = 0; i < j->n; i++) {
        const wt_file *f = &j->files[i];
        git_index_entry e;
        memset(&e, 0, sizeof e);
        e.ctime.seconds = (int32_t)f->st.st_ctim.tv_sec;
        e.ctime.nanoseconds = (uint32_t)f->st.st_ctim.tv_nsec;
        e.mtime.seconds = (int32_t)f->st.st_mtim.tv_sec;
        e.mtime.nanoseconds = (uint32_t)f->st.st_mtim.tv_nsec;
        e.dev = (uint32_t)f->st.st_dev;
        e.ino = (uint32_t)f->st.st_ino;
        e.uid = (uint32_t)f->st.st_uid;
        e.gid = (uint32_t)f->st.st_gid;
        e.file_size = (uint32_t)f->st.st_size;
        e.mode = f->mode;
        git_oid_cpy(&e.id, &f->id);
        e.path = f->path;
        if ((grc = git_index_add(idx, &e)) < 0) {
            rc = orch_git_fail(grc, "index");
            goto cleanup;
        }
    }
    if ((grc = git_index_write(idx)) < 0)
        rc = orch_git_fail(grc, index_path);
cleanup:
    git_index_free(idx);
    return rc;
}

static void job_free(wt_job *j)
{
    for (size_t i = 0; i < j->n; i++)
        free(j->files[i].path);
    free(j->files);
    pthread_mutex_destroy(&j->mu);
}

static int load_tree(git_repository *repo, const git_oid *id, git_tree **out)
{
    git_object *obj = NULL;
    int grc = git_object_lookup(&obj, repo, id, GIT_OBJECT_ANY);
    if (grc == 0) {
        grc = git_object_peel((git_object **)out, obj, GIT_OBJECT_TREE);
        git_object_free(obj);
    }
    return grc < 0 ? orch_git_fail(grc, "tree") : 0;
}

int orch_wtco_fast_ok(git_repository *repo, const git_oid *tree)
{
    git_config *cfg = NULL;
    git_tree *t = NULL;
    git_buf buf = {0};
    char path[4096], prefix[4096] = "";
    wt_job j;
    int rc, ok = 1, b;
    memset(&j, 0, sizeof j);
    pthread_mutex_init(&j.mu, NULL);
    snprintf(path, sizeof path, "%s/info/attributes",
             git_repository_commondir(repo));
    if (access(path, F_OK) == 0)
        ok = 0;
    if (ok && git_repository_config_snapshot(&cfg, repo) == 0) {
        if (git_config_get_bool(&b, cfg, "core.autocrlf") == 0 && b)
            ok = 0;
        if (git_config_get_string_buf(&buf, cfg, "core.autocrlf") == 0 &&
            !strcmp(buf.ptr, "input"))
            ok = 0;
        git_buf_dispose(&buf);
        if (git_config_get_string_buf(&buf, cfg, "core.attributesFile") == 0)
            ok = 0;
        git_buf_dispose(&buf);
        if (git_config_get_bool(&b, cfg, "core.symlinks") == 0 && !b)
            ok = 0;
    }
    git_config_free(cfg);
    if (ok) {
        const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
        if (xdg && *xdg)
            snprintf(path, sizeof path, "%s/git/attributes", xdg);
        else
            snprintf(path, sizeof path, "%s/.config/git/attributes",
                     home ? home : "/");
        if (access(path, F_OK) == 0)
            ok = 0;
    }
    if (ok) {
        if ((rc = load_tree(repo, tree, &t)) < 0)
            goto cleanup;
        /* a .gitattributes can only sit in a tree: scan names, no blobs */
        if ((rc = walk(repo, t, prefix, 0, sizeof prefix, &j, 0)) < 0)
            goto cleanup;
        ok = !j.has_attributes;
    }
    rc = ok;
cleanup:
    git_tree_free(t);
    job_free(&j);
    return rc;
}

int orch_wtco_fast(git_repository *repo, const char *objects_dir,
                   const git_oid *tree, const char *dir,
                   const char *index_path, int nthreads)
{
    git_tree *t = NULL;
    pthread_t th[4];
    int started = 0, rc;
    char prefix[4096] = "";
    wt_job j;
    memset(&j, 0, sizeof j);
    pthread_mutex_init(&j.mu, NULL);
    j.dir = dir;
    j.objects_dir = objects_dir;
    if (nthreads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = n > 0 ? (int)n : 1;
    }
    if (nthreads > 4)
        nthreads = 4;
    if ((rc = load_tree(repo, tree, &t)) < 0)
        goto cleanup;
    if ((rc = walk(repo, t, prefix, 0, sizeof prefix, &j, 1)) < 0)
        goto cleanup;
    for (int i = 1; i < nthreads; i++) {
        if (pthread_create(&th[i], NULL, worker, &j) != 0)
            break;
        started++;
    }
    worker(&j); /* this thread works too */
    for (int i = 1; i <= started; i++)
        pthread_join(th[i], NULL);
    if (j.rc) {
        rc = orch_err_set(j.rc, "checkout: %s", j.msg);
        goto cleanup;
    }
    rc = write_index(&j, index_path);
cleanup:
    git_tree_free(t);
    job_free(&j);
    return rc;
}

int orch_wtco_libgit2(git_repository *wt, const git_oid *tree)
{
    git_checkout_options co;
    git_tree *t = NULL;
    int rc;
    git_checkout_options_init(&co, GIT_CHECKOUT_OPTIONS_VERSION);
    /* The directory is empty: no baseline to diff, nothing to keep. */
    co.checkout_strategy = GIT_CHECKOUT_FORCE | GIT_CHECKOUT_DONT_REMOVE_EXISTING;
    if ((rc = load_tree(wt, tree, &t)) < 0)
        return rc;
    int grc = git_checkout_tree(wt, (git_object *)t, &co);
    git_tree_free(t);
    return grc < 0 ? orch_git_fail(grc, "checkout") : 0;
}
