/* ctl.h - the control socket of a live run: a unix-socket server and client
 * on the libuv loop, carrying newline-delimited frames.
 *
 * The socket lives in a per-user directory of mode 0700 that orch creates
 * ($ORCH_SOCKET_DIR, else $XDG_RUNTIME_DIR/orch, else $TMPDIR or /tmp +
 * /orch-UID); a directory owned by someone else or open to group or other is
 * refused, as tmux does. The socket itself is mode 0600. A socket file left
 * by a killed process (connect is refused) is removed by the next listen on
 * that path; a socket that answers is never replaced.
 *
 * Frames are bytes up to a '\n' (the '\n' is not part of the frame), split by
 * core/linebuf.c in its DROP mode: at most `max` bytes (ORCH_CTL_MAX_FRAME
 * by default); a longer one is reported once as ORCH_CTL_TOO_BIG and the
 * connection stops reading (its owner replies and closes it). A partial
 * frame at end of stream is dropped, never delivered: a client cut off in
 * the middle of a line must not have half a command executed.
 *
 * Bounds (what a client can make the run hold):
 * - at most ORCH_CTL_MAX_CONNS accepted connections; more are closed at once;
 * - the frames being read, over every connection together, at most
 *   ORCH_CTL_TOTAL_BUFFERED bytes: past it, the connection whose partial
 *   frame is growing gets ORCH_CTL_TOO_BIG as if its frame were too long;
 * - replies not yet written: when a connection has more than
 *   ORCH_CTL_WRITE_MAX queued, or all together more than
 *   ORCH_CTL_TOTAL_QUEUED, that connection is not read until they drain to
 *   half (its requests wait in the kernel; it gets no more replies to
 *   leave unread). Events a server pushes on its own are the owner's to
 *   bound (it sees orch_ctl_queued() and orch_ctl_total_queued()).
 *
 * Lifetime: a connection is owned by the module until its owner calls
 * orch_ctl_close(); callbacks stop then, queued writes are flushed, and it is
 * freed once its handle is closed. on_close tells the owner the peer is gone
 * (end of stream or an error); the owner still calls orch_ctl_close(). */
#ifndef ORCH_CTL_H
#define ORCH_CTL_H

#include <stddef.h>
#include <uv.h>

#define ORCH_CTL_MAX_FRAME ((size_t)16 * 1024 * 1024)
#define ORCH_CTL_TOO_BIG 1 /* status of on_frame for an oversized frame */
#define ORCH_CTL_MAX_CONNS 64
#define ORCH_CTL_TOTAL_BUFFERED ((size_t)64 * 1024 * 1024)
#define ORCH_CTL_WRITE_MAX ((size_t)4 * 1024 * 1024)
#define ORCH_CTL_TOTAL_QUEUED ((size_t)64 * 1024 * 1024)

/* ---------------------------------------------------------------- places */

/* Checks that dir is a directory owned by this user with no group or other
 * access. -EPERM / -ENOTDIR with a message saying how to fix it. */
int orch_ctl_check_dir(const char *dir);
/* Resolves the socket directory, creates it (0700) if missing and checks it;
 * writes its path to out. */
int orch_ctl_socket_dir(char *out, size_t cap);

/* ---------------------------------------------------------------- sockets */

typedef struct orch_ctl_server orch_ctl_server;
typedef struct orch_ctl_conn orch_ctl_conn;

typedef struct orch_ctl_conn_cb {
    void (*on_frame)(orch_ctl_conn *c, const char *data, size_t len,
                     int status, void *ud);
    /* status 0 at end of stream, a negative errno on a read error. */
    void (*on_close)(orch_ctl_conn *c, int status, void *ud);
} orch_ctl_conn_cb;

typedef void (*orch_ctl_accept_fn)(orch_ctl_server *s, orch_ctl_conn *c,
                                   void *ud);

/* Listens on path (checks its directory; removes a stale socket; refuses a
 * live one with -EADDRINUSE). Each accepted connection is handed to
 * on_accept, which must call orch_ctl_conn_start() or orch_ctl_close(). */
int orch_ctl_listen(uv_loop_t *loop, const char *path, orch_ctl_accept_fn fn,
                    void *ud, orch_ctl_server **out);
/* Stops listening, unlinks the socket, frees the server (connections stay
 * with their owners). */
void orch_ctl_server_close(orch_ctl_server *s);

/* Connects at once (a unix socket answers or refuses immediately):
 * -ENOENT (no socket), -ECONNREFUSED (stale), ... */
int orch_ctl_connect(uv_loop_t *loop, const char *path, orch_ctl_conn **out);

/* Starts reading frames (max 0 = ORCH_CTL_MAX_FRAME). */
int orch_ctl_conn_start(orch_ctl_conn *c, const orch_ctl_conn_cb *cb,
                        size_t max, void *ud);
/* Queues bytes (copied). -EPIPE once closed. */
int orch_ctl_write(orch_ctl_conn *c, const char *data, size_t len);
/* Bytes queued and not yet written: this connection's, every one's. */
size_t orch_ctl_queued(const orch_ctl_conn *c);
size_t orch_ctl_total_queued(void);
/* Bytes held by the connections' frame buffers together. */
size_t orch_ctl_total_buffered(void);
/* Stops reading (e.g. after an oversized frame); writes still go out. */
void orch_ctl_pause(orch_ctl_conn *c);
/* The owner lets go: flushes queued writes, closes, frees. */
void orch_ctl_close(orch_ctl_conn *c);

/* Removes the socket file at path if nobody answers on it (connect refused
 * or already gone); refuses a live socket (-EADDRINUSE) and anything that is
 * not a socket (-EEXIST). 0 when removed or absent. */
int orch_ctl_clear_stale(const char *path);

#endif
