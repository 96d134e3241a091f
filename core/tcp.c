/* tcp.c - TCP listener and connections on the libuv loop. See tcp.h. */
#include "tcp.h"

#include "err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ================================================================ connections */

struct orch_tcp_conn {
    uv_tcp_t tcp; /* first: the handle's address is the connection's */
    orch_tcp_conn_cb cb;
    void *ud;
    orch_tcp_connect_fn connect_fn;
    void *connect_ud;
    char *rbuf;
    int reading, released, peer_gone, connecting;
    uv_connect_t creq;
    uv_shutdown_t shut;
};

typedef struct tcp_wreq {
    uv_write_t req;
    char data[];
} tcp_wreq;

static void tcp_conn_free(uv_handle_t *h)
{
    orch_tcp_conn *c = (orch_tcp_conn *)h;
    free(c->rbuf);
    free(c);
}

static orch_tcp_conn *tcp_conn_new(uv_loop_t *loop)
{
    orch_tcp_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (uv_tcp_init(loop, &c->tcp) < 0) {
        free(c);
        return NULL;
    }
    c->tcp.data = c;
    return c;
}

/* Closes the handle of a connection nobody owns any more. */
static void tcp_conn_drop(orch_tcp_conn *c)
{
    c->released = 1;
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, tcp_conn_free);
}

static void tcp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    orch_tcp_conn *c = h->data;
    (void)hint;
    if (!c->rbuf)
        c->rbuf = malloc(ORCH_TCP_READ_CHUNK);
    buf->base = c->rbuf;
    buf->len = c->rbuf ? ORCH_TCP_READ_CHUNK : 0;
}

static void tcp_peer_gone(orch_tcp_conn *c, int status)
{
    if (c->peer_gone)
        return;
    c->peer_gone = 1;
    if (c->reading)
        uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
    if (!c->released && c->cb.on_close)
        c->cb.on_close(c, status, c->ud);
}

static void tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    orch_tcp_conn *c = s->data;
    if (n == 0 || c->released)
        return;
    if (n < 0) {
        tcp_peer_gone(c, n == UV_EOF ? 0 : (int)n);
        return;
    }
    if (c->reading && c->cb.on_data)
        c->cb.on_data(c, buf->base, (size_t)n, c->ud);
}

int orch_tcp_conn_start(orch_tcp_conn *c, const orch_tcp_conn_cb *cb,
                        void *ud)
{
    int rc;
    if (c->released || c->peer_gone || c->connecting)
        return orch_err_set(-EPIPE, "connection is closed");
    c->cb = *cb;
    c->ud = ud;
    if (c->reading)
        return 0;
    rc = uv_read_start((uv_stream_t *)&c->tcp, tcp_alloc, tcp_read);
    if (rc < 0)
        return orch_err_set(rc, "cannot read the connection: %s",
                            uv_strerror(rc));
    c->reading = 1;
    return 0;
}

void orch_tcp_pause(orch_tcp_conn *c)
{
    if (c->reading && !c->released)
        uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
}

static void tcp_written(uv_write_t *req, int status)
{
    (void)status; /* a broken peer shows up on the read side */
    free(req);
}

int orch_tcp_write(orch_tcp_conn *c, const char *data, size_t len)
{
    uv_stream_t *s = (uv_stream_t *)&c->tcp;
    size_t queued;
    tcp_wreq *w;
    uv_buf_t b;
    int rc;

    if (c->released || c->connecting || uv_is_closing((uv_handle_t *)s))
        return orch_err_set(-EPIPE, "connection is closed");
    if (len == 0)
        return 0;
    if (len > UINT32_MAX)
        return orch_err_set(-ENOBUFS, "write of %zu bytes is too big", len);
    queued = uv_stream_get_write_queue_size(s);
    if (queued == 0) {
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
    if (queued + len > ORCH_TCP_MAX_QUEUED)
        return orch_err_set(-ENOBUFS, "the peer is not reading: %zu bytes queued",
                            queued);
    w = malloc(sizeof *w + len);
    if (!w)
        return orch_err_set(-ENOMEM, "out of memory");
    memcpy(w->data, data, len);
    b = uv_buf_init(w->data, (unsigned)len);
    rc = uv_write(&w->req, s, &b, 1, tcp_written);
    if (rc < 0) {
        free(w);
        return orch_err_set(rc, "write: %s", uv_strerror(rc));
    }
    return 0;
}

size_t orch_tcp_queued(const orch_tcp_conn *c)
{
    return uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp);
}

static void tcp_shut(uv_shutdown_t *req, int status)
{
    (void)status;
    uv_close((uv_handle_t *)req->handle, tcp_conn_free);
}

void orch_tcp_close(orch_tcp_conn *c)
{
    if (!c || c->released)
        return;
    c->released = 1;
    orch_tcp_pause(c);
    if (!c->connecting && !c->peer_gone && orch_tcp_queued(c) > 0 &&
        uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, tcp_shut) == 0)
        return;
    tcp_conn_drop(c);
}

void orch_tcp_abort(orch_tcp_conn *c)
{
    if (!c || c->released)
        return;
    c->released = 1;
    orch_tcp_pause(c);
    if (!c->connecting &&
        uv_tcp_close_reset(&c->tcp, tcp_conn_free) == 0)
        return;
    tcp_conn_drop(c);
}

/* ================================================================ addresses */

static int tcp_addr(const char *host, int port, struct sockaddr_storage *sa)
{
    if (!host || !*host)
        host = "127.0.0.1";
    if (port < 0 || port > 65535)
        return orch_err_set(-EINVAL, "bad port %d", port);
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)sa) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)sa) == 0)
        return 0;
    return orch_err_set(-EINVAL, "bad address '%s' (an IP address is needed)",
                        host);
}

/* ================================================================ server */

struct orch_tcp_server {
    uv_tcp_t tcp;
    orch_tcp_accept_fn fn;
    void *ud;
    int port;
};

static void tcp_server_free(uv_handle_t *h)
{
    free(h->data);
}

static void tcp_on_connection(uv_stream_t *ls, int status)
{
    orch_tcp_server *s = ls->data;
    orch_tcp_conn *c;

    if (status < 0)
        return;
    c = tcp_conn_new(ls->loop);
    if (!c)
        return;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0) {
        tcp_conn_drop(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1); /* SSE events go out as they are written */
    s->fn(s, c, s->ud);
}

int orch_tcp_listen(uv_loop_t *loop, const char *host, int port,
                    orch_tcp_accept_fn fn, void *ud, orch_tcp_server **out)
{
    struct sockaddr_storage sa, bound;
    int len = sizeof bound;
    orch_tcp_server *s;
    int rc;

    *out = NULL;
    if ((rc = tcp_addr(host, port, &sa)) < 0)
        return rc;
    s = calloc(1, sizeof *s);
    if (!s)
        return orch_err_set(-ENOMEM, "out of memory");
    s->fn = fn;
    s->ud = ud;
    if ((rc = uv_tcp_init(loop, &s->tcp)) < 0) {
        free(s);
        return orch_err_set(rc, "tcp: %s", uv_strerror(rc));
    }
    s->tcp.data = s;
    rc = uv_tcp_bind(&s->tcp, (struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->tcp, 128, tcp_on_connection);
    if (rc < 0) {
        orch_err_set(rc, "cannot listen on %s:%d: %s", host ? host : "127.0.0.1",
                     port, uv_strerror(rc));
        goto fail;
    }
    rc = uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&bound, &len);
    if (rc < 0) {
        orch_err_set(rc, "getsockname: %s", uv_strerror(rc));
        goto fail;
    }
    s->port = ntohs(bound.ss_family == AF_INET6
                        ? ((struct sockaddr_in6 *)&bound)->sin6_port
                        : ((struct sockaddr_in *)&bound)->sin_port);
    *out = s;
    return 0;
fail:
    uv_close((uv_handle_t *)&s->tcp, tcp_server_free);
    return rc;
}

int orch_tcp_server_port(const orch_tcp_server *s)
{
    return s->port;
}

void orch_tcp_server_close(orch_tcp_server *s)
{
    if (s)
        uv_close((uv_handle_t *)&s->tcp, tcp_server_free);
}

/* ================================================================ client */

static void tcp_connected(uv_connect_t *req, int status)
{
    orch_tcp_conn *c = req->data;
    c->connecting = 0;
    if (c->released) /* closed by its owner meanwhile (status ECANCELED) */
        return;
    if (status == 0)
        uv_tcp_nodelay(&c->tcp, 1);
    c->connect_fn(c, status, c->connect_ud);
    if (status < 0) {
        orch_err_set(status, "connect: %s", uv_strerror(status));
        tcp_conn_drop(c);
    }
}

int orch_tcp_connect(uv_loop_t *loop, const char *host, int port,
                     orch_tcp_connect_fn fn, void *ud, orch_tcp_conn **out)
{
    struct sockaddr_storage sa;
    orch_tcp_conn *c;
    int rc;

    *out = NULL;
    if ((rc = tcp_addr(host, port, &sa)) < 0)
        return rc;
    c = tcp_conn_new(loop);
    if (!c)
        return orch_err_set(-ENOMEM, "out of memory");
    c->connect_fn = fn;
    c->connect_ud = ud;
    c->creq.data = c;
    rc = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&sa,
                        tcp_connected);
    if (rc < 0) {
        tcp_conn_drop(c);
        return orch_err_set(rc, "cannot connect to %s:%d: %s",
                            host ? host : "127.0.0.1", port, uv_strerror(rc));
    }
    c->connecting = 1;
    *out = c;
    return 0;
}

int orch_tcp_free_port(const char *host)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    int fd, rc;

    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return orch_err_set(-EINVAL, "free port: %s is not an IPv4 address", host);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return orch_err_set(-errno, "free port: socket: %s", strerror(errno));
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        rc = orch_err_set(-errno, "free port on %s: %s", host, strerror(errno));
    else
        rc = ntohs(sa.sin_port);
    close(fd);
    return rc;
}
