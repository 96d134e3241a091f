/* dbckpt.c - WAL checkpoints on the thread pool (see dbckpt.h). */
#include "dbckpt.h"

#include "err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct orch_dbckpt {
    sqlite3 *db;     /* the writer: touched on the loop thread only */
    char *path;
    uv_loop_t *loop;
    int pages;
    int queued;      /* work in flight (loop thread) */
    int stopped;     /* owner let go: free when no work is in flight */
    int count;
    uv_mutex_t mu;   /* held by the worker while it checkpoints */
    uv_work_t req;
};

static void orch_dbckpt_free(orch_dbckpt *c)
{
    uv_mutex_destroy(&c->mu);
    free(c->path);
    free(c);
}

static void orch_dbckpt_work(uv_work_t *req)
{
    orch_dbckpt *c = req->data;
    sqlite3 *conn = NULL;

    uv_mutex_lock(&c->mu);
    /* A new connection knows the database is in WAL mode only once it has
     * read it: before that, a checkpoint is a silent no-op (and the WAL
     * grew without end). Reading the schema cookie opens the WAL. */
    if (sqlite3_open_v2(c->path, &conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                        NULL) == SQLITE_OK &&
        sqlite3_exec(conn, "PRAGMA schema_version", NULL, NULL, NULL) == SQLITE_OK)
        sqlite3_wal_checkpoint_v2(conn, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    sqlite3_close(conn);
    uv_mutex_unlock(&c->mu);
}

static void orch_dbckpt_done(uv_work_t *req, int status)
{
    orch_dbckpt *c = req->data;
    (void)status;
    c->queued = 0;
    c->count++;
    if (c->stopped)
        orch_dbckpt_free(c);
}

static int orch_dbckpt_hook(void *ud, sqlite3 *db, const char *name, int pages)
{
    orch_dbckpt *c = ud;
    (void)db;
    (void)name;
    if (!c->queued && !c->stopped && pages >= c->pages) {
        c->req.data = c;
        if (uv_queue_work(c->loop, &c->req, orch_dbckpt_work, orch_dbckpt_done) == 0)
            c->queued = 1;
    }
    return SQLITE_OK;
}

int orch_dbckpt_start(sqlite3 *db, const char *path, uv_loop_t *loop, int pages,
                      orch_dbckpt **out)
{
    orch_dbckpt *c = calloc(1, sizeof *c);

    *out = NULL;
    if (!c || !(c->path = strdup(path))) {
        free(c);
        return orch_err_set(-ENOMEM, "checkpoints: out of memory");
    }
    if (uv_mutex_init(&c->mu) != 0) {
        free(c->path);
        free(c);
        return orch_err_set(-ENOMEM, "checkpoints: no mutex");
    }
    c->db = db;
    c->loop = loop;
    c->pages = pages > 0 ? pages : 1000;
    sqlite3_wal_autocheckpoint(db, 0); /* also removes SQLite's own hook */
    sqlite3_wal_hook(db, orch_dbckpt_hook, c);
    /* Nor a checkpoint when the connection closes: it would fsync twice on
     * the loop thread at the end of every run, and delete the WAL, so that
     * the next run's first commit creates it again and fsyncs it and its
     * directory before the first task starts. The WAL stays (up to `pages`
     * pages, then the background checkpoint resets it) and the next open
     * goes on appending to it. */
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
    *out = c;
    return 0;
}

void orch_dbckpt_stop(orch_dbckpt *c)
{
    if (!c)
        return;
    sqlite3_wal_hook(c->db, NULL, NULL);
    c->stopped = 1;
    if (c->queued) {
        /* wait for a checkpoint in progress; queued work that has not
         * started yet runs later on its own connection and frees c */
        uv_mutex_lock(&c->mu);
        uv_mutex_unlock(&c->mu);
        return;
    }
    orch_dbckpt_free(c);
}

int orch_dbckpt_count(const orch_dbckpt *c)
{
    return c ? c->count : 0;
}
