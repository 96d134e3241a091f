/* dbckpt.h - WAL checkpoints off the loop thread.
 *
 * With synchronous=NORMAL a WAL commit does not fsync; the checkpoints that
 * copy the WAL back into the database do, twice. SQLite runs them inside the
 * commit that crosses wal_autocheckpoint pages, so on a slow disk a commit
 * now and then stalls the loop for tens of milliseconds. Here automatic
 * checkpoints of the writer's connection are turned off and, when a commit
 * leaves the WAL at `pages` pages or more, a PASSIVE checkpoint runs on
 * libuv's thread pool through a connection of its own (passive: it never
 * blocks the writer or readers). Closing the writer does not checkpoint
 * either (SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE): the -wal and -shm files stay
 * beside the database between runs, and the next writer appends to them. */
#ifndef ORCH_DBCKPT_H
#define ORCH_DBCKPT_H

#include <sqlite3.h>
#include <uv.h>

typedef struct orch_dbckpt orch_dbckpt;

int orch_dbckpt_start(sqlite3 *db, const char *path, uv_loop_t *loop, int pages,
                      orch_dbckpt **out);

/* Unhooks from db (call before closing it) and waits for a checkpoint that
 * is running; the struct is freed now or when queued work completes. */
void orch_dbckpt_stop(orch_dbckpt *c);

/* Checkpoints run so far (for tests). */
int orch_dbckpt_count(const orch_dbckpt *c);

#endif
