/* test_tcp.c - the TCP listener and connections (core/tcp.h) on a real loop
 * and real sockets on 127.0.0.1: a free port, echo, big writes, FIN against
 * reset, the write bound, bad addresses and a port in use. */
#include "t.h"

#include "err.h"
#include "tcp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct side {
    orch_tcp_conn *c;
    char *buf;
    size_t len, cap;
    int closed, close_status, connected, connect_status;
} side;

typedef struct world {
    uv_loop_t loop;
    orch_tcp_server *srv;
    side server, client;
    int accepted;
    int echo;       /* server writes back what it reads */
    int server_read; /* server reads at all */
} world;

static void side_append(side *s, const char *data, size_t len)
{
    if (s->len + len + 1 > s->cap) {
        s->cap = (s->len + len + 1) * 2;
        s->buf = realloc(s->buf, s->cap);
    }
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    s->buf[s->len] = '\0';
}

static void on_server_data(orch_tcp_conn *c, const char *data, size_t len,
                           void *ud)
{
    world *w = ud;
    side_append(&w->server, data, len);
    if (w->echo)
        orch_tcp_write(c, data, len);
}

static void on_server_close(orch_tcp_conn *c, int status, void *ud)
{
    world *w = ud;
    (void)c;
    w->server.closed = 1;
    w->server.close_status = status;
}

static void on_client_data(orch_tcp_conn *c, const char *data, size_t len,
                           void *ud)
{
    world *w = ud;
    (void)c;
    side_append(&w->client, data, len);
}

static void on_client_close(orch_tcp_conn *c, int status, void *ud)
{
    world *w = ud;
    (void)c;
    w->client.closed = 1;
    w->client.close_status = status;
}

static void on_accept(orch_tcp_server *s, orch_tcp_conn *c, void *ud)
{
    world *w = ud;
    orch_tcp_conn_cb cb = {on_server_data, on_server_close};
    (void)s;
    w->accepted++;
    w->server.c = c;
    if (w->server_read)
        orch_tcp_conn_start(c, &cb, w);
}

static void on_connect(orch_tcp_conn *c, int status, void *ud)
{
    world *w = ud;
    orch_tcp_conn_cb cb = {on_client_data, on_client_close};
    w->client.connected = 1;
    w->client.connect_status = status;
    if (status == 0)
        orch_tcp_conn_start(c, &cb, w);
    else
        w->client.c = NULL;
}

/* Runs the loop until *flag is set (or ~20 s pass). */
static void spin(world *w, const int *flag)
{
    for (int i = 0; i < 20000 && !*flag; i++) {
        uv_run(&w->loop, UV_RUN_NOWAIT);
        if (!*flag)
            uv_sleep(1);
    }
}

static int world_open(world *w, int echo)
{
    int rc;
    memset(w, 0, sizeof *w);
    uv_loop_init(&w->loop);
    w->echo = echo;
    w->server_read = 1;
    rc = orch_tcp_listen(&w->loop, "127.0.0.1", 0, on_accept, w, &w->srv);
    T_EQ_INT(rc, 0);
    if (rc < 0)
        return rc;
    T_CHECK(orch_tcp_server_port(w->srv) > 0);
    rc = orch_tcp_connect(&w->loop, "127.0.0.1", orch_tcp_server_port(w->srv),
                          on_connect, w, &w->client.c);
    T_EQ_INT(rc, 0);
    spin(w, &w->client.connected);
    spin(w, &w->accepted);
    T_EQ_INT(w->client.connect_status, 0);
    return 0;
}

static void world_close(world *w)
{
    orch_tcp_close(w->client.c);
    orch_tcp_close(w->server.c);
    orch_tcp_server_close(w->srv);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    T_EQ_INT(uv_loop_close(&w->loop), 0);
    free(w->server.buf);
    free(w->client.buf);
}

static int has_len(const side *s, size_t n)
{
    return s->len >= n;
}

static void spin_len(world *w, side *s, size_t n)
{
    for (int i = 0; i < 20000 && !has_len(s, n); i++) {
        uv_run(&w->loop, UV_RUN_NOWAIT);
        if (!has_len(s, n))
            uv_sleep(1);
    }
}

static void test_echo(void)
{
    world w;
    if (world_open(&w, 1) < 0)
        return;
    T_EQ_INT(orch_tcp_write(w.client.c, "hello ", 6), 0);
    T_EQ_INT(orch_tcp_write(w.client.c, "world", 5), 0);
    spin_len(&w, &w.client, 11);
    T_EQ_STR(w.server.buf, "hello world");
    T_EQ_STR(w.client.buf, "hello world");
    world_close(&w);
}

static void test_big_write_then_close_is_fin(void)
{
    world w;
    size_t n = (size_t)8 * 1024 * 1024;
    char *big = malloc(n);
    int ok = 1;
    if (world_open(&w, 0) < 0) {
        free(big);
        return;
    }
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    T_EQ_INT(orch_tcp_write(w.server.c, big, n), 0);
    orch_tcp_close(w.server.c); /* flushes everything first */
    w.server.c = NULL;
    spin(&w, &w.client.closed);
    T_EQ_INT(w.client.len, n);
    T_EQ_INT(w.client.close_status, 0); /* a clean end of stream */
    for (size_t i = 0; i < w.client.len && ok; i++)
        ok = w.client.buf[i] == big[i];
    T_CHECK(ok);
    free(big);
    world_close(&w);
}

static void test_abort_is_reset(void)
{
    world w;
    if (world_open(&w, 0) < 0)
        return;
    T_EQ_INT(orch_tcp_write(w.server.c, "part", 4), 0);
    spin_len(&w, &w.client, 4);
    orch_tcp_abort(w.server.c);
    w.server.c = NULL;
    spin(&w, &w.client.closed);
    T_EQ_STR(w.client.buf, "part");
    T_EQ_INT(w.client.close_status, UV_ECONNRESET);
    world_close(&w);
}

static void test_peer_close_seen_by_server(void)
{
    world w;
    if (world_open(&w, 0) < 0)
        return;
    orch_tcp_close(w.client.c);
    w.client.c = NULL;
    spin(&w, &w.server.closed);
    T_EQ_INT(w.server.close_status, 0);
    /* writing to a connection whose peer is gone never crashes */
    orch_tcp_write(w.server.c, "late", 4);
    world_close(&w);
}

static void test_write_bound(void)
{
    world w;
    size_t n = ORCH_TCP_MAX_QUEUED / 4;
    char *big = calloc(1, n);
    int rc = 0, writes = 0;
    if (world_open(&w, 0) < 0) {
        free(big);
        return;
    }
    /* the client does not read: the server's queue fills to the bound */
    orch_tcp_pause(w.client.c);
    while (writes < 16 && (rc = orch_tcp_write(w.server.c, big, n)) == 0)
        writes++;
    T_EQ_INT(rc, -ENOBUFS);
    T_CHECK(writes >= 3 && writes < 16);
    T_CHECK(orch_tcp_queued(w.server.c) <= ORCH_TCP_MAX_QUEUED);
    orch_tcp_abort(w.server.c);
    w.server.c = NULL;
    free(big);
    world_close(&w);
}

static void test_write_after_close(void)
{
    world w;
    orch_tcp_conn *c;
    if (world_open(&w, 0) < 0)
        return;
    c = w.client.c;
    orch_tcp_close(c);
    w.client.c = NULL;
    /* c is not freed before the loop turns: the write is refused */
    T_EQ_INT(orch_tcp_write(c, "x", 1), -EPIPE);
    world_close(&w);
}

static void test_errors(void)
{
    uv_loop_t loop;
    orch_tcp_server *a = NULL, *b = NULL;
    orch_tcp_conn *c = NULL;
    world w;
    uv_loop_init(&loop);
    T_EQ_INT(orch_tcp_listen(&loop, "not an address", 0, on_accept, NULL, &a),
             -EINVAL);
    T_CHECK(strstr(orch_err_msg(), "not an address") != NULL);
    T_EQ_INT(orch_tcp_listen(&loop, "127.0.0.1", 70000, on_accept, NULL, &a),
             -EINVAL);
    T_EQ_INT(orch_tcp_listen(&loop, NULL, 0, on_accept, NULL, &a), 0);
    T_EQ_INT(orch_tcp_listen(&loop, "127.0.0.1", orch_tcp_server_port(a),
                             on_accept, NULL, &b),
             UV_EADDRINUSE);
    T_CHECK(b == NULL);
    orch_tcp_server_close(a);
    uv_run(&loop, UV_RUN_DEFAULT);
    T_EQ_INT(uv_loop_close(&loop), 0);

    /* a refused connection reports through the callback */
    memset(&w, 0, sizeof w);
    uv_loop_init(&w.loop);
    T_EQ_INT(orch_tcp_listen(&w.loop, NULL, 0, on_accept, &w, &w.srv), 0);
    {
        int port = orch_tcp_server_port(w.srv);
        orch_tcp_server_close(w.srv);
        uv_run(&w.loop, UV_RUN_NOWAIT);
        T_EQ_INT(orch_tcp_connect(&w.loop, "127.0.0.1", port, on_connect, &w,
                                  &c),
                 0);
    }
    spin(&w, &w.client.connected);
    T_EQ_INT(w.client.connect_status, UV_ECONNREFUSED);
    uv_run(&w.loop, UV_RUN_DEFAULT);
    T_EQ_INT(uv_loop_close(&w.loop), 0);
}

static void test_close_while_connecting(void)
{
    world w;
    orch_tcp_conn *c = NULL;
    memset(&w, 0, sizeof w);
    uv_loop_init(&w.loop);
    T_EQ_INT(orch_tcp_listen(&w.loop, NULL, 0, on_accept, &w, &w.srv), 0);
    w.server_read = 1;
    T_EQ_INT(orch_tcp_connect(&w.loop, "127.0.0.1",
                              orch_tcp_server_port(w.srv), on_connect, &w, &c),
             0);
    orch_tcp_close(c); /* before the loop ran: the callback never runs */
    uv_run(&w.loop, UV_RUN_NOWAIT);
    uv_run(&w.loop, UV_RUN_NOWAIT);
    T_EQ_INT(w.client.connected, 0);
    orch_tcp_close(w.server.c);
    orch_tcp_server_close(w.srv);
    uv_run(&w.loop, UV_RUN_DEFAULT);
    T_EQ_INT(uv_loop_close(&w.loop), 0);
    free(w.server.buf);
}

int main(void)
{
    test_echo();
    test_big_write_then_close_is_fin();
    test_abort_is_reset();
    test_peer_close_seen_by_server();
    test_write_bound();
    test_write_after_close();
    test_errors();
    test_close_while_connecting();
    T_DONE();
}
