/* test_http.c - HTTP streaming on the libuv loop against the real local SSE
 * server (tests/server/sse_server.py): concurrent streams, idle timeout,
 * cancellation at any point, a 10 MB event, errors, methods and bodies. */
#include "err.h"
#include "http.h"
#include "sse.h"

#include "t.h"

#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static uv_loop_t *loop;
static orch_http *client;
static int port;
static pid_t server_pid;
static int server_in = -1;

/* ------------------------------------------------------------ server */

static int server_start(void)
{
    int in[2], out[2];
    const char *src = getenv("ORCH_SRC");
    char script[4096], buf[64];
    ssize_t n;
    size_t got = 0;

    snprintf(script, sizeof script, "%s/tests/server/sse_server.py",
             src ? src : ".");
    if (pipe(in) != 0 || pipe(out) != 0)
        return -1;
    server_pid = fork();
    if (server_pid < 0)
        return -1;
    if (server_pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execlp("python3", "python3", script, "--exit-on-eof", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    server_in = in[1];
    while (got < sizeof buf - 1 && (n = read(out[0], buf + got, 1)) == 1) {
        if (buf[got] == '\n')
            break;
        got++;
    }
    buf[got] = '\0';
    close(out[0]);
    port = atoi(buf);
    return port > 0 ? 0 : -1;
}

static void server_stop(void)
{
    if (server_in >= 0)
        close(server_in);
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
    }
}

/* ------------------------------------------------------------ helpers */

static void watchdog_cb(uv_timer_t *t)
{
    *(int *)t->data = 1;
    uv_stop(loop);
}

/* Runs the loop until *flag is set; returns 0, or -1 after 60 s. */
static int run_until(const int *flag)
{
    uv_timer_t wd;
    int fired = 0;

    uv_timer_init(loop, &wd);
    wd.data = &fired;
    uv_timer_start(&wd, watchdog_cb, 60000, 0);
    while (!*flag && !fired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&wd, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return fired ? -1 : 0;
}

static void url(char *buf, size_t n, const char *path)
{
    snprintf(buf, n, "http://127.0.0.1:%d%s", port, path);
}

/* A stream: an SSE parser fed by the request, checking order. */
typedef struct stream {
    orch_http_req *req;
    orch_sse *sse;
    int nev;         /* events seen */
    int bad;         /* out of order or malformed */
    int done;        /* on_done called */
    int err;
    long status;
    char msg[256];
    int chunks;
    int after_cancel; /* callbacks after a cancel */
    int cancelled;
    int cancel_after; /* cancel from on_chunk after this many events */
    int headers;
    char ctype[64];
    size_t body_len;
    char body[2048];
    size_t big_len;  /* data length of an event named "big" */
    int big_ok;
    int *pending;    /* decremented on done */
} stream;

static int stream_ev(const orch_sse_event *ev, void *ud)
{
    stream *s = ud;
    int i = -1;

    if (strcmp(ev->type, "big") == 0) {
        s->big_len = ev->data_len;
        s->big_ok = 1;
        for (size_t k = 0; k < ev->data_len; k++)
            if (ev->data[k] != "0123456789abcdef"[k % 16]) {
                s->big_ok = 0;
                break;
            }
        s->nev++;
        return 0;
    }
    if (strcmp(ev->type, "tick") == 0) {
        if (sscanf(ev->data, "{\"i\": %d", &i) != 1 || i != s->nev ||
            atoi(ev->id) != i)
            s->bad++;
    }
    s->nev++;
    return 0;
}

static void on_headers(orch_http_req *r, long status,
                       const orch_http_header *h, size_t n, void *ud)
{
    stream *s = ud;

    if (s->cancelled)
        s->after_cancel++;
    s->headers++;
    s->status = status;
    for (size_t i = 0; i < n; i++)
        if (strcmp(h[i].name, "content-type") == 0)
            snprintf(s->ctype, sizeof s->ctype, "%s", h[i].value);
}

static void on_chunk(orch_http_req *r, const char *data, size_t len, void *ud)
{
    stream *s = ud;

    if (s->cancelled)
        s->after_cancel++;
    s->chunks++;
    if (s->body_len + len < sizeof s->body) {
        memcpy(s->body + s->body_len, data, len);
        s->body_len += len;
        s->body[s->body_len] = '\0';
    }
    if (s->sse && orch_sse_feed(s->sse, data, len) != 0)
        s->bad++;
    if (s->cancel_after && s->nev >= s->cancel_after && !s->cancelled) {
        s->cancelled = 1;
        orch_http_cancel(r);
        if (s->pending)
            (*s->pending)--;
    }
}

static void on_done(orch_http_req *r, int err, const char *msg, long status,
                    void *ud)
{
    stream *s = ud;

    if (s->cancelled)
        s->after_cancel++;
    s->done++;
    s->err = err;
    s->status = status;
    snprintf(s->msg, sizeof s->msg, "%s", msg ? msg : "");
    orch_http_cancel(r); /* no effect inside on_done */
    if (s->pending)
        (*s->pending)--;
}

static const orch_http_callbacks cbs = {on_headers, on_chunk, on_done};

static int start(stream *s, const char *path, long idle_ms)
{
    char u[256];
    orch_http_opts o = {0};

    url(u, sizeof u, path);
    o.url = u;
    o.idle_timeout_ms = idle_ms;
    o.connect_timeout_ms = 5000;
    if (!s->sse)
        s->sse = orch_sse_new(stream_ev, s);
    return orch_http_request_start(client, &o, &cbs, s, &s->req);
}

/* Runs the loop until *pending drops to 0 (or 60 s pass: -1). */
static int run_pending(const int *pending)
{
    uv_timer_t wd;
    int fired = 0;

    uv_timer_init(loop, &wd);
    wd.data = &fired;
    uv_timer_start(&wd, watchdog_cb, 60000, 0);
    while (*pending > 0 && !fired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&wd, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    if (fired)
        printf("# watchdog fired\n");
    return fired ? -1 : 0;
}

/* ------------------------------------------------------------ tests */

#define NSTREAMS 50
#define NEVENTS 400

static void test_concurrent(void)
{
    static stream s[NSTREAMS];
    int pending = NSTREAMS, ok = 1, inorder = 1;

    memset(s, 0, sizeof s);
    for (int i = 0; i < NSTREAMS; i++) {
        char path[128];
        /* Some streams pace their events, so that they interleave. */
        snprintf(path, sizeof path, "/events?n=%d&size=%d&crlf=%d&delay_ms=%d",
                 NEVENTS, 10 + i * 7, i % 2, i % 5 == 0 ? 1 : 0);
        s[i].pending = &pending;
        if (start(&s[i], path, 20000) != 0)
            ok = 0;
    }
    T_CHECK(ok);
    T_EQ_INT(orch_http_active(client), NSTREAMS);
    T_EQ_INT(run_pending(&pending), 0);
    for (int i = 0; i < NSTREAMS; i++) {
        if (s[i].done != 1 || s[i].err != 0 || s[i].status != 200 ||
            s[i].headers != 1 || strcmp(s[i].ctype, "text/event-stream") != 0)
            ok = 0;
        if (s[i].nev != NEVENTS || s[i].bad)
            inorder = 0;
        orch_sse_free(s[i].sse);
    }
    T_CHECK(ok);
    T_CHECK(inorder);
    T_EQ_INT(orch_http_active(client), 0);
}

static void test_idle_timeout(void)
{
    stream s = {0};
    int pending = 1;

    s.pending = &pending;
    T_EQ_INT(start(&s, "/hang?n=2", 300), 0);
    run_pending(&pending);
    T_EQ_INT(s.done, 1);
    T_EQ_INT(s.err, -ETIMEDOUT);
    T_CHECK(strstr(s.msg, "idle timeout") != NULL);
    T_EQ_INT(s.nev, 2);
    T_EQ_INT(s.status, 200);
    orch_sse_free(s.sse);
    T_EQ_INT(orch_http_active(client), 0);
}

static void cancel_timer_cb(uv_timer_t *t)
{
    stream *s = t->data;

    s->cancelled = 1;
    orch_http_cancel(s->req);
    (*s->pending)--;
}

static void test_cancel(void)
{
    stream a = {0}, b = {0}, c = {0};
    int pending = 3;
    uv_timer_t t;

    /* a: cancelled from inside on_chunk mid-stream. */
    a.pending = &pending;
    a.cancel_after = 5;
    T_EQ_INT(start(&a, "/events?n=100000&delay_ms=1", 0), 0);
    /* b: cancelled from a timer while the server hangs. */
    b.pending = &pending;
    T_EQ_INT(start(&b, "/hang?n=3", 0), 0);
    uv_timer_init(loop, &t);
    t.data = &b;
    uv_timer_start(&t, cancel_timer_cb, 300, 0);
    /* c: cancelled right after the start, before any I/O. */
    c.pending = &pending;
    T_EQ_INT(start(&c, "/events?n=10", 0), 0);
    c.cancelled = 1;
    orch_http_cancel(c.req);
    pending--;
    T_EQ_INT(orch_http_active(client), 2);
    run_pending(&pending);
    uv_close((uv_handle_t *)&t, NULL);
    T_CHECK(a.cancelled && a.done == 0 && a.after_cancel == 0);
    T_CHECK(a.nev >= 5);
    T_CHECK(b.done == 0 && b.after_cancel == 0 && b.nev == 3);
    T_CHECK(c.done == 0 && c.after_cancel == 0 && c.chunks == 0);
    T_EQ_INT(orch_http_active(client), 0);
    /* Let the loop close the freed handles. */
    uv_run(loop, UV_RUN_NOWAIT);
    orch_sse_free(a.sse);
    orch_sse_free(b.sse);
    orch_sse_free(c.sse);
}

static void test_big_event(void)
{
    stream s = {0};
    int pending = 1;

    s.pending = &pending;
    T_EQ_INT(start(&s, "/big?mb=10", 20000), 0);
    run_pending(&pending);
    T_EQ_INT(s.err, 0);
    T_EQ_INT(s.nev, 2);
    T_EQ_INT(s.big_len, 10u << 20);
    T_CHECK(s.big_ok);
    orch_sse_free(s.sse);
}

static void test_errors(void)
{
    stream s = {0}, r = {0};
    int pending = 2;
    char u[128];
    orch_http_opts o = {0};
    int fd;
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof sa;

    /* An HTTP error status is a complete response: err 0, status 500. */
    s.pending = &pending;
    T_EQ_INT(start(&s, "/status?code=500", 5000), 0);
    /* A port nobody listens on: find one by binding and closing. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&sa, sizeof sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    close(fd);
    snprintf(u, sizeof u, "http://127.0.0.1:%d/", ntohs(sa.sin_port));
    o.url = u;
    r.pending = &pending;
    T_EQ_INT(orch_http_request_start(client, &o, &cbs, &r, NULL), 0);
    run_pending(&pending);
    T_EQ_INT(s.err, 0);
    T_EQ_INT(s.status, 500);
    T_CHECK(strstr(s.body, "status 500") != NULL);
    T_EQ_INT(r.err, -ECONNREFUSED);
    T_EQ_INT(r.status, 0);
    T_CHECK(r.msg[0] != '\0');
    orch_sse_free(s.sse);

    /* Bad options are refused at once. */
    o.url = NULL;
    T_EQ_INT(orch_http_request_start(client, &o, &cbs, &r, NULL), -EINVAL);
    o.url = u;
    o.idle_timeout_ms = -1;
    T_EQ_INT(orch_http_request_start(client, &o, &cbs, &r, NULL), -EINVAL);
}

/* A listener that never accepts, its queue filled: a new SYN is dropped, so
 * the connect hangs until the connect timeout. */
static void test_connect_timeout(void)
{
    stream s = {0};
    int pending = 1, lfd, fill[8], nfill = 0;
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof sa;
    char u[128];
    orch_http_opts o = {0};

    lfd = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    T_EQ_INT(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    T_EQ_INT(listen(lfd, 0), 0);
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    for (int i = 0; i < 8; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fd, (struct sockaddr *)&sa, sizeof sa);
        fill[nfill++] = fd;
    }
    snprintf(u, sizeof u, "http://127.0.0.1:%d/", ntohs(sa.sin_port));
    o.url = u;
    o.connect_timeout_ms = 300;
    o.idle_timeout_ms = 20000;
    s.pending = &pending;
    T_EQ_INT(orch_http_request_start(client, &o, &cbs, &s, NULL), 0);
    run_pending(&pending);
    T_EQ_INT(s.err, -ETIMEDOUT);
    T_CHECK(strstr(s.msg, "onnect") != NULL || strstr(s.msg, "imed out"));
    T_CHECK(strstr(s.msg, "idle") == NULL);
    if (!strstr(s.msg, "onnect"))
        printf("# connect timeout message: %s\n", s.msg);
    for (int i = 0; i < nfill; i++)
        close(fill[i]);
    close(lfd);
}

/* curl's proxy variables are honoured: a host that does not resolve is
 * reached through http_proxy (the test server answers proxy requests). */
static void test_proxy_env(void)
{
    stream s = {0};
    int pending = 1;
    char proxy[64];
    orch_http_opts o = {0};

    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", port);
    setenv("http_proxy", proxy, 1);
    o.url = "http://orch-proxy-test.invalid/events?n=3";
    s.sse = orch_sse_new(stream_ev, &s);
    s.pending = &pending;
    T_EQ_INT(orch_http_request_start(client, &o, &cbs, &s, NULL), 0);
    run_pending(&pending);
    unsetenv("http_proxy");
    T_EQ_INT(s.err, 0);
    T_EQ_INT(s.status, 200);
    T_EQ_INT(s.nev, 3);
    T_EQ_INT(s.bad, 0);
    orch_sse_free(s.sse);
}

static void test_post(void)
{
    stream s = {0};
    int pending = 1;
    char u[128];
    const char *hdrs[] = {"X-Orch-Test: yes", "Content-Type: application/json"};
    orch_http_opts o = {0};

    url(u, sizeof u, "/echo");
    o.url = u;
    o.headers = hdrs;
    o.nheaders = 2;
    o.body = "{\"q\": 1}";
    o.body_len = strlen(o.body);
    s.pending = &pending;
    T_EQ_INT(orch_http_request_start(client, &o, &cbs, &s, NULL), 0);
    run_pending(&pending);
    T_EQ_INT(s.err, 0);
    T_EQ_INT(s.status, 200);
    T_CHECK(strstr(s.body, "\"method\": \"POST\"") != NULL);
    T_CHECK(strstr(s.body, "\"x-orch-test\": \"yes\"") != NULL);
    T_CHECK(strstr(s.body, "\"body\": \"{\\\"q\\\": 1}\"") != NULL);

    memset(&s, 0, sizeof s);
    pending = 1;
    s.pending = &pending;
    o.method = "DELETE";
    o.body = NULL;
    o.body_len = 0;
    o.nheaders = 0;
    T_EQ_INT(orch_http_request_start(client, &o, &cbs, &s, NULL), 0);
    run_pending(&pending);
    T_CHECK(strstr(s.body, "\"method\": \"DELETE\"") != NULL);
}

/* Starting a request from inside on_chunk of another (deferred add). */
static stream chained;
static int chain_pending;

static void chain_chunk(orch_http_req *r, const char *d, size_t n, void *ud)
{
    stream *s = ud;
    char u[128];
    orch_http_opts o = {0};

    if (s->chunks++ == 0) {
        url(u, sizeof u, "/events?n=3");
        o.url = u;
        chained.sse = orch_sse_new(stream_ev, &chained);
        chained.pending = &chain_pending;
        chain_pending++;
        if (orch_http_request_start(client, &o, &cbs, &chained, NULL) != 0)
            s->bad++;
    }
}

static void test_start_from_callback(void)
{
    stream s = {0};
    orch_http_callbacks cb = {NULL, chain_chunk, on_done};
    char u[128];
    orch_http_opts o = {0};

    chain_pending = 1;
    s.pending = &chain_pending;
    url(u, sizeof u, "/events?n=5");
    o.url = u;
    T_EQ_INT(orch_http_request_start(client, &o, &cb, &s, NULL), 0);
    run_pending(&chain_pending);
    T_EQ_INT(s.err, 0);
    T_EQ_INT(s.bad, 0);
    T_EQ_INT(chained.done, 1);
    T_EQ_INT(chained.nev, 3);
    orch_sse_free(chained.sse);
}

/* Freeing the client with streams in flight releases everything. */
static void test_free_busy(void)
{
    stream s[3];
    int pending = 3, flag = 0;
    uv_timer_t t;

    memset(s, 0, sizeof s);
    for (int i = 0; i < 3; i++) {
        s[i].pending = &pending;
        start(&s[i], "/hang?n=1", 0);
    }
    uv_timer_init(loop, &t);
    t.data = &flag;
    uv_timer_start(&t, watchdog_cb, 300, 0);
    run_until(&flag);
    uv_close((uv_handle_t *)&t, NULL);
    T_EQ_INT(orch_http_active(client), 3);
    orch_http_free(client);
    client = NULL;
    uv_run(loop, UV_RUN_DEFAULT); /* runs the close callbacks, then ends */
    for (int i = 0; i < 3; i++) {
        T_EQ_INT(s[i].done, 0);
        T_EQ_INT(s[i].nev, 1);
        orch_sse_free(s[i].sse);
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    setenv("no_proxy", "127.0.0.1,localhost", 1);
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("all_proxy");
    unsetenv("ALL_PROXY");
    loop = uv_default_loop();
    if (server_start() != 0) {
        printf("not ok 1 - cannot start tests/server/sse_server.py\n");
        server_stop();
        return 1;
    }
    client = orch_http_new(loop);
    T_CHECK(client != NULL);
    test_concurrent();
    test_idle_timeout();
    test_cancel();
    test_big_event();
    test_errors();
    test_connect_timeout();
    test_proxy_env();
    test_post();
    test_start_from_callback();
    test_free_busy();
    T_EQ_INT(uv_loop_alive(loop), 0);
    uv_loop_close(loop);
    server_stop();
    T_DONE();
}
