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
 * Frames are bytes up to a '\n' (the '\n' is not part of the frame), at most
 * `max` bytes (ORCH_CTL_MAX_FRAME by default); a longer one is reported once
 * as ORCH_CTL_TOO_BIG and the connection stops reading (its owner replies and
 * closes it). A partial frame at end of stream is delivered as a last frame.
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

/* ---------------------------------------------------------------- framer */

/* Splits a byte stream into frames; pure, for the fuzzer and the sockets. */
typedef struct orch_ctl_framer {
    char *buf;
    size_t len, cap, max;
    int discarding; /* an oversized frame was reported: drop to its '\n' */
} orch_ctl_framer;

/* status is 0 for a frame, ORCH_CTL_TOO_BIG (data NULL, len = bytes seen so
 * far) for one over max. Returning non-zero stops the feed. */
typedef int (*orch_ctl_frame_fn)(const char *data, size_t len, int status,
                                 void *ud);

void orch_ctl_framer_init(orch_ctl_framer *f, size_t max);
void orch_ctl_framer_free(orch_ctl_framer *f);
/* Feeds bytes; calls fn per complete frame. Returns 0, 1 if fn stopped it,
 * or -ENOMEM. */
int orch_ctl_framer_feed(orch_ctl_framer *f, const char *data, size_t len,
                         orch_ctl_frame_fn fn, void *ud);
/* At end of stream: a partial frame left is handed to fn. */
void orch_ctl_framer_finish(orch_ctl_framer *f, orch_ctl_frame_fn fn, void *ud);

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
/* Bytes queued and not yet written. */
size_t orch_ctl_queued(const orch_ctl_conn *c);
/* Stops reading (e.g. after an oversized frame); writes still go out. */
void orch_ctl_pause(orch_ctl_conn *c);
/* The owner lets go: flushes queued writes, closes, frees. */
void orch_ctl_close(orch_ctl_conn *c);

/* Removes the socket file at path if nobody answers on it (connect refused
 * or already gone); refuses a live socket (-EADDRINUSE) and anything that is
 * not a socket (-EEXIST). 0 when removed or absent. */
int orch_ctl_clear_stale(const char *path);

#endif
