/* ctl.c - the control socket: socket directory, server, client (frames are
 * split by core/linebuf.c).
 * See ctl.h. */
#include "ctl.h"

#include "err.h"
#include "linebuf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CTL_READ_CHUNK 65536

/* ================================================================ places */

int orch_ctl_check_dir(const char *dir)
{
    struct stat st;
    if (lstat(dir, &st) < 0)
        return orch_err_set(-errno, "socket directory %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return orch_err_set(-ENOTDIR, "socket directory %s is not a directory", dir);
    if (st.st_uid != geteuid())
        return orch_err_set(-EACCES,
                            "socket directory %s is owned by uid %u, not by you "
                            "(uid %u): refusing to use it",
                            dir, (unsigned)st.st_uid, (unsigned)geteuid());
    if (st.st_mode & 077)
        return orch_err_set(-EACCES,
                            "socket directory %s has unsafe permissions %03o "
                            "(open to group or others): run `chmod 700 %s`",
                            dir, (unsigned)(st.st_mode & 0777), dir);
    return 0;
}

int orch_ctl_socket_dir(char *out, size_t cap)
{
    const char *env = getenv("ORCH_SOCKET_DIR");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    const char *tmp = getenv("TMPDIR");
    int n;

    if (env && *env)
        n = snprintf(out, cap, "%s", env);
    else if (xdg && xdg[0] == '/' && access(xdg, W_OK | X_OK) == 0)
        n = snprintf(out, cap, "%s/orch", xdg);
    else
        n = snprintf(out, cap, "%s/orch-%u", tmp && tmp[0] == '/' ? tmp : "/tmp",
                     (unsigned)geteuid());
    if (n < 0 || (size_t)n >= cap)
        return orch_err_set(-ENAMETOOLONG, "socket directory path is too long");
    while (n > 1 && out[n - 1] == '/')
        out[--n] = '\0';
    if (mkdir(out, 0700) < 0 && errno != EEXIST)
        return orch_err_set(-errno, "cannot create socket directory %s: %s", out,
                            strerror(errno));
    return orch_ctl_check_dir(out);
}

/* The directory part of path, checked. */
static int ctl_check_parent(const char *path)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    const char *slash = strrchr(path, '/');
    size_t n;

    if (!slash)
        return orch_ctl_check_dir(".");
    n = (size_t)(slash - path);
    if (n == 0)
        n = 1;
    memcpy(dir, path, n);
    dir[n] = '\0';
    return orch_ctl_check_dir(dir);
}

static int ctl_addr(const char *path, struct sockaddr_un *sa)
{
    size_t n = strlen(path);
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (n == 0 || n >= sizeof sa->sun_path)
        return orch_err_set(-ENAMETOOLONG,
                            "socket path %s is too long for a unix socket "
                            "(%zu bytes, at most %zu)",
                            path, n, sizeof sa->sun_path - 1);
    memcpy(sa->sun_path, path, n + 1);
    return 0;
}

/* A connected socket fd, or a negative errno (no message). */
static int ctl_dial(const char *path)
{
    struct sockaddr_un sa;
    int fd, rc;

    rc = ctl_addr(path, &sa);
    if (rc < 0)
        return rc;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

/* ================================================================ connections */

struct orch_ctl_conn {
    uv_pipe_t pipe; /* first: the handle's address is the connection's */
    orch_linebuf lb;
    orch_ctl_conn_cb cb;
    void *ud;
    int reading;   /* the owner wants frames */
    int throttled; /* reading stopped: too many replies unread */
    int released, peer_gone, accepted;
    size_t counted; /* bytes of lb.cap counted in ctl_total_buffered */
    size_t queued;  /* bytes handed to uv_write and not yet written */
    uv_shutdown_t shut;
    orch_ctl_conn *tprev, *tnext; /* the list of throttled connections */
};

typedef struct ctl_wreq {
    uv_write_t req;
    orch_ctl_conn *conn;
    size_t len;
    char data[];
} ctl_wreq;

/* Totals over every connection (one loop per process). */
static size_t ctl_total_buffered, ctl_total_queued, ctl_nconns;
static orch_ctl_conn *ctl_throttled;

size_t orch_ctl_total_buffered(void)
{
    return ctl_total_buffered;
}

size_t orch_ctl_total_queued(void)
{
    return ctl_total_queued;
}

static void ctl_count_buffer(orch_ctl_conn *c)
{
    ctl_total_buffered += c->lb.cap;
    ctl_total_buffered -= c->counted;
    c->counted = c->lb.cap;
}

static void ctl_unthrottle_link(orch_ctl_conn *c)
{
    if (c->tprev)
        c->tprev->tnext = c->tnext;
    else if (ctl_throttled == c)
        ctl_throttled = c->tnext;
    if (c->tnext)
        c->tnext->tprev = c->tprev;
    c->tprev = c->tnext = NULL;
}

static void ctl_conn_free(uv_handle_t *h)
{
    orch_ctl_conn *c = (orch_ctl_conn *)h;
    orch_linebuf_free(&c->lb);
    ctl_count_buffer(c);
    if (c->throttled)
        ctl_unthrottle_link(c);
    if (c->accepted)
        ctl_nconns--;
    free(c);
}

static orch_ctl_conn *ctl_conn_new(uv_loop_t *loop)
{
    orch_ctl_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (uv_pipe_init(loop, &c->pipe, 0) < 0) {
        free(c);
        return NULL;
    }
    c->pipe.data = c;
    orch_linebuf_init(&c->lb);
    return c;
}

static void ctl_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    orch_ctl_conn *c = h->data;
    size_t avail = 0;
    char *at = orch_linebuf_space(&c->lb, CTL_READ_CHUNK, &avail);
    (void)hint;
    if (avail > CTL_READ_CHUNK)
        avail = CTL_READ_CHUNK;
    *buf = uv_buf_init(at, at ? (unsigned)avail : 0);
}

static void ctl_read_stop(orch_ctl_conn *c)
{
    if (c->reading && !c->throttled && !c->released && !c->peer_gone)
        uv_read_stop((uv_stream_t *)&c->pipe);
}

static int ctl_on_frame(const char *data, size_t len, void *ud)
{
    orch_ctl_conn *c = ud;
    int status = data ? 0 : ORCH_CTL_TOO_BIG;
    if (c->released || !c->reading)
        return 1;
    if (status == ORCH_CTL_TOO_BIG)
        orch_ctl_pause(c);
    if (c->cb.on_frame)
        c->cb.on_frame(c, data, len, status, c->ud);
    /* stop at once when the replies are not read (see ctl_throttle) */
    return c->released || !c->reading || c->throttled;
}

static void ctl_peer_gone(orch_ctl_conn *c, int status)
{
    if (c->peer_gone)
        return;
    ctl_read_stop(c);
    c->peer_gone = 1;
    c->reading = 0;
    if (!c->released && c->cb.on_close)
        c->cb.on_close(c, status, c->ud);
}

/* Frames still buffered after a throttle or a restart. */
static void ctl_deliver(orch_ctl_conn *c)
{
    orch_linebuf_commit(&c->lb, 0, ctl_on_frame, c);
    ctl_count_buffer(c);
}

static void ctl_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    orch_ctl_conn *c = s->data;
    (void)buf;
    if (n == 0 || c->released)
        return;
    if (n < 0) {
        /* a partial frame at the end is dropped, never executed: the
         * client may have been cut off in the middle of it */
        orch_linebuf_reset(&c->lb);
        ctl_peer_gone(c, n == UV_EOF ? 0 : (int)n);
        return;
    }
    if (!c->reading)
        return;
    orch_linebuf_commit(&c->lb, (size_t)n, ctl_on_frame, c);
    ctl_count_buffer(c);
    if (!c->released && c->reading && c->lb.len > 0 &&
        ctl_total_buffered > ORCH_CTL_TOTAL_BUFFERED) {
        /* every connection together holds too much: this one's partial
         * frame is refused like an oversized one */
        size_t seen = c->lb.len;
        orch_linebuf_reset(&c->lb);
        ctl_on_frame(NULL, seen, c);
    }
}

static int ctl_read_start(orch_ctl_conn *c)
{
    int rc = uv_read_start((uv_stream_t *)&c->pipe, ctl_alloc, ctl_read);
    if (rc < 0)
        return orch_err_set(rc, "cannot read the connection: %s", uv_strerror(rc));
    return 0;
}

int orch_ctl_conn_start(orch_ctl_conn *c, const orch_ctl_conn_cb *cb,
                        size_t max, void *ud)
{
    int rc;
    if (c->released || c->peer_gone)
        return orch_err_set(-EPIPE, "connection is closed");
    c->cb = *cb;
    c->ud = ud;
    if (c->reading)
        return 0;
    /* a restart after a pause: drop what the framer held (no leak) */
    orch_linebuf_free(&c->lb);
    ctl_count_buffer(c);
    orch_linebuf_limit(&c->lb, max ? max : ORCH_CTL_MAX_FRAME, ORCH_LINEBUF_DROP);
    if (!c->throttled && (rc = ctl_read_start(c)) < 0)
        return rc;
    c->reading = 1;
    return 0;
}

void orch_ctl_pause(orch_ctl_conn *c)
{
    ctl_read_stop(c);
    c->reading = 0;
}

/* Backpressure: a client that does not read its replies stops being read
 * (its requests wait in the kernel's socket buffer) until they drain. */
static int ctl_over(const orch_ctl_conn *c)
{
    return c->queued > ORCH_CTL_WRITE_MAX || ctl_total_queued > ORCH_CTL_TOTAL_QUEUED;
}

static void ctl_throttle(orch_ctl_conn *c)
{
    if (c->throttled || c->released || c->peer_gone || !ctl_over(c))
        return;
    ctl_read_stop(c);
    c->throttled = 1;
    c->tnext = ctl_throttled;
    if (ctl_throttled)
        ctl_throttled->tprev = c;
    ctl_throttled = c;
}

static void ctl_unthrottle_ready(void)
{
    orch_ctl_conn *c = ctl_throttled, *next;
    for (; c; c = next) {
        next = c->tnext;
        if (c->queued > ORCH_CTL_WRITE_MAX / 2 ||
            ctl_total_queued > ORCH_CTL_TOTAL_QUEUED / 2)
            continue;
        ctl_unthrottle_link(c);
        c->throttled = 0;
        if (c->reading && !c->released && !c->peer_gone) {
            if (ctl_read_start(c) < 0)
                continue;
            ctl_deliver(c);
        }
    }
}

static void ctl_written(uv_write_t *req, int status)
{
    ctl_wreq *w = (ctl_wreq *)req;
    (void)status; /* a broken peer shows up on the read side */
    w->conn->queued -= w->len;
    ctl_total_queued -= w->len;
    free(w);
    if (ctl_throttled)
        ctl_unthrottle_ready();
}

int orch_ctl_write(orch_ctl_conn *c, const char *data, size_t len)
{
    uv_stream_t *s = (uv_stream_t *)&c->pipe;
    ctl_wreq *w;
    uv_buf_t b;
    int rc;

    if (c->released || c->peer_gone || uv_is_closing((uv_handle_t *)s))
        return orch_err_set(-EPIPE, "connection is closed");
    if (len == 0)
        return 0;
    if (uv_stream_get_write_queue_size(s) == 0) {
        b = uv_buf_init((char *)data, (unsigned)len);
        rc = uv_try_write(s, &b, 1);
        if (rc > 0) {
            data += rc;
            len -= (size_t)rc;
            if (len == 0)
                return 0;
        } else if (rc < 0 && rc != UV_EAGAIN) {
            return orch_err_set(rc, "write: %s", uv_strerror(rc));
        }
    }
    w = malloc(sizeof *w + len);
    if (!w)
        return orch_err_set(-ENOMEM, "out of memory");
    memcpy(w->data, data, len);
    w->conn = c;
    w->len = len;
    b = uv_buf_init(w->data, (unsigned)len);
    rc = uv_write(&w->req, s, &b, 1, ctl_written);
    if (rc < 0) {
        free(w);
        return orch_err_set(rc, "write: %s", uv_strerror(rc));
    }
    c->queued += len;
    ctl_total_queued += len;
    ctl_throttle(c);
    return 0;
}

size_t orch_ctl_queued(const orch_ctl_conn *c)
{
    return c->queued;
}

static void ctl_shut(uv_shutdown_t *req, int status)
{
    (void)status;
    uv_close((uv_handle_t *)req->handle, ctl_conn_free);
}

void orch_ctl_close(orch_ctl_conn *c)
{
    if (!c || c->released)
        return;
    ctl_read_stop(c);
    c->released = 1;
    c->reading = 0;
    if (orch_ctl_queued(c) > 0 &&
        uv_shutdown(&c->shut, (uv_stream_t *)&c->pipe, ctl_shut) == 0)
        return;
    uv_close((uv_handle_t *)&c->pipe, ctl_conn_free);
}

/* ================================================================ server */

struct orch_ctl_server {
    uv_pipe_t pipe;
    orch_ctl_accept_fn fn;
    void *ud;
    char *path;
};

static void ctl_server_free(uv_handle_t *h)
{
    orch_ctl_server *s = (orch_ctl_server *)h;
    free(s->path);
    free(s);
}

static void ctl_on_connection(uv_stream_t *ls, int status)
{
    orch_ctl_server *s = ls->data;
    orch_ctl_conn *c;

    if (status < 0)
        return;
    c = ctl_conn_new(ls->loop);
    if (!c)
        return;
    if (uv_accept(ls, (uv_stream_t *)&c->pipe) < 0 || ctl_nconns >= ORCH_CTL_MAX_CONNS) {
        /* past the limit the connection is closed at once */
        c->released = 1;
        uv_close((uv_handle_t *)&c->pipe, ctl_conn_free);
        return;
    }
    c->accepted = 1;
    ctl_nconns++;
    s->fn(s, c, s->ud);
}

/* Removes a socket file nobody answers on; refuses a live one. */
int orch_ctl_clear_stale(const char *path)
{
    struct stat st;
    int fd;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : orch_err_set(-errno, "%s: %s", path, strerror(errno));
    if (!S_ISSOCK(st.st_mode))
        return orch_err_set(-EEXIST, "%s exists and is not a socket", path);
    fd = ctl_dial(path);
    if (fd >= 0) {
        close(fd);
        return orch_err_set(-EADDRINUSE, "%s is in use by a live process", path);
    }
    if (fd != -ECONNREFUSED && fd != -ENOENT)
        return orch_err_set(fd, "%s: %s", path, strerror(-fd));
    if (unlink(path) < 0 && errno != ENOENT)
        return orch_err_set(-errno, "cannot remove stale socket %s: %s", path,
                            strerror(errno));
    return 0;
}

int orch_ctl_listen(uv_loop_t *loop, const char *path, orch_ctl_accept_fn fn,
                    void *ud, orch_ctl_server **out)
{
    struct sockaddr_un sa;
    orch_ctl_server *s = NULL;
    int rc;

    *out = NULL;
    if ((rc = ctl_addr(path, &sa)) < 0)
        return rc;
    if ((rc = ctl_check_parent(path)) < 0)
        return rc;
    if ((rc = orch_ctl_clear_stale(path)) < 0)
        return rc;
    s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return orch_err_set(-ENOMEM, "out of memory");
    }
    s->fn = fn;
    s->ud = ud;
    uv_pipe_init(loop, &s->pipe, 0);
    s->pipe.data = s;
    rc = uv_pipe_bind(&s->pipe, path);
    if (rc < 0) {
        orch_err_set(rc, "cannot bind %s: %s", path, uv_strerror(rc));
        goto fail;
    }
    if (chmod(path, 0600) < 0) {
        rc = orch_err_set(-errno, "chmod %s: %s", path, strerror(errno));
        unlink(path);
        goto fail;
    }
    rc = uv_listen((uv_stream_t *)&s->pipe, 64, ctl_on_connection);
    if (rc < 0) {
        orch_err_set(rc, "cannot listen on %s: %s", path, uv_strerror(rc));
        unlink(path);
        goto fail;
    }
    *out = s;
    return 0;
fail:
    uv_close((uv_handle_t *)&s->pipe, ctl_server_free);
    return rc;
}

void orch_ctl_server_close(orch_ctl_server *s)
{
    if (!s)
        return;
    unlink(s->path);
    uv_close((uv_handle_t *)&s->pipe, ctl_server_free);
}

/* ================================================================ client */

int orch_ctl_connect(uv_loop_t *loop, const char *path, orch_ctl_conn **out)
{
    orch_ctl_conn *c;
    int fd, rc;

    *out = NULL;
    if ((rc = ctl_addr(path, &(struct sockaddr_un){0})) < 0)
        return rc;
    if ((rc = ctl_check_parent(path)) < 0)
        return rc;
    fd = ctl_dial(path);
    if (fd < 0)
        return orch_err_set(fd, "cannot connect to %s: %s", path, strerror(-fd));
    c = ctl_conn_new(loop);
    if (!c) {
        close(fd);
        return orch_err_set(-ENOMEM, "out of memory");
    }
    rc = uv_pipe_open(&c->pipe, fd);
    if (rc < 0) {
        close(fd);
        c->released = 1;
        uv_close((uv_handle_t *)&c->pipe, ctl_conn_free);
        return orch_err_set(rc, "cannot open the connection: %s", uv_strerror(rc));
    }
    *out = c;
    return 0;
}
