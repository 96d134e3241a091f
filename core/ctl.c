/* ctl.c - the control socket: framer, socket directory, server, client.
 * See ctl.h. */
#include "ctl.h"

#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CTL_READ_CHUNK 65536

/* ================================================================ framer */

void orch_ctl_framer_init(orch_ctl_framer *f, size_t max)
{
    memset(f, 0, sizeof *f);
    f->max = max ? max : ORCH_CTL_MAX_FRAME;
}

void orch_ctl_framer_free(orch_ctl_framer *f)
{
    free(f->buf);
    memset(f, 0, sizeof *f);
}

static int ctl_framer_reserve(orch_ctl_framer *f, size_t extra)
{
    size_t want = f->len + extra, cap = f->cap ? f->cap : 4096;
    char *nb;
    if (want <= f->cap)
        return 0;
    while (cap < want)
        cap *= 2;
    nb = realloc(f->buf, cap);
    if (!nb)
        return -ENOMEM;
    f->buf = nb;
    f->cap = cap;
    return 0;
}

/* Drops the first n bytes of the buffer. */
static void ctl_framer_consume(orch_ctl_framer *f, size_t n)
{
    memmove(f->buf, f->buf + n, f->len - n);
    f->len -= n;
}

int orch_ctl_framer_feed(orch_ctl_framer *f, const char *data, size_t len,
                         orch_ctl_frame_fn fn, void *ud)
{
    while (len > 0) {
        const char *nl;
        size_t take;

        if (f->discarding) {
            /* Skip the rest of an oversized frame. */
            nl = memchr(data, '\n', len);
            if (!nl)
                return 0;
            f->discarding = 0;
            len -= (size_t)(nl - data) + 1;
            data = nl + 1;
            continue;
        }
        /* Take bytes up to and including the next '\n' (or all), but never
         * buffer more than max + 1 bytes. */
        nl = memchr(data, '\n', len);
        take = nl ? (size_t)(nl - data) + 1 : len;
        if (f->len + take - (nl ? 1 : 0) > f->max) {
            size_t seen = f->len + take - (nl ? 1 : 0);
            f->len = 0;
            f->discarding = nl == NULL;
            len -= take;
            data += take;
            if (fn(NULL, seen, ORCH_CTL_TOO_BIG, ud))
                return 1;
            continue;
        }
        if (ctl_framer_reserve(f, take) < 0)
            return -ENOMEM;
        memcpy(f->buf + f->len, data, take);
        f->len += take;
        len -= take;
        data += take;
        if (nl) {
            size_t flen = f->len - 1;
            f->buf[flen] = '\0';
            /* fn sees the frame NUL-terminated; it is dropped after. */
            {
                int stop = fn(f->buf, flen, 0, ud);
                ctl_framer_consume(f, f->len);
                if (stop)
                    return 1;
            }
        }
    }
    return 0;
}

void orch_ctl_framer_finish(orch_ctl_framer *f, orch_ctl_frame_fn fn, void *ud)
{
    if (f->len > 0 && !f->discarding) {
        if (ctl_framer_reserve(f, 1) == 0) {
            size_t n = f->len;
            f->buf[n] = '\0';
            fn(f->buf, n, 0, ud);
        }
    }
    f->len = 0;
    f->discarding = 0;
}

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
    orch_ctl_framer fr;
    orch_ctl_conn_cb cb;
    void *ud;
    char *rbuf;
    int reading, released, peer_gone;
    uv_shutdown_t shut;
};

typedef struct ctl_wreq {
    uv_write_t req;
    char data[];
} ctl_wreq;

static void ctl_conn_free(uv_handle_t *h)
{
    orch_ctl_conn *c = (orch_ctl_conn *)h;
    orch_ctl_framer_free(&c->fr);
    free(c->rbuf);
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
    return c;
}

static void ctl_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    orch_ctl_conn *c = h->data;
    (void)hint;
    if (!c->rbuf)
        c->rbuf = malloc(CTL_READ_CHUNK);
    buf->base = c->rbuf;
    buf->len = c->rbuf ? CTL_READ_CHUNK : 0;
}

static int ctl_on_frame(const char *data, size_t len, int status, void *ud)
{
    orch_ctl_conn *c = ud;
    if (c->released || !c->reading)
        return 1;
    if (status == ORCH_CTL_TOO_BIG)
        orch_ctl_pause(c);
    if (c->cb.on_frame)
        c->cb.on_frame(c, data, len, status, c->ud);
    return c->released || !c->reading;
}

static void ctl_peer_gone(orch_ctl_conn *c, int status)
{
    if (c->peer_gone)
        return;
    c->peer_gone = 1;
    if (c->reading)
        uv_read_stop((uv_stream_t *)&c->pipe);
    c->reading = 0;
    if (!c->released && c->cb.on_close)
        c->cb.on_close(c, status, c->ud);
}

static void ctl_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    orch_ctl_conn *c = s->data;
    (void)buf;
    if (n == 0 || c->released)
        return;
    if (n < 0) {
        if (n == UV_EOF && c->reading)
            orch_ctl_framer_finish(&c->fr, ctl_on_frame, c);
        ctl_peer_gone(c, n == UV_EOF ? 0 : (int)n);
        return;
    }
    if (!c->reading)
        return;
    if (orch_ctl_framer_feed(&c->fr, buf->base, (size_t)n, ctl_on_frame, c) < 0)
        ctl_peer_gone(c, -ENOMEM);
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
    orch_ctl_framer_free(&c->fr);
    orch_ctl_framer_init(&c->fr, max);
    rc = uv_read_start((uv_stream_t *)&c->pipe, ctl_alloc, ctl_read);
    if (rc < 0)
        return orch_err_set(rc, "cannot read the connection: %s", uv_strerror(rc));
    c->reading = 1;
    return 0;
}

void orch_ctl_pause(orch_ctl_conn *c)
{
    if (c->reading && !c->released)
        uv_read_stop((uv_stream_t *)&c->pipe);
    c->reading = 0;
}

static void ctl_written(uv_write_t *req, int status)
{
    (void)status; /* a broken peer shows up on the read side */
    free(req);
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
    b = uv_buf_init(w->data, (unsigned)len);
    rc = uv_write(&w->req, s, &b, 1, ctl_written);
    if (rc < 0) {
        free(w);
        return orch_err_set(rc, "write: %s", uv_strerror(rc));
    }
    return 0;
}

size_t orch_ctl_queued(const orch_ctl_conn *c)
{
    return uv_stream_get_write_queue_size((const uv_stream_t *)&c->pipe);
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
    c->released = 1;
    if (c->reading)
        uv_read_stop((uv_stream_t *)&c->pipe);
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
    if (uv_accept(ls, (uv_stream_t *)&c->pipe) < 0) {
        c->released = 1;
        uv_close((uv_handle_t *)&c->pipe, ctl_conn_free);
        return;
    }
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
